//! The history checker: from what the clients saw ([`History`]), what the cluster promised and
//! broke. IO-free, so a doctored history can show that each check fails when it should.
//!
//! The promises:
//! 1. no acknowledged write is lost: after healing, every node returns it, with its content;
//! 2. nothing is read that no client wrote: every memory returned was written by a client (an
//!    acknowledged or uncertain write, never a refused one), with that content, and that write
//!    had started before the read ended;
//! 3. no tenant receives another tenant's memory, and a tenant's key on another tenant's
//!    namespace is refused;
//! 4. a key whose revocation was acknowledged is refused by every node afterwards;
//! 5. after healing the nodes agree: the same rows through every node, and the cluster reports
//!    no unhealthy replica;
//! 6. rate limits hold within [`RateWindow::bound`], Redis up or down.

use std::collections::BTreeMap;
use std::fmt;

use crate::history::{Event, History, Ms, Op, Seen, tenant_of, writer_of};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    LostWrite { tenant: usize, id: String, node: usize },
    Phantom { tenant: usize, id: String, node: usize, why: String },
    CrossTenant { tenant: usize, victim: usize, node: usize, id: Option<String> },
    RevokedKeyAccepted { key_id: String, node: usize, at: Ms, acked_at: Ms },
    Diverged { tenant: usize, detail: String },
    Unsettled(String),
    RateLimitExceeded { backend: &'static str, allowed: u64, bound: u64 },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::LostWrite { tenant, id, node } => {
                write!(f, "lost write: tenant {tenant}'s acknowledged {id} is missing or changed through node {node}")
            }
            Violation::Phantom { tenant, id, node, why } => {
                write!(f, "phantom read: node {node} returned {id} to tenant {tenant}: {why}")
            }
            Violation::CrossTenant { tenant, victim, node, id } => match id {
                Some(id) => {
                    write!(f, "cross-tenant read: tenant {tenant} received tenant {victim}'s {id} from node {node}")
                }
                None => write!(
                    f,
                    "cross-tenant access: node {node} accepted tenant {tenant}'s key on tenant {victim}'s namespace"
                ),
            },
            Violation::RevokedKeyAccepted { key_id, node, at, acked_at } => write!(
                f,
                "revoked key accepted: node {node} served {key_id} at {at} ms, {} ms after its revocation was acknowledged",
                at.saturating_sub(*acked_at)
            ),
            Violation::Diverged { tenant, detail } => write!(f, "nodes disagree on tenant {tenant}: {detail}"),
            Violation::Unsettled(s) => write!(f, "the cluster did not settle after healing: {s}"),
            Violation::RateLimitExceeded { backend, allowed, bound } => {
                write!(f, "rate limit ({backend}): {allowed} requests allowed, at most {bound} permitted")
            }
        }
    }
}

/// Counts for the results table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub operations: u64,
    pub acknowledged: u64,
    pub refused: u64,
    pub uncertain: u64,
}

/// A request's outcome: acknowledged (2xx), refused (an answer that says nothing was done: 4xx,
/// or a 5xx to a read), uncertain (no answer, or a 5xx to a write, which may have been applied).
pub fn tally(events: &[Event]) -> Tally {
    let mut t = Tally::default();
    for e in events {
        t.operations += 1;
        match (e.status, &e.op) {
            (Some(s), _) if (200..300).contains(&s) => t.acknowledged += 1,
            (None, _) => t.uncertain += 1,
            (Some(s), Op::Write { .. }) if s >= 500 => t.uncertain += 1,
            _ => t.refused += 1,
        }
    }
    t
}

