//! Scheduled backups and retention, with no IO: when the next backup is due, and which backups
//! retention removes.

use serde::{Deserialize, Serialize};

use crate::error::{ServiceError, ServiceResult};

/// The schedule (the SDK's `BackupSchedule`), kept in the backup store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub enabled: bool,
    /// `full` or `incremental` (an incremental one is full when there is no earlier backup).
    pub backup_type: String,
    /// `@hourly`, `@daily`, `@weekly`, `@every <n>m` or `@every <n>h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// Backups older than this are removed (0: kept whatever their age).
    pub retention_days: u32,
    /// At most this many backups are kept, the newest (0: no limit).
    pub max_backups: u32,
    pub encrypt: bool,
    #[serde(default)]
    pub namespaces: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_backup_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_backup_at: Option<u64>,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            enabled: false,
            backup_type: "incremental".into(),
            cron: Some("@daily".into()),
            retention_days: 30,
            max_backups: 30,
            encrypt: true,
            namespaces: Vec::new(),
            compression: Some("zstd".into()),
            last_backup_at: None,
            next_backup_at: None,
        }
    }
}

/// The seconds between two scheduled backups.
pub fn period_secs(cron: &str) -> ServiceResult<u64> {
    let bad = || {
        ServiceError::unprocessable(format!(
            "cron '{cron}' is not one of @hourly, @daily, @weekly, @every <n>m or @every <n>h (n ≥ 1)"
        ))
    };
    let c = cron.trim();
    let secs = match c {
        "@hourly" => 3600,
        "@daily" => 86_400,
        "@weekly" => 7 * 86_400,
        _ => {
            let every = c.strip_prefix("@every ").ok_or_else(bad)?.trim();
            let (n, unit) = every.split_at(every.len().saturating_sub(1));
            let n: u64 = n.parse().map_err(|_| bad())?;
            let unit = match unit {
                "m" => 60,
                "h" => 3600,
                _ => return Err(bad()),
            };
            if n == 0 || n > 10_000 {
                return Err(bad());
            }
            n * unit
        }
    };
    Ok(secs)
}

impl Schedule {
    /// Check a schedule before it is stored.
    pub fn check(&self) -> ServiceResult<()> {
        if !matches!(self.backup_type.as_str(), "full" | "incremental" | "snapshot") {
            return Err(ServiceError::unprocessable("backup_type must be full, incremental or snapshot"));
        }
        if let Some(c) = &self.compression
            && super::chunks::Compression::parse(c).is_none()
        {
            return Err(ServiceError::unprocessable("compression must be none, zstd or lz4"));
        }
        if !self.encrypt {
            return Err(ServiceError::unprocessable("backups are always encrypted: encrypt must be true"));
        }
        period_secs(self.cron.as_deref().unwrap_or("@daily"))?;
        Ok(())
    }

    /// When the next backup is due, given the last one (`None`: never): at once, then every
    /// period after the last.
    pub fn next_due(&self, last: Option<u64>, now: u64) -> Option<u64> {
        if !self.enabled {
            return None;
        }
        let period = period_secs(self.cron.as_deref().unwrap_or("@daily")).ok()?;
        Some(last.map_or(now, |l| l + period))
    }
}

/// The backups retention removes, from `(id, created_at secs)`: those older than
/// `retention_days`, and beyond the newest `max_backups`. The newest backup is always kept.
pub fn retention_victims(backups: &[(String, u64)], retention_days: u32, max_backups: u32, now: u64) -> Vec<String> {
    let mut sorted: Vec<&(String, u64)> = backups.iter().collect();
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
    let horizon = now.saturating_sub(retention_days as u64 * 86_400);
    sorted
        .iter()
        .enumerate()
        .skip(1)
        .filter(|(i, (_, at))| (max_backups > 0 && *i >= max_backups as usize) || (retention_days > 0 && *at < horizon))
        .map(|(_, (id, _))| id.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_parse_and_bad_ones_are_refused() {
        assert_eq!(period_secs("@hourly").unwrap(), 3600);
        assert_eq!(period_secs("@daily").unwrap(), 86_400);
        assert_eq!(period_secs("@every 15m").unwrap(), 900);
        assert_eq!(period_secs("@every 6h").unwrap(), 21_600);
        for bad in ["0 3 * * *", "@every 0m", "@every 5s", "@every m", "@every -1h", ""] {
            let e = period_secs(bad).unwrap_err();
            assert_eq!(e.status.as_u16(), 422, "{bad}");
        }
    }

    #[test]
    fn the_next_backup_is_due_at_once_then_one_period_after_the_last() {
        let mut s = Schedule { cron: Some("@every 10m".into()), ..Default::default() };
        assert_eq!(s.next_due(None, 1000), None, "disabled");
        s.enabled = true;
        assert_eq!(s.next_due(None, 1000), Some(1000));
        assert_eq!(s.next_due(Some(1000), 1200), Some(1600));
    }

    #[test]
    fn retention_keeps_the_newest_and_drops_the_old_and_the_surplus() {
        let day = 86_400;
        let now = 100 * day;
        let b = |id: &str, age_days: u64| (id.to_string(), now - age_days * day);
        let all = vec![b("a", 40), b("b", 20), b("c", 10), b("d", 1), b("e", 0)];
        let mut v = retention_victims(&all, 30, 0, now);
        v.sort();
        assert_eq!(v, vec!["a"]);
        let mut v = retention_victims(&all, 0, 2, now);
        v.sort();
        assert_eq!(v, vec!["a", "b", "c"]);
        assert!(retention_victims(&all, 0, 0, now).is_empty());
        // The newest stays even when it is past the retention age.
        assert_eq!(retention_victims(&[b("old", 90)], 30, 0, now), Vec::<String>::new());
    }

    #[test]
    fn a_schedule_is_checked() {
        assert!(Schedule::default().check().is_ok());
        let bad = [
            Schedule { backup_type: "weekly".into(), ..Default::default() },
            Schedule { compression: Some("gzip".into()), ..Default::default() },
            Schedule { encrypt: false, ..Default::default() },
            Schedule { cron: Some("*/5 * * * *".into()), ..Default::default() },
        ];
        for s in bad {
            assert_eq!(s.check().unwrap_err().status.as_u16(), 422, "{s:?}");
        }
    }
}
