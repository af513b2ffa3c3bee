//! Entity extraction off the write path. A commit hands each stored memory's content to a
//! bounded queue once its batch is durable and its in-memory state updated; one worker thread
//! per store runs the extractor outside every lock and records the keys in the namespace's
//! entity index if the memory is still at that version (a later write queues its own job; a
//! delete has already forgotten it). The index is derived data: a crash loses queued jobs and
//! nothing else, since loading a namespace rebuilds its index from content.
//!
//! A full queue never slows a write down to the extractor's pace: the job is then done at
//! once with the built-in rule-based extractor (microseconds, no network), counted as
//! `inline`. Reads that walk `shares_entity` edges first wait, boundedly, for the
//! namespace's queued jobs ([`Extraction::settle`]), so a client reads its own writes.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};

use super::Namespace;
use crate::extract::{self, SharedExtractor};

/// Jobs the queue holds at most (content included: bounded memory, ~100 MB at 1 KB each).
pub const QUEUE_BOUND: usize = 100_000;
/// How long a read waits at most for a namespace's queued extractions.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(2);

struct Job {
    ns_id: u64,
    id: String,
    version: u64,
    content: String,
}

/// What the extraction queue has done since the store opened.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ExtractionStats {
    /// Jobs queued and not yet done.
    pub queued: u64,
    /// Jobs the worker did.
    pub extracted: u64,
    /// Jobs whose extractor failed (the memory then mentions nothing until it is written again
    /// or its namespace is loaded again).
    pub failed: u64,
    /// Jobs done at once on the write path with the rule-based extractor (queue full).
    pub inline: u64,
    /// Seconds the worker spent extracting.
    pub busy_seconds: f64,
}

/// The store's loaded namespaces (the worker records into the one loaded when a job is done).
pub(super) type Loaded = Arc<RwLock<HashMap<u64, Arc<Namespace>>>>;

struct Shared {
    loaded: Loaded,
    extractor: RwLock<SharedExtractor>,
    /// Queued jobs per namespace id.
    pending: Mutex<HashMap<u64, usize>>,
    settled: Condvar,
    extracted: AtomicU64,
    failed: AtomicU64,
    inline: AtomicU64,
    busy_micros: AtomicU64,
}

impl Shared {
    fn done(&self, ns_id: u64) {
        let mut p = self.pending.lock();
        if let Some(n) = p.get_mut(&ns_id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                p.remove(&ns_id);
            }
        }
        drop(p);
        self.settled.notify_all();
    }

    fn run(&self, job: &Job) {
        let extractor = self.extractor.read().clone();
        let started = Instant::now();
        let found = extractor.extract(&job.content, &[]);
        self.busy_micros.fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        match found {
            Ok(found) => {
                record(&self.loaded, job, extract::keys(&found));
                self.extracted.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::warn!(namespace = job.ns_id, id = %job.id, extractor = extractor.name(), error = %e, "entity extraction failed");
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Record `keys` for the job's memory if it is still at the job's version in a namespace
/// loaded and not dropped (one loaded again has rebuilt its index from content).
fn record(loaded: &Loaded, job: &Job, keys: Vec<String>) {
    let Some(ns) = loaded.read().get(&job.ns_id).cloned() else { return };
    if ns.dropped.load(Ordering::Acquire) {
        return;
    }
    let mut st = ns.state.write();
    if st.metas.get(&job.id).is_some_and(|m| m.version == job.version) {
        st.entities.set_keys(&job.id, keys);
    }
}

fn worker(rx: Receiver<Job>, shared: Arc<Shared>) {
    while let Ok(job) = rx.recv() {
        shared.run(&job);
        shared.done(job.ns_id);
    }
}

/// The store's extraction queue and its worker (which ends when the store is dropped).
pub(super) struct Extraction {
    tx: SyncSender<Job>,
    shared: Arc<Shared>,
}

impl Extraction {
    pub(super) fn start(loaded: Loaded, bound: usize) -> Self {
        let (tx, rx) = std::sync::mpsc::sync_channel(bound);
        let shared = Arc::new(Shared {
            loaded,
            extractor: RwLock::new(extract::rules()),
            pending: Mutex::new(HashMap::new()),
            settled: Condvar::new(),
            extracted: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            inline: AtomicU64::new(0),
            busy_micros: AtomicU64::new(0),
        });
        let s = shared.clone();
        if let Err(e) = std::thread::Builder::new().name("loci-extract".into()).spawn(move || worker(rx, s)) {
            // Without a worker every job is done inline (try_send below fails once the
            // receiver is gone).
            tracing::error!(error = %e, "could not start the entity extraction worker");
        }
        Extraction { tx, shared }
    }

    pub(super) fn set_extractor(&self, e: SharedExtractor) {
        *self.shared.extractor.write() = e;
    }

    pub(super) fn extractor(&self) -> SharedExtractor {
        self.shared.extractor.read().clone()
    }

    /// Queue the extraction of a memory just committed (its meta already in the state; the
    /// caller holds no lock of the namespace's state).
    pub(super) fn enqueue(&self, ns_id: u64, id: &str, version: u64, content: &str) {
        *self.shared.pending.lock().entry(ns_id).or_default() += 1;
        let job = Job { ns_id, id: id.to_string(), version, content: content.to_string() };
        match self.tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => {
                let found = crate::entities::extract(&job.content, &[]);
                record(&self.shared.loaded, &job, extract::keys(&found));
                self.shared.inline.fetch_add(1, Ordering::Relaxed);
                self.shared.done(ns_id);
            }
        }
    }

    /// Wait until the namespace has no queued extraction, at most `timeout`; whether it has none.
    pub(super) fn settle(&self, ns_id: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut p = self.shared.pending.lock();
        while p.contains_key(&ns_id) {
            if self.shared.settled.wait_until(&mut p, deadline).timed_out() {
                return !p.contains_key(&ns_id);
            }
        }
        true
    }

    /// Queued extractions of one namespace.
    pub(super) fn pending(&self, ns_id: u64) -> u64 {
        self.shared.pending.lock().get(&ns_id).copied().unwrap_or(0) as u64
    }

    pub(super) fn stats(&self) -> ExtractionStats {
        let s = &self.shared;
        ExtractionStats {
            queued: s.pending.lock().values().map(|n| *n as u64).sum(),
            extracted: s.extracted.load(Ordering::Relaxed),
            failed: s.failed.load(Ordering::Relaxed),
            inline: s.inline.load(Ordering::Relaxed),
            busy_seconds: s.busy_micros.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}
