//! Importance decay, IO-free: how much of a memory's importance is left after it has not been
//! used for a while, as ranking applies it. Nothing stored changes: the stored importance stays
//! what the client (or feedback) set, and ranking uses the decayed value. See docs/recall.md.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum DecayStrategy {
    /// `2^(−age / half_life)`.
    #[default]
    Exponential,
    /// `1 − age / (2 · half_life)`, down to 0 (half left at one half-life, like exponential).
    Linear,
    /// Halved at every full half-life: `2^(−⌊age / half_life⌋)`.
    Step,
}

impl DecayStrategy {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "exponential" => Some(DecayStrategy::Exponential),
            "linear" => Some(DecayStrategy::Linear),
            "step" => Some(DecayStrategy::Step),
            _ => None,
        }
    }
}

/// Decay settings (the cluster's default, or a namespace's own).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct DecayConfig {
    /// Off: ranking uses the stored importance.
    pub enabled: bool,
    pub strategy: DecayStrategy,
    /// Hours without an access after which half of the importance above the floor is left.
    pub half_life_hours: f64,
    /// Decay never takes importance below this (nor raises an importance already below it).
    pub min_importance: f64,
    /// Added per doubling of the access count (`boost · log2(1 + accesses)`), capped at 1.
    pub access_boost: f64,
}

impl Default for DecayConfig {
    fn default() -> Self {
        DecayConfig {
            enabled: false,
            strategy: DecayStrategy::Exponential,
            half_life_hours: 168.0,
            min_importance: 0.1,
            access_boost: 0.05,
        }
    }
}

impl DecayConfig {
    /// Why these settings are not usable (`None`: they are).
    pub fn invalid(&self) -> Option<String> {
        if !(self.half_life_hours.is_finite() && self.half_life_hours > 0.0 && self.half_life_hours <= 87_600.0) {
            return Some("half_life_hours must be > 0 and at most 87600 (10 years)".into());
        }
        if !(0.0..=1.0).contains(&self.min_importance) {
            return Some("min_importance must be between 0 and 1".into());
        }
        if !(0.0..=1.0).contains(&self.access_boost) {
            return Some("access_boost must be between 0 and 1".into());
        }
        None
    }

    /// The fraction left after `age_hours` without use.
    pub fn factor(&self, age_hours: f64) -> f64 {
        let x = (age_hours.max(0.0)) / self.half_life_hours;
        match self.strategy {
            DecayStrategy::Exponential => 0.5f64.powf(x),
            DecayStrategy::Linear => (1.0 - x / 2.0).max(0.0),
            DecayStrategy::Step => 0.5f64.powf(x.floor()),
        }
    }

    /// The importance ranking uses: the part above the floor decays with the time since the
    /// memory was last used (`last_used`, seconds), then accesses lift it, capped at 1.
    /// Disabled: `importance` itself.
    pub fn effective(&self, importance: f64, last_used: u64, accesses: u64, now: u64) -> f64 {
        if !self.enabled {
            return importance;
        }
        let age_hours = now.saturating_sub(last_used) as f64 / 3600.0;
        let base = if importance <= self.min_importance {
            importance
        } else {
            self.min_importance + (importance - self.min_importance) * self.factor(age_hours)
        };
        (base + self.access_boost * (1.0 + accesses as f64).log2()).min(1.0).max(base.min(importance))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: u64 = 3600;

    fn on(strategy: DecayStrategy) -> DecayConfig {
        DecayConfig { enabled: true, strategy, half_life_hours: 10.0, min_importance: 0.1, access_boost: 0.0 }
    }

    #[test]
    fn disabled_decay_changes_nothing() {
        let c = DecayConfig::default();
        assert_eq!(c.effective(0.8, 0, 0, 1000 * H), 0.8);
    }

    #[test]
    fn half_of_what_is_above_the_floor_is_left_after_one_half_life() {
        for s in [DecayStrategy::Exponential, DecayStrategy::Linear, DecayStrategy::Step] {
            let c = on(s);
            let e = c.effective(0.9, 0, 0, 10 * H);
            assert!((e - 0.5).abs() < 1e-9, "{s:?}: {e}");
            assert!((c.effective(0.9, 0, 0, 0) - 0.9).abs() < 1e-9);
        }
        let c = on(DecayStrategy::Exponential);
        assert!((c.effective(0.9, 0, 0, 20 * H) - 0.3).abs() < 1e-9);
        assert!((on(DecayStrategy::Linear).effective(0.9, 0, 0, 20 * H) - 0.1).abs() < 1e-9);
        assert!((on(DecayStrategy::Step).effective(0.9, 0, 0, 19 * H) - 0.5).abs() < 1e-9);
    }

    #[test]
    fn the_floor_holds_and_is_not_a_lift() {
        let c = on(DecayStrategy::Exponential);
        assert!(c.effective(0.9, 0, 0, 10_000 * H) >= 0.1);
        assert_eq!(c.effective(0.05, 0, 0, 10_000 * H), 0.05);
    }

    #[test]
    fn use_resets_the_clock_and_accesses_lift_it() {
        let c = on(DecayStrategy::Exponential);
        assert!((c.effective(0.9, 10 * H, 0, 10 * H) - 0.9).abs() < 1e-9);
        let boosted = DecayConfig { access_boost: 0.1, ..c };
        let e = boosted.effective(0.9, 0, 3, 10 * H);
        assert!((e - 0.7).abs() < 1e-9, "0.5 + 0.1·log2(4): {e}");
        assert_eq!(boosted.effective(0.9, 0, 1 << 20, 0), 1.0);
    }

    #[test]
    fn bad_settings_are_named() {
        assert!(DecayConfig { half_life_hours: 0.0, ..Default::default() }.invalid().is_some());
        assert!(DecayConfig { min_importance: 1.5, ..Default::default() }.invalid().is_some());
        assert!(DecayConfig::default().invalid().is_none());
    }
}
