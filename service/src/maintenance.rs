//! Memory maintenance as both fronts call it (`core.maintenance()`): deduplication and its
//! trash, consolidation, feedback on importance, the decay ranking applies, and the autopilot
//! that runs deduplication, consolidation and trash purges in the background.
//!
//! The cluster's default decay and autopilot settings are in the catalogue
//! ([`loci_raft::maintenance::Maintenance`], global admin); a namespace's memory policy may
//! override either (`decay`, `autopilot`). The autopilot runs on each namespace's primary, one
//! namespace at a time, and rests after each for four times as long as the namespace took, so
//! it takes at most a fifth of one core from foreground requests.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::cluster::Reach;
use loci_raft::catalogue::{CommandResult, NamespaceEntry, Scope};
use loci_raft::maintenance::{AutopilotConfig, DedupMode, Maintenance};
use loci_storage::model::*;
use parking_lot::Mutex;
use serde::Serialize;

use crate::access::Principal;
use crate::core::Core;
use crate::error::{ServiceError, ServiceResult};
use crate::memories::Target;

/// Trash entries one listing carries at most.
pub const MAX_TRASH_LIST: usize = 1_000;
/// Trash entries one purge erases at most (per namespace and pass).
const PURGE_BATCH: usize = 1_000;
/// How a feedback signal moves importance.
pub fn feedback_delta(signal: &str) -> Option<(&'static str, f64)> {
    match signal.trim().to_ascii_lowercase().as_str() {
        "upvote" | "positive" | "up" => Some(("upvote", 0.1)),
        "downvote" | "negative" | "down" => Some(("downvote", -0.1)),
        "flag" => Some(("flag", -0.2)),
        _ => None,
    }
}

/// What one autopilot pass did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AutopilotRun {
    pub started_at: u64,
    pub finished_at: u64,
    pub trigger: String,
    pub namespaces: u64,
    pub scanned: u64,
    pub duplicate_groups: u64,
    pub duplicates_found: u64,
    pub duplicates_moved: u64,
    pub consolidations: u64,
    pub memories_consolidated: u64,
    pub trash_purged: u64,
    pub errors: Vec<String>,
    /// Seconds the pass worked, and rested to stay within its CPU share.
    pub busy_secs: f64,
    pub rested_secs: f64,
}

/// A pass's figures as Prometheus counters (`trigger`: schedule, or the manual trigger).
fn record_metrics(run: &AutopilotRun) {
    let t = if run.trigger == "schedule" { "schedule" } else { "manual" };
    metrics::counter!("loci_autopilot_passes_total", "trigger" => t).increment(1);
    metrics::counter!("loci_autopilot_namespaces_total", "trigger" => t).increment(run.namespaces);
    metrics::counter!("loci_autopilot_duplicates_moved_total").increment(run.duplicates_moved);
    metrics::counter!("loci_autopilot_memories_consolidated_total").increment(run.memories_consolidated);
    metrics::counter!("loci_autopilot_trash_purged_total").increment(run.trash_purged);
    metrics::counter!("loci_autopilot_errors_total").increment(run.errors.len() as u64);
    metrics::histogram!("loci_autopilot_pass_busy_seconds").record(run.busy_secs);
}

/// What the decay engine did (ranking applies decay at query time; a pass measures it).
#[derive(Clone, Debug, Default, Serialize)]
pub struct DecayCycle {
    pub at: u64,
    pub namespaces: u64,
    pub memories: u64,
    pub decayed: u64,
    pub avg_importance: f64,
    pub avg_effective_importance: f64,
}

/// This node's memory of autopilot passes (each node runs its own primaries' namespaces).
#[derive(Default)]
pub struct MaintenanceState {
    last_run: Mutex<Option<AutopilotRun>>,
    runs: Mutex<u64>,
    /// When each namespace (by id) was last deduplicated and consolidated here.
    done: Mutex<HashMap<u64, (Instant, Instant)>>,
    decay_cycles: Mutex<(u64, Option<DecayCycle>)>,
    running: tokio::sync::Mutex<()>,
}

#[derive(Clone, Copy)]
pub struct Maint<'a> {
    core: &'a Core,
}

impl Core {
    pub fn maintenance(&self) -> Maint<'_> {
        Maint { core: self }
    }
}

fn unexpected() -> ServiceError {
    ServiceError::internal("unexpected result")
}

fn hours(h: u64) -> u64 {
    h.saturating_mul(3600)
}

