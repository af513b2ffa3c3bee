//! Retention of audit files: when the file reaches `max_file_bytes` it is renamed `FILE.1` (the
//! older ones shift to `FILE.2` …), at most `retain_files` rotated files are kept, and rotated
//! files older than `retention_days` are deleted. The hash chain runs on across files: a new
//! file starts with an `audit_rotated` record whose `prev` is the hash of the last line of the
//! file before it, so the files, oldest first, are one chain. A chain may start from something
//! other than genesis only at such a record (the files before it were deleted by retention);
//! lines removed from the start or middle of a file, or a whole file from the middle, still
//! break it.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// `FILE.n`.
pub fn rotated(path: &Path, n: usize) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// The log's files that exist, newest first: `FILE`, `FILE.1`, `FILE.2`, … (up to a gap).
pub fn files_newest_first(path: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if path.exists() {
        out.push(path.to_path_buf());
    }
    for n in 1..=10_000 {
        let p = rotated(path, n);
        if !p.exists() {
            break;
        }
        out.push(p);
    }
    out
}

/// Shift the rotated files up by one and move `path` to `FILE.1`, keeping `retain` rotated files
/// (none: the rotated file is deleted); then delete rotated files older than `max_age`. Answers
/// the files deleted.
pub fn rotate(path: &Path, retain: usize, max_age: Option<Duration>) -> std::io::Result<Vec<PathBuf>> {
    let mut deleted = Vec::new();
    let existing = files_newest_first(path).len().saturating_sub(1);
    let mut remove = |p: PathBuf| -> std::io::Result<()> {
        std::fs::remove_file(&p)?;
        deleted.push(p);
        Ok(())
    };
    if retain == 0 {
        for n in 1..=existing {
            remove(rotated(path, n))?;
        }
        remove(path.to_path_buf())?;
        return Ok(deleted);
    }
    // Those that would be shifted past the last kept place.
    for n in retain..=existing {
        remove(rotated(path, n))?;
    }
    for n in (1..retain).rev() {
        let from = rotated(path, n);
        if from.exists() {
            std::fs::rename(&from, rotated(path, n + 1))?;
        }
    }
    std::fs::rename(path, rotated(path, 1))?;
    if let Some(age) = max_age {
        let now = SystemTime::now();
        // Oldest last: once one is too old, every older one is too.
        let files = files_newest_first(path);
        if let Some(first_old) = files.iter().position(|p| {
            p.as_path() != path
                && std::fs::metadata(p)
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| now.duration_since(t).is_ok_and(|d| d > age))
        }) {
            for p in &files[first_old..] {
                std::fs::remove_file(p)?;
                deleted.push(p.clone());
            }
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(p: &Path, s: &str) {
        std::fs::write(p, s).unwrap_or_else(|e| panic!("{e}"));
    }

    fn read(p: &Path) -> String {
        std::fs::read_to_string(p).unwrap_or_default()
    }

    #[test]
    fn rotation_shifts_files_and_keeps_the_retained_number() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let log = dir.path().join("audit.log");
        for round in 0..5 {
            write(&log, &format!("gen {round}"));
            rotate(&log, 3, None).unwrap_or_else(|e| panic!("{e}"));
        }
        assert!(!log.exists(), "the caller opens a new file");
        assert_eq!(read(&rotated(&log, 1)), "gen 4");
        assert_eq!(read(&rotated(&log, 2)), "gen 3");
        assert_eq!(read(&rotated(&log, 3)), "gen 2");
        assert!(!rotated(&log, 4).exists(), "three rotated files kept");
        write(&log, "current");
        assert_eq!(files_newest_first(&log).len(), 4);
    }

    #[test]
    fn no_retained_files_deletes_the_rotated_one_and_old_files_age_out() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let log = dir.path().join("a.log");
        write(&log, "x");
        let gone = rotate(&log, 0, None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(gone, vec![log.clone()]);
        assert!(files_newest_first(&log).is_empty());
        write(&log, "1");
        rotate(&log, 5, None).unwrap_or_else(|e| panic!("{e}"));
        write(&log, "2");
        let gone = rotate(&log, 5, Some(Duration::ZERO)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(gone.len(), 2, "every rotated file is older than zero: {gone:?}");
    }
}
