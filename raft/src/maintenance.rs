//! The cluster's memory-maintenance settings, replicated in the catalogue: the default
//! importance decay ranking applies, and the autopilot that deduplicates and consolidates
//! namespaces in the background. A namespace's memory policy may override either.

use loci_storage::decay::DecayConfig;
use serde::{Deserialize, Serialize};

/// What the autopilot does with the near-duplicates it finds.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum DedupMode {
    Off,
    /// Find and report them only.
    #[default]
    Report,
    /// Move them to the namespace's trash (restorable within the retention).
    Merge,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct AutopilotConfig {
    pub enabled: bool,
    /// Cosine similarity at or above which two memories are near-duplicates.
    pub dedup_threshold: f64,
    /// And the share of words they must have in common (Jaccard).
    pub dedup_min_text_overlap: f64,
    pub dedup_interval_hours: u64,
    pub dedup_mode: DedupMode,
    /// Memories of different sessions may be duplicates of each other.
    pub dedup_cross_session: bool,
    /// Consolidate the largest group of alike memories of each agent every interval (0: never).
    pub consolidation_interval_hours: u64,
    pub consolidation_threshold: f64,
    pub consolidate_cross_session: bool,
    /// How long a deduplicated or consolidated memory stays restorable.
    pub trash_retention_hours: u64,
    /// The newest memories of a namespace one run examines at most.
    pub max_scan: u64,
}

impl Default for AutopilotConfig {
    fn default() -> Self {
        AutopilotConfig {
            enabled: false,
            dedup_threshold: 0.95,
            dedup_min_text_overlap: 0.5,
            dedup_interval_hours: 24,
            dedup_mode: DedupMode::Report,
            dedup_cross_session: true,
            consolidation_interval_hours: 0,
            consolidation_threshold: 0.92,
            consolidate_cross_session: true,
            trash_retention_hours: 168,
            max_scan: 5_000,
        }
    }
}

impl AutopilotConfig {
    /// Why these settings are not usable (`None`: they are).
    pub fn invalid(&self) -> Option<String> {
        for (name, v) in
            [("dedup_threshold", self.dedup_threshold), ("consolidation_threshold", self.consolidation_threshold)]
        {
            if !(v.is_finite() && v > 0.0 && v <= 1.0) {
                return Some(format!("{name} must be above 0 and at most 1"));
            }
        }
        if !(0.0..=1.0).contains(&self.dedup_min_text_overlap) {
            return Some("dedup_min_text_overlap must be between 0 and 1".into());
        }
        if self.dedup_interval_hours == 0 || self.dedup_interval_hours > 8_760 {
            return Some("dedup_interval_hours must be between 1 and 8760".into());
        }
        if self.consolidation_interval_hours > 8_760 {
            return Some("consolidation_interval_hours must be at most 8760 (0: never)".into());
        }
        if self.trash_retention_hours > 8_760 {
            return Some("trash_retention_hours must be at most 8760 (0: purged at the next pass)".into());
        }
        if self.max_scan == 0 || self.max_scan > 100_000 {
            return Some("max_scan must be between 1 and 100000".into());
        }
        None
    }
}

/// The catalogue's maintenance settings (`Command::SetMaintenance`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Maintenance {
    pub decay: DecayConfig,
    pub autopilot: AutopilotConfig,
}

impl Maintenance {
    pub fn invalid(&self) -> Option<String> {
        self.decay.invalid().or_else(|| self.autopilot.invalid())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        assert_eq!(Maintenance::default().invalid(), None);
        let bad = AutopilotConfig { dedup_threshold: 0.0, ..Default::default() };
        assert!(bad.invalid().unwrap().contains("dedup_threshold"));
        let bad = AutopilotConfig { trash_retention_hours: 9_000, ..Default::default() };
        assert!(bad.invalid().unwrap().contains("trash_retention_hours"));
    }

    #[test]
    fn a_catalogue_written_before_it_existed_reads_the_defaults() {
        let m: Maintenance = serde_json::from_str("{}").unwrap();
        assert_eq!(m, Maintenance::default());
        let m: Maintenance = serde_json::from_str(r#"{"autopilot":{"enabled":true}}"#).unwrap();
        assert!(m.autopilot.enabled);
        assert_eq!(m.autopilot.trash_retention_hours, 168);
    }
}