/// Deduplication as the autopilot settings `ap` say, at `threshold`, over `agent`'s memories
/// (all when `None`) of `memory_type`.
fn dedup_params(
    ap: &AutopilotConfig,
    threshold: f64,
    agent: Option<String>,
    memory_type: Option<MemoryType>,
    dry_run: bool,
) -> DedupParams {
    DedupParams {
        agent,
        memory_type,
        threshold: threshold as f32,
        min_text_overlap: ap.dedup_min_text_overlap as f32,
        dry_run,
        retention_secs: hours(ap.trash_retention_hours),
        max_scan: ap.max_scan as usize,
        same_session_only: !ap.dedup_cross_session,
    }
}

/// A consolidation of `agent`'s memories (these ids, or its largest alike group) under a new id.
fn consolidate_params(
    ap: &AutopilotConfig,
    agent: &str,
    ids: Option<Vec<String>>,
    threshold: f64,
    target_type: Option<MemoryType>,
) -> ConsolidateParams {
    let mut b = [0u8; 12];
    loci_storage::crypto::random_bytes(&mut b);
    ConsolidateParams {
        agent: agent.to_string(),
        ids,
        threshold: threshold as f32,
        target_type,
        retention_secs: hours(ap.trash_retention_hours),
        max_scan: ap.max_scan as usize,
        new_id: format!("mem_consolidated_{}", hex::encode(b)),
        embedding: None,
        same_session_only: !ap.consolidate_cross_session,
    }
}

impl<'a> Maint<'a> {
    /// The cluster's settings.
    pub fn settings(&self) -> Maintenance {
        self.core.catalogue.view.read().maintenance.clone()
    }

    /// Replace the cluster's settings (global admin; audited).
    pub async fn set_settings(&self, p: &Principal, m: Maintenance) -> ServiceResult<Maintenance> {
        p.require_global(Scope::Admin)?;
        if let Some(why) = m.invalid() {
            return Err(ServiceError::bad_request(why));
        }
        match self
            .core
            .write_everywhere(loci_raft::Command::SetMaintenance { maintenance: m.clone() }, Reach::Alive)
            .await?
        {
            CommandResult::Ok => {
                self.core.audit.event("maintenance_set", Some(p), serde_json::json!({"maintenance": m}));
                Ok(m)
            }
            CommandResult::Rejected(why) => Err(ServiceError::bad_request(why)),
            other => Err(ServiceError::internal(format!("unexpected catalogue answer {other:?}"))),
        }
    }

    /// The decay a namespace's ranking applies (`None`: off).
    pub fn decay_for(&self, entry: &NamespaceEntry) -> Option<DecayConfig> {
        let d = entry.policy.decay.unwrap_or_else(|| self.settings().decay);
        d.enabled.then_some(d)
    }

    pub fn autopilot_for(&self, entry: &NamespaceEntry) -> AutopilotConfig {
        entry.policy.autopilot.clone().unwrap_or_else(|| self.settings().autopilot)
    }

    fn entry(&self, p: &Principal, t: &Target, scope: Scope) -> ServiceResult<NamespaceEntry> {
        p.require(&t.namespace, scope)?;
        self.core
            .namespace(&t.namespace)
            .ok_or_else(|| ServiceError::not_found("namespace", format!("namespace '{}' not found", t.namespace)))
    }

    /// Find near-duplicates among an agent's memories (write scope); unless `dry_run`, move them
    /// to the trash, restorable for the autopilot's `trash_retention_hours`.
    pub async fn deduplicate(
        &self,
        p: &Principal,
        t: &Target,
        threshold: Option<f64>,
        memory_type: Option<MemoryType>,
        dry_run: bool,
    ) -> ServiceResult<DedupReport> {
        let entry = self.entry(p, t, Scope::Write)?;
        let ap = self.autopilot_for(&entry);
        let threshold = threshold.unwrap_or(ap.dedup_threshold);
        if !(threshold > 0.0 && threshold <= 1.0) {
            return Err(ServiceError::bad_request("threshold must be above 0 and at most 1"));
        }
        let params = dedup_params(&ap, threshold, t.agent_filter.clone(), memory_type, dry_run);
        match self.core.exec(&entry, DataOp::Deduplicate(params)).await? {
            DataResult::Deduplicated(r) => {
                if r.moved > 0 {
                    self.core.namespace_event(&entry, "deduplicated", serde_json::json!({"moved": r.moved}));
                }
                Ok(r)
            }
            _ => Err(unexpected()),
        }
    }

