//! Re-embedding jobs. A namespace's embedder is fixed at creation; switching it means
//! recomputing every vector. The job runs in the background on the node that accepted it:
//! it reads the namespace page by page from its primary, embeds with the target embedder,
//! stages the vectors on every replica (a replicated write), reports progress in the catalogue,
//! and finally switches the catalogue entry to the target. Each replica then promotes the staged
//! vectors (embedding only what was written or edited since) before serving the namespace again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use loci_raft::Command;
use loci_raft::catalogue::{CommandResult, EmbedderSpec, NamespaceEntry, ReembedJob};
use loci_storage::model::{DataOp, DataResult, now_secs};
use serde_json::{Value, json};

use crate::core::Core;
use crate::error::{ServiceError, ServiceResult};

/// Memories read, embedded and staged per step.
const PAGE: usize = 64;
/// A running job that has not reported for this long is considered abandoned (its node died).
pub const ABANDONED_AFTER_SECS: u64 = 60;

pub fn job_json(job: &ReembedJob) -> Value {
    let progress = if job.total == 0 { 1.0 } else { (job.done as f64 / job.total as f64).min(1.0) };
    json!({
        "state": job.state,
        "target": {"provider": job.target.provider, "dimension": job.target.dimension},
        "generation": job.target.generation,
        "total": job.total,
        "done": job.done,
        "progress": progress,
        "node_id": job.node.to_string(),
        "started_at": job.started_at,
        "updated_at": job.updated_at,
        "finished_at": job.finished_at,
        "error": job.error,
    })
}

impl Core {
    /// Validate and start a re-embedding job; returns it as recorded in the catalogue.
    pub async fn start_reembed(
        self: &Arc<Self>,
        entry: NamespaceEntry,
        target: EmbedderSpec,
    ) -> ServiceResult<ReembedJob> {
        if target.provider == "client" {
            return Err(ServiceError::bad_request(
                "a `client` namespace gets its vectors from the client: re-embedding needs a server-side embedder",
            ));
        }
        if target.provider == entry.embedder.provider && target.dimension == entry.embedder.dimension {
            return Err(ServiceError::bad_request(format!(
                "'{}' already embeds with {} at {} dimensions",
                entry.name, target.provider, target.dimension
            )));
        }
        // The target must be usable on this node (the model loaded, the endpoint configured).
        self.embedder(&target)?;
        let now = now_secs();
        if let Some(job) = &entry.reembed {
            if job.state == "running" && now.saturating_sub(job.updated_at) < ABANDONED_AFTER_SECS {
                return Err(ServiceError::conflict(format!(
                    "a re-embedding job for '{}' is running ({} of {} done)",
                    entry.name, job.done, job.total
                )));
            }
        }
        let total = match self.exec(&entry, DataOp::Stats).await? {
            DataResult::Stats(s) => s.memory_count,
            _ => 0,
        };
        let target = EmbedderSpec { generation: entry.embedder.generation + 1, ..target };
        let job = ReembedJob {
            target: target.clone(),
            state: "running".into(),
            total,
            done: 0,
            node: self.config.node_id,
            started_at: now,
            updated_at: now,
            finished_at: None,
            error: None,
        };
        self.record_job(&entry.name, job.clone()).await?;
        tracing::info!(namespace = %entry.name, provider = %target.provider, dimension = target.dimension, total, "re-embedding started");
        let core = self.clone();
        let name = entry.name.clone();
        let started = job.clone();
        tokio::spawn(async move {
            let mut job = job;
            match core.run_reembed(&name, &mut job).await {
                Ok(()) => tracing::info!(namespace = %name, memories = job.done, "re-embedding finished"),
                Err(e) => {
                    tracing::warn!(namespace = %name, error = %e.message, "re-embedding failed");
                    job.state = "failed".into();
                    job.error = Some(e.message.clone());
                    job.finished_at = Some(now_secs());
                    job.updated_at = now_secs();
                    let _ = core.record_job(&name, job).await;
                }
            }
        });
        Ok(started)
    }

    async fn record_job(&self, name: &str, job: ReembedJob) -> ServiceResult<()> {
        match self.catalogue.write(Command::SetReembed { name: name.to_string(), job }).await? {
            CommandResult::Namespace { .. } => Ok(()),
            CommandResult::NotFound(n) => Err(ServiceError::namespace_not_found(&n)),
            CommandResult::Rejected(m) => Err(ServiceError::conflict(m)),
            other => Err(ServiceError::internal(format!("unexpected catalogue answer {other:?}"))),
        }
    }

