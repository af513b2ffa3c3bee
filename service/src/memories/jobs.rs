//! Import jobs: every import is a job on the node that took it, with its progress readable while
//! it runs (`GET /v1/import/{job_id}/status`, the SDK's `import_job_status`) from any node. A
//! job is held in that node's memory: the last [`KEEP_FINISHED`] finished jobs stay readable; a
//! node that restarts forgets its jobs (an import interrupted by it stored whole batches only,
//! and importing the same file again completes it: imports are idempotent on ids).

use std::collections::BTreeMap;
use std::sync::Arc;

use loci_storage::model::now_secs;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::transfer::{ImportFailure, ImportReport};
use crate::access::Principal;
use crate::error::{ServiceError, ServiceResult, StatusCode};

/// Imports running at once on a node, at most.
pub const MAX_RUNNING: usize = 4;
/// Finished jobs kept per node.
pub const KEEP_FINISHED: usize = 100;
/// Item failures kept in a job's report (the count is exact beyond it).
pub const MAX_REPORTED: usize = 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Running,
    /// Every item was attempted (some may have failed).
    Done,
    /// Every item was refused, or the import stopped before its end.
    Failed,
}

/// A job's state (the SDK's `ImportJobStatus` and `MemoryImportResponse` fields, and Loci's).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImportJob {
    pub job_id: String,
    pub status: JobStatus,
    pub format: String,
    pub namespace: String,
    pub total: u64,
    pub imported: u64,
    pub skipped: u64,
    pub errors: Vec<ImportFailure>,
    /// Failures beyond those listed.
    pub errors_omitted: u64,
    /// Why it stopped before its end: `(code, message)`, and how many items were not attempted.
    pub stopped: Option<(String, String)>,
    pub not_attempted: u64,
    pub started_at: u64,
    pub finished_at: Option<u64>,
    /// The key that started it (it, and admins of the namespace, may read it).
    pub key_id: String,
}

impl ImportJob {
    pub fn complete(&self) -> bool {
        self.status != JobStatus::Running && self.stopped.is_none() && self.not_attempted == 0
    }
}

/// `imp_<node>_<seq>`.
pub fn job_id(node: u64, seq: u64) -> String {
    format!("imp_{node}_{seq}")
}

pub fn node_of(job_id: &str) -> Option<u64> {
    job_id.strip_prefix("imp_")?.split_once('_')?.0.parse().ok()
}

/// One node's import jobs.
pub struct ImportJobs {
    node: u64,
    state: Mutex<(u64, BTreeMap<u64, ImportJob>)>,
}

/// The handle of a running job: its progress is written through it.
pub struct Running {
    jobs: Arc<ImportJobs>,
    seq: u64,
}

impl ImportJobs {
    pub fn new(node: u64) -> Arc<Self> {
        Arc::new(ImportJobs { node, state: Mutex::new((1, BTreeMap::new())) })
    }

    /// Register a job of `total` items, `invalid` of which failed validation already.
    pub fn start(
        self: &Arc<Self>,
        p: &Principal,
        namespace: &str,
        format: &str,
        total: u64,
        invalid: Vec<ImportFailure>,
    ) -> ServiceResult<(Running, ImportJob)> {
        let mut st = self.state.lock();
        let running = st.1.values().filter(|j| j.status == JobStatus::Running).count();
        if running >= MAX_RUNNING {
            return Err(ServiceError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "IMPORTS_BUSY",
                format!("{MAX_RUNNING} imports are running on this node; retry when one has finished"),
            )
            .with_retry_after(5));
        }
        let seq = st.0;
        st.0 += 1;
        let skipped = invalid.len() as u64;
        let mut job = ImportJob {
            job_id: job_id(self.node, seq),
            status: JobStatus::Running,
            format: format.to_string(),
            namespace: namespace.to_string(),
            total,
            imported: 0,
            skipped,
            errors: Vec::new(),
            errors_omitted: 0,
            stopped: None,
            not_attempted: 0,
            started_at: now_secs(),
            finished_at: None,
            key_id: p.key_id.clone(),
        };
        push_errors(&mut job, invalid);
        st.1.insert(seq, job.clone());
        // Keep the finished ones bounded, oldest first.
        let finished: Vec<u64> = st.1.iter().filter(|(_, j)| j.status != JobStatus::Running).map(|(k, _)| *k).collect();
        for k in finished.iter().take(finished.len().saturating_sub(KEEP_FINISHED)) {
            st.1.remove(k);
        }
        Ok((Running { jobs: self.clone(), seq }, job))
    }

    /// A job of this node, if `p` may read it: the key that started it, or an admin of its
    /// namespace. Another's job is as absent as one that never existed.
    pub fn get(&self, p: &Principal, id: &str) -> Option<ImportJob> {
        let st = self.state.lock();
        let job = st.1.values().find(|j| j.job_id == id)?;
        let may = job.key_id == p.key_id || p.allows(&job.namespace, loci_raft::catalogue::Scope::Admin);
        may.then(|| job.clone())
    }

    /// A job of this node regardless of who asks (for another node's request, which checked).
    pub fn find(&self, id: &str) -> Option<ImportJob> {
        self.state.lock().1.values().find(|j| j.job_id == id).cloned()
    }
}