    /// Merge memories of an agent into one (write scope): these ids, or the largest group of
    /// alike memories. The sources move to the trash; the merged memory's metadata names them.
    pub async fn consolidate(
        &self,
        p: &Principal,
        t: &Target,
        agent: &str,
        ids: Option<Vec<String>>,
        threshold: Option<f64>,
        target_type: Option<MemoryType>,
    ) -> ServiceResult<Consolidated> {
        let entry = self.entry(p, t, Scope::Write)?;
        let ap = self.autopilot_for(&entry);
        let threshold = threshold.unwrap_or(entry.policy.consolidation_threshold);
        if !(threshold > 0.0 && threshold <= 1.0) {
            return Err(ServiceError::bad_request("threshold must be above 0 and at most 1"));
        }
        if let Some(ids) = &ids {
            if ids.len() < 2 {
                return Err(ServiceError::bad_request("memory_ids must name at least 2 memories"));
            }
            if ids.len() > 1_000 {
                return Err(ServiceError::bad_request("memory_ids must name at most 1000 memories"));
            }
            for id in ids {
                crate::validate::memory_id(id)?;
            }
        }
        let params = consolidate_params(&ap, agent, ids, threshold, target_type);
        match self.core.exec(&entry, DataOp::Consolidate(params)).await? {
            DataResult::Consolidated(c) => {
                if let Some(m) = &c.memory {
                    self.core.namespace_event(
                        &entry,
                        "consolidated",
                        serde_json::json!({"memory_id": m.id, "source_memory_ids": c.source_ids}),
                    );
                }
                Ok(c)
            }
            _ => Err(unexpected()),
        }
    }

    /// The trash of the namespace (read scope; of the agent within an agent filter).
    pub async fn trash(&self, p: &Principal, t: &Target) -> ServiceResult<Vec<TrashEntry>> {
        p.require(&t.namespace, Scope::Read)?;
        let Some(entry) = self.core.namespace(&t.namespace) else { return Ok(Vec::new()) };
        match self.core.exec(&entry, DataOp::ListTrash { agent: t.agent_filter.clone(), limit: MAX_TRASH_LIST }).await?
        {
            DataResult::Trash(v) => Ok(v),
            _ => Err(unexpected()),
        }
    }

    /// Put a trashed memory back (write scope).
    pub async fn restore(&self, p: &Principal, t: &Target, id: &str) -> ServiceResult<MemoryRecord> {
        p.require(&t.namespace, Scope::Write)?;
        let not_found = || {
            ServiceError::not_found(
                "memory",
                format!("deduplicated memory {} not found", crate::validate::printable(id)),
            )
        };
        crate::validate::memory_id(id).map_err(|_| not_found())?;
        let entry = self.core.namespace(&t.namespace).ok_or_else(not_found)?;
        match self.core.exec(&entry, DataOp::RestoreTrash { id: id.to_string(), agent: t.agent_filter.clone() }).await?
        {
            DataResult::Memory(m) => {
                self.core.namespace_event(&entry, "restored", serde_json::json!({"memory_id": m.id}));
                Ok(m)
            }
            _ => Err(unexpected()),
        }
    }

    /// Apply a feedback signal (write scope): importance moves by the signal's step, within
    /// [0, 1]; the history keeps the last 100 signals. Audited as `memory_feedback`.
    pub async fn feedback(
        &self,
        p: &Principal,
        t: &Target,
        id: &str,
        signal: &str,
    ) -> ServiceResult<(MemoryRecord, f64, &'static str)> {
        let (signal, delta) = feedback_delta(signal).ok_or_else(|| {
            ServiceError::bad_request("signal must be one of upvote, downvote, flag, positive, negative")
        })?;
        let entry = self.entry(p, t, Scope::Write)?;
        crate::validate::memory_id(id)?;
        let op =
            DataOp::Feedback { id: id.to_string(), agent: t.agent_filter.clone(), signal: signal.to_string(), delta };
        match self.core.exec(&entry, op).await? {
            DataResult::Feedback { memory, old_importance } => {
                self.core.audit.event(
                    "memory_feedback",
                    Some(p),
                    serde_json::json!({"namespace": entry.name, "memory_id": memory.id, "signal": signal,
                        "old_importance": old_importance, "new_importance": memory.importance}),
                );
                self.core.namespace_event(
                    &entry,
                    "importance_updated",
                    serde_json::json!({"memory_id": memory.id, "importance": memory.importance}),
                );
                Ok((memory, old_importance, signal))
            }
            _ => Err(unexpected()),
        }
    }