    async fn run_reembed(&self, name: &str, job: &mut ReembedJob) -> ServiceResult<()> {
        let target = job.target.clone();
        let embedder = self.embedder(&target)?;
        let mut after: Option<String> = None;
        let mut reported = Instant::now();
        loop {
            let entry = self.current_for_job(name, &target)?;
            let page =
                match self.exec_retrying(&entry, DataOp::ContentPage { after: after.clone(), limit: PAGE }).await? {
                    DataResult::ContentPage(p) => p,
                    other => return Err(ServiceError::internal(format!("unexpected answer {other:?}"))),
                };
            let Some(last) = page.last().map(|(id, _, _)| id.clone()) else { break };
            let read = page.len() as u64;
            let texts: Vec<String> = page.iter().map(|(_, _, c)| c.clone()).collect();
            let vectors = self.embed_retrying(&embedder, texts).await?;
            let items: Vec<(String, u64, Vec<f32>)> = page
                .into_iter()
                .zip(vectors)
                .filter(|(_, v)| v.len() == target.dimension && v.iter().any(|x| *x != 0.0))
                .map(|((id, version, _), v)| (id, version, v))
                .collect();
            if !items.is_empty() {
                let entry = self.current_for_job(name, &target)?;
                self.exec_retrying(&entry, DataOp::StageVectors { generation: target.generation, items }).await?;
            }
            job.done += read;
            after = Some(last);
            if reported.elapsed() >= Duration::from_secs(1) {
                job.total = job.total.max(job.done);
                job.updated_at = now_secs();
                self.record_job(name, job.clone()).await?;
                reported = Instant::now();
            }
        }
        // Memories stored during the job were read too: the total grows with them.
        job.total = job.total.max(job.done);
        job.updated_at = now_secs();
        job.finished_at = Some(now_secs());
        self.record_job(name, job.clone()).await?;
        match self.catalogue.write(Command::SwitchEmbedder { name: name.to_string(), target: target.clone() }).await? {
            CommandResult::Namespace { entry, .. } => {
                // Promote on the primary now rather than on the first request.
                let _ = self.exec_retrying(&entry, DataOp::Stats).await;
                Ok(())
            }
            CommandResult::NotFound(n) => Err(ServiceError::namespace_not_found(&n)),
            CommandResult::Rejected(m) => Err(ServiceError::conflict(m)),
            other => Err(ServiceError::internal(format!("unexpected catalogue answer {other:?}"))),
        }
    }

    fn current_for_job(&self, name: &str, target: &EmbedderSpec) -> ServiceResult<NamespaceEntry> {
        let entry = self.namespace(name).ok_or_else(|| ServiceError::namespace_not_found(name))?;
        if entry.embedder.generation + 1 != target.generation {
            return Err(ServiceError::conflict("the namespace switched embedders meanwhile"));
        }
        Ok(entry)
    }

    /// Transient refusals (a busy embedder, a failover, a placement change) are retried.
    async fn exec_retrying(&self, entry: &NamespaceEntry, op: DataOp) -> ServiceResult<DataResult> {
        let mut attempt = 0u32;
        loop {
            match self.exec(entry, op.clone()).await {
                Ok(r) => return Ok(r),
                Err(e) if attempt < 30 && e.is_retryable() => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt.min(10)))).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn embed_retrying(
        &self,
        embedder: &loci_storage::embed::SharedEmbedder,
        texts: Vec<String>,
    ) -> ServiceResult<Vec<Vec<f32>>> {
        let mut attempt = 0u32;
        loop {
            let e = embedder.clone();
            let t = texts.clone();
            let res = tokio::task::spawn_blocking(move || {
                let refs: Vec<&str> = t.iter().map(String::as_str).collect();
                e.embed(&refs)
            })
            .await
            .map_err(|e| ServiceError::internal(e.to_string()))?;
            match res {
                Ok(v) if v.len() == texts.len() => return Ok(v),
                Ok(_) => return Err(ServiceError::internal("the embedder returned a wrong number of vectors")),
                Err(loci_storage::StorageError::Overloaded(_)) if attempt < 100 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}