fn push_errors(job: &mut ImportJob, failures: Vec<ImportFailure>) {
    for f in failures {
        if job.errors.len() < MAX_REPORTED {
            job.errors.push(f);
        } else {
            job.errors_omitted += 1;
        }
    }
}

impl Running {
    /// Progress after a batch: `imported` more stored, `failed` more refused.
    pub fn progress(&self, imported: u64, failed: Vec<ImportFailure>) {
        let mut st = self.jobs.state.lock();
        if let Some(j) = st.1.get_mut(&self.seq) {
            j.imported += imported;
            j.skipped += failed.len() as u64;
            push_errors(j, failed);
        }
    }

    /// The job ended with `report` (its counts were already reported through `progress`), or
    /// with an error that refused all of it.
    pub fn finish(self, report: Result<&ImportReport, &ServiceError>) -> Option<ImportJob> {
        let mut st = self.jobs.state.lock();
        let j = st.1.get_mut(&self.seq)?;
        match report {
            Ok(r) => {
                j.stopped = r.stopped.clone();
                j.not_attempted = r.not_attempted;
                j.skipped += r.not_attempted;
            }
            Err(e) => {
                j.stopped = Some((e.code.to_string(), e.message.clone()));
                j.not_attempted = j.total - j.imported - j.skipped;
                j.skipped = j.total - j.imported;
            }
        }
        j.status =
            if j.imported == 0 && j.total > 0 || j.stopped.is_some() { JobStatus::Failed } else { JobStatus::Done };
        j.finished_at = Some(now_secs());
        Some(j.clone())
    }
}

impl crate::core::Core {
    /// This node's import jobs.
    pub fn import_jobs(&self) -> &Arc<ImportJobs> {
        &self.cluster.local.import_jobs
    }

    /// An import job `p` may read, from whichever member holds it (404 otherwise).
    pub async fn import_status(&self, p: &Principal, id: &str) -> ServiceResult<ImportJob> {
        let missing = || ServiceError::not_found("job", format!("no import job {id}"));
        let node = node_of(id).ok_or_else(missing)?;
        let job = if node == self.cluster.node_id {
            self.import_jobs().find(id)
        } else if self.cluster.members().contains(&node) {
            self.cluster.import_job_on(node, id, std::time::Duration::from_secs(5)).await?
        } else {
            None
        };
        let job = job.ok_or_else(missing)?;
        let may = job.key_id == p.key_id || p.allows(&job.namespace, loci_raft::catalogue::Scope::Admin);
        if !may {
            return Err(missing());
        }
        Ok(job)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use loci_raft::catalogue::{Grant, Scope};

    fn key(id: &str, grants: Vec<Grant>) -> Principal {
        Principal::new(id.into(), id.into(), Scope::Write, crate::access::Grants::List(grants), None, false)
    }

    fn fail(line: usize) -> ImportFailure {
        ImportFailure { line, id: None, code: "INVALID_JSON".into(), message: "x".into() }
    }

    #[test]
    fn a_job_counts_every_item_once_and_is_readable_by_its_key_and_the_namespace_admins() {
        let jobs = ImportJobs::new(3);
        let writer = key("w", vec![Grant { pattern: "acme".into(), scope: Scope::Write }]);
        let (run, job) = jobs.start(&writer, "acme", "jsonl", 10, vec![fail(1)]).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(node_of(&job.job_id), Some(3));
        assert_eq!((job.status, job.skipped), (JobStatus::Running, 1));
        run.progress(6, vec![fail(4)]);
        let report = ImportReport { imported: 6, failed: vec![], stopped: None, not_attempted: 2 };
        let done = run.finish(Ok(&report)).unwrap_or_else(|| panic!("job"));
        assert_eq!((done.imported, done.skipped, done.total), (6, 4, 10));
        assert_eq!(done.imported + done.skipped, done.total, "every item is counted once");
        assert!(!done.complete(), "two items were not attempted");
        let admin = key("a", vec![Grant { pattern: "acme*".into(), scope: Scope::Admin }]);
        let other = key("o", vec![Grant { pattern: "globex".into(), scope: Scope::Admin }]);
        assert!(jobs.get(&writer, &done.job_id).is_some());
        assert!(jobs.get(&admin, &done.job_id).is_some());
        assert!(jobs.get(&other, &done.job_id).is_none(), "another tenant's job does not exist for it");
    }

    #[test]
    fn running_jobs_are_bounded_and_finished_ones_kept_bounded() {
        let jobs = ImportJobs::new(1);
        let p = key("w", vec![]);
        let mut held = Vec::new();
        for _ in 0..MAX_RUNNING {
            held.push(jobs.start(&p, "n", "jsonl", 1, vec![]).unwrap_or_else(|e| panic!("{e:?}")).0);
        }
        let busy = jobs.start(&p, "n", "jsonl", 1, vec![]).err().map(|e| e.status);
        assert_eq!(busy, Some(StatusCode::SERVICE_UNAVAILABLE));
        for r in held {
            r.finish(Ok(&ImportReport::default()));
        }
        for _ in 0..KEEP_FINISHED + 20 {
            let (r, _) = jobs.start(&p, "n", "jsonl", 0, vec![]).unwrap_or_else(|e| panic!("{e:?}"));
            r.finish(Ok(&ImportReport::default()));
        }
        assert!(jobs.state.lock().1.len() <= KEEP_FINISHED + 1);
    }
}