    /// Feedback over an agent's memories (read scope).
    pub async fn feedback_summary(&self, p: &Principal, t: &Target, agent: &str) -> ServiceResult<FeedbackSummary> {
        p.require(&t.namespace, Scope::Read)?;
        let Some(entry) = self.core.namespace(&t.namespace) else { return Ok(FeedbackSummary::default()) };
        match self.core.exec(&entry, DataOp::FeedbackSummary { agent: agent.to_string() }).await? {
            DataResult::FeedbackSummary(s) => Ok(s),
            _ => Err(unexpected()),
        }
    }

    pub async fn feedback_history(&self, p: &Principal, t: &Target, id: &str) -> ServiceResult<Vec<FeedbackEntry>> {
        let entry = self.entry(p, t, Scope::Read)?;
        match self
            .core
            .exec(&entry, DataOp::FeedbackHistory { id: id.to_string(), agent: t.agent_filter.clone() })
            .await?
        {
            DataResult::FeedbackHistory(h) => Ok(h),
            _ => Err(unexpected()),
        }
    }

    /// Decay statistics of one namespace (read scope there), or of every namespace this node
    /// can see (global read), measured now.
    pub async fn decay_stats(&self, p: &Principal, namespace: Option<&str>) -> ServiceResult<DecayCycle> {
        let entries: Vec<NamespaceEntry> = match namespace {
            Some(ns) => {
                p.require(ns, Scope::Read)?;
                vec![self.core.namespace(ns).ok_or_else(|| ServiceError::namespace_not_found(ns))?]
            }
            None => {
                p.require_global(Scope::Read)?;
                self.core.namespaces()
            }
        };
        let cycle = self.measure_decay(&entries).await;
        if namespace.is_none() {
            let mut c = self.core.maintenance_state.decay_cycles.lock();
            c.0 += 1;
            c.1 = Some(cycle.clone());
        }
        Ok(cycle)
    }

    async fn measure_decay(&self, entries: &[NamespaceEntry]) -> DecayCycle {
        let mut cycle = DecayCycle { at: now_secs(), ..Default::default() };
        let (mut sum, mut sum_eff) = (0.0, 0.0);
        for entry in entries {
            let decay = self.decay_for(entry).unwrap_or_default();
            if let Ok(DataResult::DecayStats(s)) =
                self.core.exec(entry, DataOp::DecayStats { decay, agent: None }).await
            {
                cycle.namespaces += 1;
                cycle.memories += s.memories;
                cycle.decayed += s.decayed;
                sum += s.avg_importance * s.memories as f64;
                sum_eff += s.avg_effective_importance * s.memories as f64;
            }
        }
        if cycle.memories > 0 {
            cycle.avg_importance = sum / cycle.memories as f64;
            cycle.avg_effective_importance = sum_eff / cycle.memories as f64;
        }
        cycle
    }

    /// Decay cycles measured on this node, and the last.
    pub fn decay_cycles(&self) -> (u64, Option<DecayCycle>) {
        self.core.maintenance_state.decay_cycles.lock().clone()
    }

    /// The last autopilot pass of this node and how many it ran.
    pub fn last_run(&self) -> (u64, Option<AutopilotRun>) {
        (*self.core.maintenance_state.runs.lock(), self.core.maintenance_state.last_run.lock().clone())
    }

    /// Run the autopilot now over this node's primaries (global admin): `dedup`, `consolidate`
    /// or `all`, whatever the intervals say, in the configured dedup mode.
    pub async fn trigger(&self, p: &Principal, action: &str) -> ServiceResult<AutopilotRun> {
        p.require_global(Scope::Admin)?;
        let (dedup, consolidate) = match action {
            "dedup" | "deduplicate" => (true, false),
            "consolidate" | "consolidation" => (false, true),
            "all" => (true, true),
            _ => return Err(ServiceError::bad_request("action must be dedup, consolidate or all")),
        };
        let run = self.pass(&format!("manual:{action}"), Some((dedup, consolidate))).await;
        self.core.audit.event("autopilot_triggered", Some(p), serde_json::json!({"action": action}));
        Ok(run)
    }

