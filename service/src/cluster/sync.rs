//! The data plane's background workers: take-over, repairs and fills by full copies,
//! anti-entropy, log retention, the sweep of former replicas and of erased namespaces' keys.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use loci_raft::catalogue::{NamespaceEntry, ReplicaState};

use super::Cluster;
use super::plane::*;

/// One worker pass.
type PassFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Period of the take-over, repair and anti-entropy passes.
const SYNC_EVERY: Duration = Duration::from_millis(300);
/// Period of log truncation and of dropping erased namespaces' keys.
const TRUNCATE_EVERY: Duration = Duration::from_secs(3);
/// Period of the sweep of former replicas (a namespace's rows go after two sweeps in a row).
const SWEEP_EVERY: Duration = Duration::from_secs(6);

impl Cluster {
    /// The data plane's background workers, one per loop, each on its own period: a slow
    /// pass of one (a long truncation, a sweep waiting on the catalogue leader) never delays
    /// another. Spawned by the node; each returns when `token` is cancelled.
    pub fn background_workers(
        self: &Arc<Self>,
        token: &tokio_util::sync::CancellationToken,
    ) -> Vec<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>> {
        let worker = |period: Duration, pass: fn(Arc<Cluster>) -> PassFuture| {
            let (c, token) = (self.clone(), token.clone());
            Box::pin(async move {
                let mut tick = tokio::time::interval(period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = token.cancelled() => return,
                        _ = tick.tick() => {}
                    }
                    if c.local.is_ready() {
                        pass(c.clone()).await;
                    }
                }
            }) as std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
        };
        vec![
            worker(SYNC_EVERY, |c| Box::pin(async move { c.take_over_pass() })),
            worker(SYNC_EVERY, |c| Box::pin(async move { c.repair_pass() })),
            worker(SYNC_EVERY, |c| Box::pin(async move { c.anti_entropy_pass() })),
            worker(TRUNCATE_EVERY, |c| {
                Box::pin(async move {
                    let loaded = c.namespaces_where(|n| c.local.store.is_loaded(n.id));
                    c.truncate_logs(&loaded).await
                })
            }),
            worker(SWEEP_EVERY, |c| {
                Box::pin(async move {
                    let me = c.node_id;
                    let mine =
                        c.namespaces_where(|n| n.placement.replicas.contains(&me) || n.placement.leaving.contains(&me));
                    c.sweep_former_replicas(&mine).await
                })
            }),
            worker(TRUNCATE_EVERY, |c| {
                Box::pin(async move {
                    // Unwrapped data keys of erased namespaces leave memory within ~3 s, also on
                    // a replica that missed the erasure and deletes the rows in the sweep.
                    let live = c.catalogue.view.read().namespace_ids.clone();
                    c.local.contexts.retain(&live);
                })
            }),
        ]
    }

    /// The namespaces `keep` selects, cloned. A pass clones only what it acts on: cloning
    /// every entry three times every 300 ms was most of an idle node's CPU at 50,000
    /// namespaces. `keep` runs under the catalogue's read lock and may take only leaf locks
    /// (the take-over map, the store's loaded set, gossip's view).
    fn namespaces_where(&self, keep: impl Fn(&NamespaceEntry) -> bool) -> Vec<NamespaceEntry> {
        self.catalogue.view.read().namespaces.values().filter(|n| keep(n)).cloned().collect()
    }

    /// A primary takes over as soon as it is made one, not only on its first request
    /// (namespaces not in memory wait for their first request, so start-up stays lazy, unless
    /// a replica waits for a copy from it).
    fn take_over_pass(self: &Arc<Self>) {
        let local = &self.local;
        let due = self.namespaces_where(|ns| {
            let copying = ns.placement.states.iter().any(|(n, s)| {
                *s == ReplicaState::Syncing || (*s == ReplicaState::Dead && *n != self.node_id && self.is_alive(*n))
            });
            ns.placement.primary() == Some(self.node_id)
                && !self.is_taken_over(ns)
                && (copying || local.store.is_loaded(ns.id))
        });
        for ns in &due {
            let lock = self.repl.takeover_locks.lock().entry(ns.id).or_default().clone();
            if lock.try_lock().is_ok() {
                let c = self.clone();
                let ns = ns.clone();
                tokio::spawn(async move {
                    if let Err(e) = c.ensure_taken_over(&ns).await {
                        tracing::debug!(namespace = %ns.name, error = %e, "taking over as primary");
                    }
                });
            }
        }
    }

    /// On a serving primary: fill Syncing replicas and repair replicas back after being Dead,
    /// by full copies (`copy_to` then makes them Active).
    fn repair_pass(self: &Arc<Self>) {
        let serving = self.namespaces_where(|ns| {
            ns.placement.primary() == Some(self.node_id)
                && ns.placement.states.values().any(|s| *s != ReplicaState::Active)
                && self.is_taken_over(ns)
        });
        for ns in &serving {
            for (node, state) in &ns.placement.states {
                if *node == self.node_id || !self.is_alive(*node) {
                    continue;
                }
                match state {
                    ReplicaState::Syncing => self.schedule_copy(ns, *node, "it is a new replica"),
                    // Back after being Dead: it may have diverged; it counts throughout.
                    ReplicaState::Dead => self.schedule_copy(ns, *node, "it is back after being dead"),
                    ReplicaState::Active => {}
                }
            }
        }
    }

    /// Anti-entropy: followers that missed entries (down, partitioned, slow) catch up even
    /// when no new write arrives for their namespace.
    fn anti_entropy_pass(self: &Arc<Self>) {
        let local = &self.local;
        let serving = self.namespaces_where(|ns| {
            ns.placement.primary() == Some(self.node_id)
                && ns.placement.replicas.len() > 1
                && self.is_taken_over(ns)
                && local.store.is_loaded(ns.id)
        });
        for ns in &serving {
            let Ok(ctx) = local.context(ns) else { continue };
            let Ok(progress) = local.store.progress(&ctx) else { continue };
            for f in ns.placement.replicas.iter().copied().filter(|f| *f != self.node_id) {
                if ns.placement.state(f) != Some(ReplicaState::Active) || !self.is_alive(f) {
                    continue;
                }
                let link = self.link(ns.id, f);
                let behind = link.try_lock().is_some_and(|acked| *acked < progress.applied_seq);
                if behind {
                    let c = self.clone();
                    let ns = ns.clone();
                    let seq = progress.applied_seq;
                    tokio::spawn(async move { c.replicate_to(&ns, f, seq).await });
                }
            }
        }
    }

    /// Log retention. A primary keeps what its slowest follower still needs (at most
    /// `LOG_KEEP` entries) and tells followers the floor; so a forgotten memory's content
    /// leaves every log once every replica has applied the deletion.
    pub(crate) async fn truncate_logs(self: &Arc<Self>, namespaces: &[NamespaceEntry]) {
        let local = &self.local;
        // Only namespaces in memory: the others have not changed since they were unloaded, and
        // reading their progress would load them all.
        for ns in
            namespaces.iter().filter(|n| n.placement.replicas.contains(&self.node_id) && local.store.is_loaded(n.id))
        {
            let Ok(ctx) = local.context(ns) else { continue };
            let Ok(progress) = local.store.progress(&ctx) else { continue };
            let mut floor = progress.applied_seq.saturating_sub(LOG_KEEP);
            if ns.placement.primary() == Some(self.node_id) && self.is_taken_over(ns) {
                let mut min_acked = Some(progress.applied_seq);
                for f in ns.placement.writable().filter(|f| *f != self.node_id) {
                    let acked = self.link(ns.id, f).try_lock().map_or(0, |a| *a);
                    min_acked = min_acked.map(|m| m.min(acked));
                }
                floor = floor.max(min_acked.unwrap_or(0));
                self.repl.floors.lock().insert((ns.id, self.node_id), floor);
                // Followers learn the floor with the next entry; idle namespaces get it here.
                for f in ns.placement.writable().filter(|f| *f != self.node_id) {
                    let sent = self.repl.floors.lock().get(&(ns.id, f)).copied().unwrap_or(0);
                    if floor > sent && self.is_alive(f) {
                        let req = ReplicateRequest {
                            namespace: ns.name.clone(),
                            catalogue_index: self.catalogue.view.applied_index(),
                            sender_epoch: ns.placement.epoch,
                            prev: None,
                            floor,
                            entries: Vec::new(),
                        };
                        if self.replicate_on(f, req, RPC_TIMEOUT).await.is_ok() {
                            self.repl.floors.lock().insert((ns.id, f), floor);
                        }
                    }
                }
            }
            if floor > 0 {
                let store = local.store.clone();
                let _ = tokio::task::spawn_blocking(move || store.truncate_repl(&ctx, floor)).await;
            }
        }
    }

    /// Rows of namespaces this node no longer replicates (it was moved off, or it was down
    /// while the namespace was erased) are deleted once that has held for two sweeps in a row.
    pub(crate) async fn sweep_former_replicas(&self, namespaces: &[NamespaceEntry]) {
        let local = &self.local;
        if self.catalogue.current_leader().await.is_none() {
            return;
        }
        let mine: std::collections::HashSet<u64> = namespaces
            .iter()
            .filter(|n| n.placement.replicas.contains(&self.node_id) || n.placement.leaving.contains(&self.node_id))
            .map(|n| n.id)
            .collect();
        // Copies whose sender went away (10 min without a step: longer than any step's timeout).
        let store = local.store.clone();
        if let Ok(Ok(n)) =
            tokio::task::spawn_blocking(move || store.drop_abandoned_copies(Duration::from_secs(600))).await
            && n > 0
        {
            tracing::info!(copies = n, "dropped staged full copies whose sender went away");
        }
        let store = local.store.clone();
        let Ok(Ok(stored)) = tokio::task::spawn_blocking(move || store.stored_namespace_ids()).await else { return };
        let copying: BTreeSet<u64> = self.repl.copies.lock().iter().map(|(ns, _)| *ns).collect();
        let candidates: BTreeSet<u64> =
            stored.into_iter().filter(|id| !mine.contains(id) && !copying.contains(id)).collect();
        let confirmed: Vec<u64> = {
            let mut prev = self.repl.orphan_candidates.lock();
            let c = candidates.intersection(&prev).copied().collect();
            *prev = candidates;
            c
        };
        for id in confirmed {
            let store = local.store.clone();
            if let Ok(Ok(n)) = tokio::task::spawn_blocking(move || store.drop_namespace(id)).await {
                tracing::info!(ns_id = id, rows = n, "deleted the rows of a namespace this node no longer replicates");
                self.repl.links.lock().retain(|(ns, _), _| *ns != id);
                self.repl.taken_over.lock().remove(&id);
            }
        }
    }
}
