//! Export and import of a namespace's memories (`GET /v1/export`, `POST /v1/import`; the SDK's
//! `export_memories` and `import_memories`).
//!
//! An export is read in pages in id order (`after` = the last id received), each page one read
//! on the namespace's primary bounded in count and bytes, so a front can stream a namespace of
//! any size holding one page, and a client that lost the connection resumes after the last id it
//! has. An import is validated item by item by the front; the valid items are stored here in
//! batches, each all or nothing, with their ids (an upsert: importing the same file again changes
//! nothing but `updated_at`), and a batch that fails is retried one item at a time so every
//! failure is reported against its item and no item is half written.

use loci_raft::catalogue::Scope;
use loci_storage::model::{DataOp, DataResult, MemoryFilter, NewMemory, VectorHit};

use super::{Memories, Target, unexpected};
use crate::access::Principal;
use crate::error::{ServiceError, ServiceResult};

/// Memories per export page.
pub const EXPORT_PAGE: usize = 500;
/// Memories per stored import batch.
pub const IMPORT_BATCH: usize = 100;

/// One page of an export.
#[derive(Debug, Default)]
pub struct ExportPage {
    /// Records (with their vectors when asked), in id order.
    pub items: Vec<VectorHit>,
    /// More records follow the last one.
    pub more: bool,
}

/// One item of an import that was not stored.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ImportFailure {
    /// Index of the item in the import (its line, from 1, for JSON Lines).
    pub line: usize,
    pub id: Option<String>,
    pub code: String,
    pub message: String,
}

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImportReport {
    pub imported: u64,
    pub failed: Vec<ImportFailure>,
    /// The import stopped before its end on a refusal that applies to every item left (the
    /// namespace's quota or rate limit, the node): `(code, message)`. The items before it are
    /// stored; the ones after it are not.
    pub stopped: Option<(String, String)>,
    /// Items not attempted because the import stopped.
    pub not_attempted: u64,
}

impl Memories<'_> {
    /// The page of `t`'s memories after `after` (read scope). An unknown namespace is empty.
    pub async fn export_page(
        &self,
        p: &Principal,
        t: &Target,
        after: Option<String>,
        include_vectors: bool,
    ) -> ServiceResult<ExportPage> {
        p.require(&t.namespace, Scope::Read)?;
        let Some(entry) = self.core.namespace(&t.namespace) else {
            return Ok(ExportPage::default());
        };
        let filter = MemoryFilter { agent_id: t.agent_filter.clone(), ..Default::default() };
        let op = DataOp::Export { after, limit: EXPORT_PAGE, include_vectors, filter };
        match self.core.exec(&entry, op).await? {
            DataResult::Exported { items, more, .. } => Ok(ExportPage { items, more }),
            _ => Err(unexpected()),
        }
    }

    /// Store validated items (`(line, item)`) into `t` (write scope), in batches; see the
    /// module documentation for what a failure does.
    /// `job`, when given, hears the progress after every batch.
    pub async fn import(
        &self,
        p: &Principal,
        t: &Target,
        items: Vec<(usize, NewMemory)>,
        job: Option<&super::jobs::Running>,
    ) -> ServiceResult<ImportReport> {
        p.require(&t.namespace, Scope::Write)?;
        let mut report = ImportReport::default();
        let total = items.len() as u64;
        let mut attempted = 0u64;
        let mut rest = items.into_iter().peekable();
        'batches: while rest.peek().is_some() {
            let batch: Vec<(usize, NewMemory)> = rest.by_ref().take(IMPORT_BATCH).collect();
            let memories: Vec<NewMemory> = batch.iter().map(|(_, m)| m.clone()).collect();
            match self.store_batch(p, t, memories).await {
                Ok(stored) => {
                    report.imported += stored.records.len() as u64;
                    attempted += batch.len() as u64;
                    if let Some(j) = job {
                        j.progress(stored.records.len() as u64, Vec::new());
                    }
                }
                Err(e) if stops_the_import(&e) => {
                    report.stopped = Some((e.code.to_string(), e.message));
                    break 'batches;
                }
                Err(_) => {
                    for (line, item) in batch {
                        let id = item.id.clone();
                        match self.store(p, t, item).await {
                            Ok(_) => {
                                report.imported += 1;
                                if let Some(j) = job {
                                    j.progress(1, Vec::new());
                                }
                            }
                            Err(e) if stops_the_import(&e) => {
                                report.stopped = Some((e.code.to_string(), e.message));
                                break 'batches;
                            }
                            Err(e) => {
                                let f = ImportFailure { line, id, code: e.code.to_string(), message: e.message };
                                if let Some(j) = job {
                                    j.progress(0, vec![f.clone()]);
                                }
                                report.failed.push(f);
                            }
                        }
                        attempted += 1;
                    }
                }
            }
        }
        report.not_attempted = total - attempted;
        Ok(report)
    }
}

/// Refusals that are not about one item: the key, the namespace's quota or budget, the node.
fn stops_the_import(e: &ServiceError) -> bool {
    matches!(e.status.as_u16(), 401 | 403 | 413 | 429 | 503)
}