    /// One scheduled pass (the node's maintenance loop calls it every minute): namespaces
    /// whose autopilot is enabled and whose interval has passed; trash past its retention is
    /// purged everywhere. `None` when nothing was due.
    pub async fn tick(&self) -> Option<AutopilotRun> {
        let run = self.pass("schedule", None).await;
        (run.namespaces > 0 || run.trash_purged > 0).then_some(run)
    }

    async fn pass(&self, trigger: &str, forced: Option<(bool, bool)>) -> AutopilotRun {
        let state = &self.core.maintenance_state;
        let _one = state.running.lock().await;
        let mut run = AutopilotRun { started_at: now_secs(), trigger: trigger.to_string(), ..Default::default() };
        let now = Instant::now();
        for entry in self.core.namespaces() {
            if entry.placement.primary() != Some(self.core.config.node_id) {
                continue;
            }
            let ap = self.autopilot_for(&entry);
            let (last_dedup, last_consolidation) =
                state.done.lock().get(&entry.id).copied().unwrap_or((self.core.started_at, self.core.started_at));
            let (dedup, consolidate) = match forced {
                Some(f) => f,
                None if !ap.enabled => (false, false),
                None => (
                    ap.dedup_mode != DedupMode::Off
                        && now.duration_since(last_dedup) >= Duration::from_secs(hours(ap.dedup_interval_hours)),
                    ap.consolidation_interval_hours > 0
                        && now.duration_since(last_consolidation)
                            >= Duration::from_secs(hours(ap.consolidation_interval_hours)),
                ),
            };
            let began = Instant::now();
            if let Ok(DataResult::Deleted(n)) =
                self.core.exec(&entry, DataOp::PurgeTrash { now: now_secs(), limit: PURGE_BATCH }).await
            {
                run.trash_purged += n;
            }
            if !dedup && !consolidate {
                continue;
            }
            run.namespaces += 1;
            if dedup {
                self.run_dedup(&entry, &ap, &mut run).await;
            }
            if consolidate {
                self.run_consolidation(&entry, &ap, &mut run).await;
            }
            {
                let mut done = state.done.lock();
                let d = done.entry(entry.id).or_insert((last_dedup, last_consolidation));
                if dedup {
                    d.0 = Instant::now();
                }
                if consolidate {
                    d.1 = Instant::now();
                }
            }
            // Stay within a fifth of a core: rest four times as long as this namespace took.
            let busy = began.elapsed();
            run.busy_secs += busy.as_secs_f64();
            let rest = (busy * 4).min(Duration::from_secs(30));
            run.rested_secs += rest.as_secs_f64();
            tokio::time::sleep(rest).await;
        }
        run.finished_at = now_secs();
        record_metrics(&run);
        if run.namespaces > 0 || forced.is_some() {
            *state.last_run.lock() = Some(run.clone());
            *state.runs.lock() += 1;
        }
        run
    }

    async fn run_dedup(&self, entry: &NamespaceEntry, ap: &AutopilotConfig, run: &mut AutopilotRun) {
        let params = dedup_params(ap, ap.dedup_threshold, None, None, ap.dedup_mode != DedupMode::Merge);
        match self.core.exec(entry, DataOp::Deduplicate(params)).await {
            Ok(DataResult::Deduplicated(r)) => {
                run.scanned += r.scanned;
                run.duplicate_groups += r.groups.len() as u64;
                run.duplicates_found += r.groups.iter().map(|g| g.duplicate_ids.len() as u64).sum::<u64>();
                run.duplicates_moved += r.moved;
            }
            Ok(_) => {}
            Err(e) => run.errors.push(format!("{}: deduplication: {}", entry.name, e.message)),
        }
    }

    async fn run_consolidation(&self, entry: &NamespaceEntry, ap: &AutopilotConfig, run: &mut AutopilotRun) {
        // Each agent's largest group of alike memories.
        let agents = match self.core.exec(entry, DataOp::ListAgents).await {
            Ok(DataResult::Agents(a)) => a,
            _ => return,
        };
        for a in agents.into_iter().take(100) {
            let params = consolidate_params(ap, &a.agent_id, None, ap.consolidation_threshold, None);
            match self.core.exec(entry, DataOp::Consolidate(params)).await {
                Ok(DataResult::Consolidated(c)) if c.memory.is_some() => {
                    run.consolidations += 1;
                    run.memories_consolidated += c.source_ids.len() as u64;
                }
                Ok(_) => {}
                Err(e) => run.errors.push(format!("{}: consolidation: {}", entry.name, e.message)),
            }
        }
    }
}