pub fn check(h: &History) -> Vec<Violation> {
    let mut out = Vec::new();
    // Every write a client made, by id: (content, start, status).
    let mut writes: BTreeMap<&str, (&str, Ms, Option<u16>, usize)> = BTreeMap::new();
    for e in &h.events {
        if let Op::Write { id, content } = &e.op {
            writes.insert(id, (content, e.start, e.status, e.tenant));
        }
    }
    let judge = |tenant: usize, node: usize, seen: &Seen, read_end: Option<Ms>| -> Option<Violation> {
        let by_id = tenant_of(&seen.id).filter(|o| *o != tenant);
        let by_content = writer_of(&seen.content).filter(|o| *o != tenant);
        if let Some(victim) = by_id.or(by_content) {
            return Some(Violation::CrossTenant { tenant, victim, node, id: Some(seen.id.clone()) });
        }
        let phantom = |why: String| Some(Violation::Phantom { tenant, id: seen.id.clone(), node, why });
        match writes.get(seen.id.as_str()) {
            None => phantom("no client wrote this id".into()),
            Some((content, ..)) if *content != seen.content => {
                phantom(format!("content {:?} was never written", seen.content))
            }
            Some((_, _, Some(s), _)) if (400..500).contains(s) => phantom(format!("its write was refused with {s}")),
            Some((_, start, ..)) if read_end.is_some_and(|end| *start > end) => {
                phantom(format!("its write started at {start} ms, after the read ended"))
            }
            Some(_) => None,
        }
    };
    for e in &h.events {
        match &e.op {
            Op::Read { seen, .. } if e.ok() => {
                out.extend(seen.iter().filter_map(|s| judge(e.tenant, e.node, s, Some(e.end))));
            }
            Op::CrossRead { victim, seen } if e.ok() => {
                let id = seen.first().map(|s| s.id.clone());
                out.push(Violation::CrossTenant { tenant: e.tenant, victim: *victim, node: e.node, id });
            }
            Op::RevokedUse { key_id } if e.ok() => {
                if let Some(r) = h.revocations.iter().find(|r| &r.key_id == key_id && r.acked_at < e.start) {
                    out.push(Violation::RevokedKeyAccepted {
                        key_id: key_id.clone(),
                        node: e.node,
                        at: e.start,
                        acked_at: r.acked_at,
                    });
                }
            }
            _ => {}
        }
    }
    // After healing: every acknowledged write through every node, nothing unwritten, agreement.
    for tenant in 0..h.tenants {
        let reads: Vec<_> = h.final_reads.iter().filter(|r| r.tenant == tenant).collect();
        for r in &reads {
            let Some(rows) = &r.rows else {
                out.push(Violation::Diverged {
                    tenant,
                    detail: format!("node {} did not answer the final read", r.node),
                });
                continue;
            };
            for (id, (content, _, status, owner)) in &writes {
                if *owner == tenant
                    && status.is_some_and(|s| (200..300).contains(&s))
                    && rows.get(*id).map(String::as_str) != Some(*content)
                {
                    out.push(Violation::LostWrite { tenant, id: id.to_string(), node: r.node });
                }
            }
            for (id, content) in rows {
                let seen = Seen { id: id.clone(), content: content.clone() };
                out.extend(judge(tenant, r.node, &seen, None));
            }
        }
        let answered: Vec<_> = reads.iter().filter_map(|r| r.rows.as_ref().map(|rows| (r.node, rows))).collect();
        if let Some((first_node, first)) = answered.first() {
            for (node, rows) in &answered[1..] {
                if rows != first {
                    let only_a = first.keys().filter(|k| !rows.contains_key(*k)).count();
                    let only_b = rows.keys().filter(|k| !first.contains_key(*k)).count();
                    out.push(Violation::Diverged {
                        tenant,
                        detail: format!(
                            "node {first_node} has {} rows, node {node} {} ({only_a} only on {first_node}, {only_b} only on {node})",
                            first.len(),
                            rows.len()
                        ),
                    });
                }
            }
        }
    }
    if let Some(s) = &h.unsettled {
        out.push(Violation::Unsettled(s.clone()));
    }
    for w in &h.rate_windows {
        if w.allowed > w.bound() {
            out.push(Violation::RateLimitExceeded { backend: w.backend, allowed: w.allowed, bound: w.bound() });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{FinalRead, RateWindow, Revocation, write_of};

    fn ev(tenant: usize, node: usize, start: Ms, end: Ms, status: Option<u16>, op: Op) -> Event {
        Event { tenant, node, start, end, status, op, error: None }
    }

    fn seen(tenant: usize, k: u64) -> Seen {
        let (id, content) = write_of(tenant, k, k);
        Seen { id, content }
    }

    fn write(tenant: usize, k: u64, start: Ms, status: Option<u16>) -> Event {
        let (id, content) = write_of(tenant, k, k);
        ev(tenant, 0, start, start + 5, status, Op::Write { id, content })
    }

    /// Two tenants, three nodes: acknowledged, uncertain and refused writes, reads, a refused
    /// cross-tenant attempt, a revoked key refused afterwards, final reads that agree, and a
    /// rate window within its bound.
    fn clean() -> History {
        let mut h = History { tenants: 2, nodes: 3, ..History::default() };
        h.events = vec![
            write(0, 0, 0, Some(200)),
            write(0, 1, 10, None),      // uncertain, later found applied
            write(0, 2, 20, Some(503)), // uncertain, never applied
            write(0, 3, 30, Some(429)), // refused
            write(1, 0, 0, Some(200)),
            ev(0, 1, 40, 50, Some(200), Op::Read { what: "list", seen: vec![seen(0, 0), seen(0, 1)] }),
            ev(1, 2, 40, 50, Some(200), Op::Read { what: "recall", seen: vec![seen(1, 0)] }),
            ev(0, 2, 60, 70, Some(403), Op::CrossRead { victim: 1, seen: vec![] }),
            ev(1, 0, 80, 90, Some(200), Op::RevokedUse { key_id: "k1".into() }), // before the ack
            ev(1, 1, 120, 130, Some(401), Op::RevokedUse { key_id: "k1".into() }),
        ];
        h.revocations = vec![Revocation { key_id: "k1".into(), tenant: 1, acked_at: 100 }];
        for node in 0..3 {
            let rows0 = [seen(0, 0), seen(0, 1)].into_iter().map(|s| (s.id, s.content)).collect();
            let rows1 = [seen(1, 0)].into_iter().map(|s| (s.id, s.content)).collect();
            h.final_reads.push(FinalRead { tenant: 0, node, rows: Some(rows0) });
            h.final_reads.push(FinalRead { tenant: 1, node, rows: Some(rows1) });
        }
        h.rate_windows = vec![RateWindow {
            backend: "local",
            start: 0,
            end: 10_000,
            rate_rps: 20.0,
            burst: 10,
            nodes: 3,
            allowed: 230,
            limited: 400,
            other: 0,
        }];
        h
    }

    #[test]
    fn a_clean_history_passes_and_is_tallied() {
        let h = clean();
        assert_eq!(check(&h), vec![]);
        let t = tally(&h.events);
        assert_eq!(t, Tally { operations: 10, acknowledged: 5, refused: 3, uncertain: 2 });
        // 10 + 3 + 20 × 11 s
        assert_eq!(h.rate_windows[0].bound(), 233);
    }

    #[test]
    fn a_lost_acknowledged_write_is_detected() {
        let mut h = clean();
        if let Some(rows) =
            h.final_reads.iter_mut().find(|r| r.tenant == 0 && r.node == 2).and_then(|r| r.rows.as_mut())
        {
            rows.remove("t0-0");
        }
        let v = check(&h);
        assert!(v.contains(&Violation::LostWrite { tenant: 0, id: "t0-0".into(), node: 2 }), "{v:?}");
        assert!(v.iter().any(|x| matches!(x, Violation::Diverged { tenant: 0, .. })), "{v:?}");
        // A changed content is as lost as a missing row.
        let mut h = clean();
        if let Some(rows) =
            h.final_reads.iter_mut().find(|r| r.tenant == 1 && r.node == 0).and_then(|r| r.rows.as_mut())
        {
            rows.insert("t1-0".into(), "tenant 1 memory 0 token changed".into());
        }
        assert!(check(&h).iter().any(|x| matches!(x, Violation::LostWrite { tenant: 1, node: 0, .. })));
    }

    #[test]
    fn a_phantom_read_is_detected() {
        // An id no client wrote.
        let mut h = clean();
        h.events.push(ev(0, 1, 200, 210, Some(200), Op::Read { what: "get", seen: vec![seen(0, 99)] }));
        assert!(matches!(check(&h).as_slice(), [Violation::Phantom { tenant: 0, node: 1, .. }]), "{:?}", check(&h));
        // A refused write that shows up anyway.
        let mut h = clean();
        h.events.push(ev(0, 1, 200, 210, Some(200), Op::Read { what: "list", seen: vec![seen(0, 3)] }));
        let v = check(&h);
        assert!(matches!(&v[..], [Violation::Phantom { why, .. }] if why.contains("refused")), "{v:?}");
        // Content that was never written under that id.
        let mut h = clean();
        let mut s = seen(0, 0);
        s.content.push('!');
        h.events.push(ev(0, 1, 200, 210, Some(200), Op::Read { what: "list", seen: vec![s] }));
        assert_eq!(check(&h).len(), 1);
        // A read that returned a write before the write was made.
        let mut h = clean();
        h.events.push(ev(0, 1, 1, 2, Some(200), Op::Read { what: "list", seen: vec![seen(0, 2)] }));
        let v = check(&h);
        assert!(matches!(&v[..], [Violation::Phantom { why, .. }] if why.contains("after the read")), "{v:?}");
        // In the final reads too.
        let mut h = clean();
        if let Some(rows) =
            h.final_reads.iter_mut().find(|r| r.tenant == 0 && r.node == 0).and_then(|r| r.rows.as_mut())
        {
            rows.insert("t0-77".into(), "tenant 0 memory 77 token 0".into());
        }
        assert!(check(&h).iter().any(|x| matches!(x, Violation::Phantom { node: 0, .. })));
    }

    #[test]
    fn a_cross_tenant_read_is_detected() {
        // Tenant 1's memory in tenant 0's recall.
        let mut h = clean();
        h.events.push(ev(0, 2, 200, 210, Some(200), Op::Read { what: "recall", seen: vec![seen(1, 0)] }));
        assert_eq!(check(&h), vec![Violation::CrossTenant { tenant: 0, victim: 1, node: 2, id: Some("t1-0".into()) }]);
        // Tenant 0's key accepted on tenant 1's namespace, even with nothing returned.
        let mut h = clean();
        h.events.push(ev(0, 1, 200, 210, Some(200), Op::CrossRead { victim: 1, seen: vec![] }));
        assert_eq!(check(&h), vec![Violation::CrossTenant { tenant: 0, victim: 1, node: 1, id: None }]);
        // Another tenant's content under an id that looks like one's own.
        let mut h = clean();
        let s = Seen { id: "t0-0".into(), content: write_of(1, 0, 0).1 };
        h.events.push(ev(0, 1, 200, 210, Some(200), Op::Read { what: "get", seen: vec![s] }));
        assert_eq!(check(&h), vec![Violation::CrossTenant { tenant: 0, victim: 1, node: 1, id: Some("t0-0".into()) }]);
    }

    #[test]
    fn a_revoked_key_accepted_after_the_ack_is_detected() {
        let mut h = clean();
        h.events.push(ev(1, 2, 150, 160, Some(200), Op::RevokedUse { key_id: "k1".into() }));
        assert_eq!(
            check(&h),
            vec![Violation::RevokedKeyAccepted { key_id: "k1".into(), node: 2, at: 150, acked_at: 100 }]
        );
    }

    #[test]
    fn disagreement_an_unanswered_final_read_and_an_unsettled_cluster_are_detected() {
        let mut h = clean();
        if let Some(r) = h.final_reads.iter_mut().find(|r| r.tenant == 1 && r.node == 1) {
            r.rows = None;
        }
        h.unsettled = Some("1 unhealthy replica".into());
        let v = check(&h);
        assert_eq!(v.len(), 2, "{v:?}");
        assert!(matches!(&v[0], Violation::Diverged { tenant: 1, detail } if detail.contains("did not answer")));
        assert_eq!(v[1], Violation::Unsettled("1 unhealthy replica".into()));
    }

    #[test]
    fn a_rate_limit_beyond_its_bound_is_detected() {
        let mut h = clean();
        h.rate_windows[0].allowed = 234;
        assert_eq!(check(&h), vec![Violation::RateLimitExceeded { backend: "local", allowed: 234, bound: 233 }]);
    }
}
