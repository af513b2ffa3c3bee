//! Unit tests of every handler: events in, the emitted commands asserted.

use super::*;
use crate::placement::ReplicaState::{self, Active, Dead, Syncing};

fn placement(epoch: Epoch, nodes: &[(NodeId, ReplicaState)], primary_since: Epoch) -> Placement {
    Placement {
        epoch,
        replicas: nodes.iter().map(|(n, _)| *n).collect(),
        states: nodes.iter().copied().collect(),
        rf: 3,
        leaving: Default::default(),
        primary_since,
    }
}

fn three() -> Placement {
    placement(1, &[(1, Active), (2, Active), (3, Active)], 1)
}

fn replica_with(me: NodeId, p: Placement, faults: Faults) -> (Replica, Vec<Command>) {
    let mut cfg = Config::new(me);
    cfg.faults = faults;
    let mut r = Replica::new(cfg);
    let out = r.handle(Event::Placement(p));
    (r, out)
}

fn replica(me: NodeId, p: Placement) -> (Replica, Vec<Command>) {
    replica_with(me, p, Faults::default())
}

/// The messages among `cmds`, with their targets.
fn sends(cmds: &[Command]) -> Vec<(NodeId, Message)> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::Send { to, msg } => Some((*to, msg.clone())),
            _ => None,
        })
        .collect()
}

fn rid_of(m: &Message) -> u64 {
    match m {
        Message::Replicate { rid, .. }
        | Message::ReplicateReply { rid, .. }
        | Message::Progress { rid }
        | Message::ProgressReply { rid, .. }
        | Message::Fence { rid, .. }
        | Message::FenceReply { rid, .. }
        | Message::FetchLog { rid, .. }
        | Message::FetchLogReply { rid, .. }
        | Message::PushCopy { rid }
        | Message::PushCopyReply { rid, .. } => *rid,
    }
}

/// The rid of the message `cmds` send to `to`.
fn rid_to(cmds: &[Command], to: NodeId) -> u64 {
    sends(cmds).iter().find(|(n, _)| *n == to).map(|(_, m)| rid_of(m)).expect("a message to that node")
}

fn recv(r: &mut Replica, from: NodeId, msg: Message) -> Vec<Command> {
    r.handle(Event::Received { from, msg })
}

/// Node 1, primary of [1, 2, 3] at epoch 1, taken over with both followers at `progress`.
fn taken_over(p: Placement) -> Replica {
    let (mut r, out) = replica(1, p.clone());
    for (to, m) in sends(&out) {
        recv(&mut r, to, Message::FenceReply { rid: rid_of(&m), result: Ok(LogId::default()) });
    }
    assert!(r.is_serving(), "took over");
    r
}

/// Handshake a follower at `at` and return the commands of the reply.
fn handshake(r: &mut Replica, cmds: &[Command], follower: NodeId, at: LogId) -> Vec<Command> {
    let rid = rid_to(cmds, follower);
    recv(r, follower, Message::ProgressReply { rid, progress: at })
}

fn lid(epoch: Epoch, seq: Seq) -> LogId {
    LogId::new(epoch, seq)
}

// --- primary write path ---

#[test]
fn a_write_to_a_non_primary_is_refused_not_owner() {
    let (mut r, _) = replica(2, three());
    let out = r.handle(Event::ClientWrite { req: 7 });
    assert_eq!(out, vec![Command::RefuseWrite { req: 7, error: ReplError::NotOwner { epoch: 1, primary: Some(1) } }]);
    assert!(!ReplError::NotOwner { epoch: 1, primary: Some(1) }.may_have_applied());
}

#[test]
fn a_write_without_a_placement_is_unavailable() {
    let mut r = Replica::new(Config::new(1));
    let out = r.handle(Event::ClientWrite { req: 1 });
    assert!(matches!(&out[..], [Command::RefuseWrite { error: ReplError::Unavailable { .. }, .. }]));
}

#[test]
fn a_single_replica_takes_over_at_once_and_acknowledges_on_commit() {
    let (mut r, out) = replica(1, placement(1, &[(1, Active)], 1));
    assert!(out.is_empty() && r.is_serving());
    let out = r.handle(Event::ClientWrite { req: 9 });
    assert_eq!(out, vec![Command::Append { req: 9, id: lid(1, 1) }, Command::AckWrite { req: 9, id: lid(1, 1) }]);
}

#[test]
fn a_write_is_acknowledged_once_the_quorum_holds_it() {
    let mut r = taken_over(three());
    let out = r.handle(Event::ClientWrite { req: 5 });
    assert_eq!(out[0], Command::Append { req: 5, id: lid(1, 1) });
    // Both followers get a handshake first; nothing is acknowledged yet.
    assert_eq!(sends(&out).len(), 2);
    assert!(!out.iter().any(|c| matches!(c, Command::AckWrite { .. })));
    let out2 = handshake(&mut r, &out, 2, LogId::default());
    let (to, msg) = sends(&out2).remove(0);
    assert_eq!(to, 2);
    let Message::Replicate { rid, sender_epoch, prev, entries, .. } = msg else { panic!("{msg:?}") };
    assert_eq!((sender_epoch, prev, entries), (1, None, vec![lid(1, 1)]));
    let out3 = recv(&mut r, 2, Message::ReplicateReply { rid, result: Ok(ApplyOutcome::Applied { seq: 1 }) });
    assert_eq!(out3, vec![Command::AckWrite { req: 5, id: lid(1, 1) }]);
    assert_eq!(r.link(2), Some(&LinkState::Ready { acked: 1 }));
    assert_eq!(r.pending_writes(), 0);
}

#[test]
fn a_write_that_misses_its_quorum_in_time_is_not_acknowledged() {
    let mut r = taken_over(three());
    r.handle(Event::ClientWrite { req: 5 });
    let out = r.handle(Event::Tick { now: 10_000 });
    assert!(out.contains(&Command::RefuseWrite { req: 5, error: ReplError::QuorumNotReached { got: 1, needed: 2 } }));
    assert!(ReplError::QuorumNotReached { got: 1, needed: 2 }.may_have_applied());
}

#[test]
fn a_write_is_refused_early_when_every_voter_failed() {
    let mut r = taken_over(three());
    let out = r.handle(Event::ClientWrite { req: 5 });
    for f in [2, 3] {
        let out2 = handshake(&mut r, &out, f, LogId::default());
        let rid = rid_to(&out2, f);
        let err = Err(ReplError::Unavailable { reason: "io".into() });
        let last = recv(&mut r, f, Message::ReplicateReply { rid, result: err });
        if f == 3 {
            assert_eq!(
                last,
                vec![Command::RefuseWrite { req: 5, error: ReplError::QuorumNotReached { got: 1, needed: 2 } }]
            );
        } else {
            assert!(last.is_empty(), "one voter left: {last:?}");
        }
    }
}

#[test]
fn too_few_in_sync_replicas_refuse_the_write_before_applying_it() {
    let p = placement(2, &[(1, Active), (2, Dead), (3, Dead)], 1);
    let mut r = taken_over(three());
    r.handle(Event::Placement(p));
    let out = r.handle(Event::ClientWrite { req: 4 });
    assert_eq!(out, vec![Command::RefuseWrite { req: 4, error: ReplError::NotInSync { in_sync: 1, needed: 2 } }]);
}

#[test]
fn a_fenced_primary_refuses_its_own_writes() {
    let mut r = taken_over(three());
    let out = recv(&mut r, 2, Message::Fence { rid: 1, epoch: 5 });
    assert_eq!(out[0], Command::PersistFence { epoch: 5 });
    let out = r.handle(Event::ClientWrite { req: 3 });
    assert_eq!(out, vec![Command::RefuseWrite { req: 3, error: ReplError::NotOwner { epoch: 5, primary: None } }]);
}

#[test]
fn a_syncing_replica_receives_writes_but_does_not_count() {
    let p = placement(1, &[(1, Active), (2, Active), (3, Syncing)], 1);
    let mut r = taken_over(p);
    let out = r.handle(Event::ClientWrite { req: 1 });
    // n = 2 (the syncing one does not count), q = 2: node 2 must acknowledge.
    let targets: Vec<NodeId> = sends(&out).iter().map(|(n, _)| *n).collect();
    assert!(targets.contains(&3));
    let out3 = handshake(&mut r, &out, 3, LogId::default());
    let rid = rid_to(&out3, 3);
    let acked = recv(&mut r, 3, Message::ReplicateReply { rid, result: Ok(ApplyOutcome::Applied { seq: 1 }) });
    assert!(!acked.iter().any(|c| matches!(c, Command::AckWrite { .. })));
}

#[test]
fn the_ack_before_quorum_fault_acknowledges_on_commit() {
    let (mut r, out) = replica_with(1, three(), Faults { ack_before_quorum: true, ..Faults::default() });
    for (to, m) in sends(&out) {
        recv(&mut r, to, Message::FenceReply { rid: rid_of(&m), result: Ok(LogId::default()) });
    }
    let out = r.handle(Event::ClientWrite { req: 2 });
    assert_eq!(out[1], Command::AckWrite { req: 2, id: lid(1, 1) });
}

#[test]
fn stepping_down_answers_queued_and_pending_writes() {
    let mut r = taken_over(three());
    r.handle(Event::ClientWrite { req: 1 });
    let out = r.handle(Event::Placement(placement(2, &[(2, Active), (3, Active), (1, Active)], 2)));
    assert_eq!(out, vec![Command::RefuseWrite { req: 1, error: ReplError::QuorumNotReached { got: 1, needed: 2 } }]);
    assert!(!r.is_serving());
}

#[test]
fn reads_wait_for_the_take_over() {
    let (mut r, out) = replica(1, three());
    assert!(r.handle(Event::ClientRead { req: 8 }).is_empty());
    // It waits for every replica it fenced (or the fence timeout).
    let one = recv(&mut r, 2, Message::FenceReply { rid: rid_to(&out, 2), result: Ok(LogId::default()) });
    assert!(one.is_empty());
    let done = recv(&mut r, 3, Message::FenceReply { rid: rid_to(&out, 3), result: Ok(LogId::default()) });
    assert_eq!(done, vec![Command::ServeRead { req: 8 }]);
}

// --- follower apply path ---

fn follower() -> Replica {
    replica(2, three()).0
}

fn replicate(rid: u64, epoch: Epoch, prev: Option<LogId>, entries: &[LogId], floor: Seq) -> Message {
    Message::Replicate { rid, sender_epoch: epoch, prev, entries: entries.to_vec(), floor }
}

fn reply(out: &[Command]) -> Result<ApplyOutcome, ReplError> {
    match sends(out).pop() {
        Some((_, Message::ReplicateReply { result, .. })) => result,
        other => panic!("no reply: {other:?}"),
    }
}

#[test]
fn a_follower_applies_entries_in_order_then_replies() {
    let mut f = follower();
    let out = recv(&mut f, 1, replicate(4, 1, None, &[lid(1, 1), lid(1, 2)], 0));
    assert_eq!(out[0], Command::Apply { first: 1, last: 2 });
    assert_eq!(
        out[1],
        Command::Send { to: 1, msg: Message::ReplicateReply { rid: 4, result: Ok(ApplyOutcome::Applied { seq: 2 }) } }
    );
    assert_eq!(f.progress(), lid(1, 2));
}

#[test]
fn a_follower_refuses_a_sender_older_than_its_fence() {
    let mut f = follower();
    recv(&mut f, 3, Message::Fence { rid: 1, epoch: 4 });
    let out = recv(&mut f, 1, replicate(2, 1, None, &[lid(1, 1)], 0));
    assert_eq!(out.len(), 1);
    assert_eq!(reply(&out), Ok(ApplyOutcome::Fenced { epoch: 4 }));
    assert_eq!(f.progress(), LogId::default());
    // The catalogue's epoch fences too.
    let mut g = follower();
    g.handle(Event::Placement(placement(3, &[(1, Active), (2, Active), (3, Active)], 1)));
    assert_eq!(reply(&recv(&mut g, 1, replicate(1, 2, None, &[lid(2, 1)], 0))), Ok(ApplyOutcome::Fenced { epoch: 3 }));
}

#[test]
fn duplicates_gaps_and_divergence_are_told_apart() {
    let mut f = follower();
    recv(&mut f, 1, replicate(1, 1, None, &[lid(1, 1), lid(1, 2)], 0));
    assert_eq!(
        reply(&recv(&mut f, 1, replicate(2, 1, None, &[lid(1, 2)], 0))),
        Ok(ApplyOutcome::Duplicate { applied: 2 })
    );
    assert_eq!(reply(&recv(&mut f, 1, replicate(3, 1, None, &[lid(1, 5)], 0))), Ok(ApplyOutcome::Gap { applied: 2 }));
    // A new primary's entry 2 has epoch 2: this replica's entry 2 came from a deposed one.
    assert_eq!(
        reply(&recv(&mut f, 1, replicate(4, 2, None, &[lid(2, 2), lid(2, 3)], 0))),
        Ok(ApplyOutcome::Diverged { applied: 2 })
    );
    // So does a `prev` that disagrees.
    let out = recv(&mut f, 1, replicate(5, 2, Some(lid(2, 2)), &[lid(2, 3)], 0));
    assert_eq!(reply(&out), Ok(ApplyOutcome::Diverged { applied: 2 }));
    assert!(!out.iter().any(|c| matches!(c, Command::Apply { .. })));
}

#[test]
fn a_follower_truncates_to_the_floor_it_is_sent() {
    let mut f = follower();
    let ids: Vec<LogId> = (1..=4).map(|s| lid(1, s)).collect();
    let out = recv(&mut f, 1, replicate(1, 1, None, &ids, 3));
    assert_eq!(out[1], Command::TruncateLog { below: 3 });
    assert_eq!((f.log().floor(), f.log().epoch_at(2)), (3, None));
    // Never its last entry.
    let out = recv(&mut f, 1, replicate(2, 1, None, &[], 100));
    assert_eq!(out[0], Command::TruncateLog { below: 4 });
}

#[test]
fn a_fence_is_persisted_before_the_progress_is_reported() {
    let mut f = follower();
    recv(&mut f, 1, replicate(1, 1, None, &[lid(1, 1)], 0));
    let out = recv(&mut f, 3, Message::Fence { rid: 9, epoch: 2 });
    assert_eq!(
        out,
        vec![
            Command::PersistFence { epoch: 2 },
            Command::Send { to: 3, msg: Message::FenceReply { rid: 9, result: Ok(lid(1, 1)) } },
        ]
    );
}

#[test]
fn a_node_without_a_replica_refuses_entries_and_fences() {
    let (mut r, _) = replica(4, three());
    assert_eq!(reply(&recv(&mut r, 1, replicate(1, 1, None, &[lid(1, 1)], 0))), Err(ReplError::NamespaceNotFound));
    let out = recv(&mut r, 1, Message::Fence { rid: 2, epoch: 2 });
    assert_eq!(sends(&out)[0].1, Message::FenceReply { rid: 2, result: Err(ReplError::NamespaceNotFound) });
}

#[test]
fn copies_from_senders_older_than_the_fence_are_refused_and_the_fence_survives_a_copy() {
    let mut f = follower();
    recv(&mut f, 3, Message::Fence { rid: 1, epoch: 5 });
    let out = f.handle(Event::CopyBegin { from: 1, sender_epoch: 4 });
    assert_eq!(out, vec![Command::RefuseCopy { from: 1, error: ReplError::Fenced { epoch: 5 } }]);
    let out = f.handle(Event::CopyBegin { from: 3, sender_epoch: 6 });
    assert_eq!(out, vec![Command::AcceptCopy { from: 3 }, Command::PersistFence { epoch: 6 }]);
    f.handle(Event::CopyInstalled { log: crate::log::LogIds::from_last(lid(2, 7)) });
    assert_eq!((f.progress(), f.fence()), (lid(2, 7), 6));
    // The node today: any sender, and the fence goes with the wiped rows.
    let (mut legacy, _) = replica_with(2, three(), Faults { legacy_copy: true, ..Faults::default() });
    recv(&mut legacy, 3, Message::Fence { rid: 1, epoch: 5 });
    assert_eq!(legacy.handle(Event::CopyBegin { from: 1, sender_epoch: 1 }), vec![Command::AcceptCopy { from: 1 }]);
    assert_eq!((legacy.progress(), legacy.fence()), (LogId::default(), 0));
}

#[test]
fn progress_and_log_reads_are_answered_from_the_local_log() {
    let mut f = follower();
    recv(&mut f, 1, replicate(1, 1, None, &[lid(1, 1), lid(1, 2), lid(1, 3)], 0));
    let out = recv(&mut f, 3, Message::Progress { rid: 4 });
    assert_eq!(sends(&out)[0].1, Message::ProgressReply { rid: 4, progress: lid(1, 3) });
    let out = recv(&mut f, 3, Message::FetchLog { rid: 5, from: 2, limit: 10 });
    assert_eq!(sends(&out)[0].1, Message::FetchLogReply { rid: 5, entries: vec![lid(1, 2), lid(1, 3)] });
}

// --- links: handshake, sends, copies, anti-entropy ---

/// A taken-over primary holding entries 1..=n of epoch 1 (acknowledged by node 2).
fn primary_with(n: Seq) -> (Replica, Vec<Command>) {
    let mut r = taken_over(three());
    let mut first = Vec::new();
    for req in 1..=n {
        let out = r.handle(Event::ClientWrite { req });
        if req == 1 {
            first = out;
        }
    }
    (r, first)
}

#[test]
fn a_follower_ahead_or_on_another_epoch_is_repaired_by_a_copy() {
    let (mut r, out) = primary_with(3);
    let c = handshake(&mut r, &out, 2, lid(1, 5));
    assert!(c.contains(&Command::StartCopy { to: 2, sender_epoch: 1 }));
    assert_eq!(r.link(2), Some(&LinkState::Copying { acked: 0 }));
    let c = handshake(&mut r, &out, 3, lid(0, 2));
    assert!(c.contains(&Command::StartCopy { to: 3, sender_epoch: 1 }));
}

#[test]
fn a_follower_whose_last_entry_was_truncated_gets_a_copy_unless_legacy() {
    let (mut r, out) = primary_with(6);
    r.log.truncate_below(4);
    let c = handshake(&mut r, &out, 2, lid(1, 3));
    assert!(c.contains(&Command::StartCopy { to: 2, sender_epoch: 1 }), "{c:?}");
    // The node today accepts it and sends from the floor without an anchor.
    r.cfg.faults.legacy_unanchored_send = true;
    let c = handshake(&mut r, &out, 3, lid(1, 3));
    let Some((_, Message::Replicate { prev, entries, .. })) = sends(&c).pop() else { panic!("{c:?}") };
    assert_eq!((prev, entries.first().copied()), (None, Some(lid(1, 4))));
}

#[test]
fn a_follower_needing_truncated_entries_gets_a_copy() {
    let (mut r, out) = primary_with(6);
    r.log.truncate_below(5);
    let c = handshake(&mut r, &out, 2, lid(1, 2));
    assert!(c.contains(&Command::StartCopy { to: 2, sender_epoch: 1 }));
}

#[test]
fn sends_are_batched_and_anchored_and_go_on_while_behind() {
    let (mut r, out) = primary_with(300);
    let c = handshake(&mut r, &out, 2, lid(1, 10));
    let Some((_, Message::Replicate { rid, prev, entries, .. })) = sends(&c).pop() else { panic!() };
    assert_eq!((prev, entries.len(), entries[0]), (Some(lid(1, 10)), 256, lid(1, 11)));
    let c = recv(&mut r, 2, Message::ReplicateReply { rid, result: Ok(ApplyOutcome::Applied { seq: 266 }) });
    let Some((_, Message::Replicate { prev, entries, .. })) = sends(&c).pop() else { panic!("{c:?}") };
    assert_eq!((prev, entries.len()), (Some(lid(1, 266)), 34));
    // A late or duplicated reply to the first call is ignored.
    assert!(
        recv(&mut r, 2, Message::ReplicateReply { rid, result: Ok(ApplyOutcome::Applied { seq: 266 }) }).is_empty()
    );
}

#[test]
fn a_newer_fence_stalls_the_link_until_the_catalogue_shows_it() {
    let (mut r, out) = primary_with(1);
    let c = handshake(&mut r, &out, 2, LogId::default());
    let rid = rid_to(&c, 2);
    let c = recv(&mut r, 2, Message::ReplicateReply { rid, result: Ok(ApplyOutcome::Fenced { epoch: 2 }) });
    assert!(c.is_empty());
    assert!(matches!(r.link(2), Some(LinkState::Stalled { epoch: 2, .. })));
    // The catalogue shows epoch 2 and this node is still primary: send again.
    let c = r.handle(Event::Placement(placement(2, &[(1, Active), (2, Active), (3, Active)], 1)));
    assert!(matches!(sends(&c).pop(), Some((2, Message::Replicate { sender_epoch: 2, .. }))));
}

#[test]
fn a_diverged_follower_gets_a_copy_then_catches_up_and_a_syncing_one_is_promoted() {
    let p = placement(1, &[(1, Active), (2, Active), (3, Syncing)], 1);
    let mut r = taken_over(p);
    // The replication loop copies the syncing replica.
    let c = r.handle(Event::Tick { now: 1 });
    assert!(c.contains(&Command::StartCopy { to: 3, sender_epoch: 1 }), "{c:?}");
    let w1 = r.handle(Event::ClientWrite { req: 1 });
    assert!(!sends(&w1).iter().any(|(n, _)| *n == 3), "sends wait for the copy");
    let c = r.handle(Event::CopyFinished { to: 3, result: Ok(LogId::default()) });
    let rid = rid_to(&c, 3);
    let c = recv(&mut r, 3, Message::ReplicateReply { rid, result: Ok(ApplyOutcome::Applied { seq: 1 }) });
    let mut np = placement(2, &[(1, Active), (2, Active), (3, Active)], 1);
    np.primary_since = 1;
    assert!(c.contains(&Command::Propose { expected_epoch: 1, placement: np }), "{c:?}");
    // From the proposal on, writes also need node 3's acknowledgement.
    let w = r.handle(Event::ClientWrite { req: 2 });
    let c2 = handshake(&mut r, &w1, 2, LogId::default());
    let rid2 = rid_to(&c2, 2);
    let acked = recv(&mut r, 2, Message::ReplicateReply { rid: rid2, result: Ok(ApplyOutcome::Applied { seq: 2 }) });
    assert!(!acked.iter().any(|c| matches!(c, Command::AckWrite { req: 2, .. })), "{acked:?}");
    let rid3 = rid_to(&w, 3);
    let acked = recv(&mut r, 3, Message::ReplicateReply { rid: rid3, result: Ok(ApplyOutcome::Applied { seq: 2 }) });
    assert!(acked.iter().any(|c| matches!(c, Command::AckWrite { req: 2, .. })), "{acked:?}");
}

#[test]
fn a_down_follower_is_not_tried_and_anti_entropy_catches_up_a_behind_one() {
    let (mut r, out) = primary_with(2);
    let _ = out;
    r.handle(Event::Liveness { node: 3, alive: false });
    let w = r.handle(Event::ClientWrite { req: 3 });
    assert!(!sends(&w).iter().any(|(n, _)| *n == 3));
    r.handle(Event::Liveness { node: 3, alive: true });
    // Its first handshake timed out; the next pass starts another.
    let c = r.handle(Event::Tick { now: 6_000 });
    assert!(sends(&c).iter().any(|(n, m)| *n == 3 && matches!(m, Message::Progress { .. })), "{c:?}");
}

#[test]
fn a_dead_replica_alive_again_is_copied_and_made_active_unless_legacy() {
    let p = placement(2, &[(1, Active), (2, Active), (3, Dead)], 1);
    let mut r = taken_over(three());
    r.handle(Event::Placement(p.clone()));
    let c = r.handle(Event::Tick { now: 400 });
    assert!(c.contains(&Command::StartCopy { to: 3, sender_epoch: 2 }), "{c:?}");
    let c = r.handle(Event::CopyFinished { to: 3, result: Ok(LogId::default()) });
    let mut np = p.bumped();
    np.states.insert(3, Active);
    assert!(c.contains(&Command::Propose { expected_epoch: 2, placement: np }), "{c:?}");
    let mut legacy = taken_over(three());
    legacy.cfg.faults.legacy_resync = true;
    legacy.handle(Event::Placement(p));
    let c = legacy.handle(Event::Tick { now: 400 });
    assert!(!c.iter().any(|c| matches!(c, Command::StartCopy { .. })), "{c:?}");
}

#[test]
fn a_push_copy_request_starts_a_copy_and_is_answered_when_it_ends() {
    let mut f = follower();
    recv(&mut f, 1, replicate(1, 1, None, &[lid(1, 1)], 0));
    let c = recv(&mut f, 3, Message::PushCopy { rid: 7 });
    assert_eq!(c, vec![Command::StartCopy { to: 3, sender_epoch: 1 }]);
    let c = f.handle(Event::CopyFinished { to: 3, result: Ok(lid(1, 1)) });
    assert_eq!(sends(&c)[0].1, Message::PushCopyReply { rid: 7, result: Ok(lid(1, 1)) });
    // Only for a node the placement lists.
    let c = recv(&mut f, 6, Message::PushCopy { rid: 8 });
    assert_eq!(sends(&c)[0].1, Message::PushCopyReply { rid: 8, result: Err(ReplError::NamespaceNotFound) });
}

// --- take-over ---

#[test]
fn a_new_primary_fences_every_alive_replica_that_may_hold_writes() {
    let p = placement(4, &[(2, Active), (3, Syncing), (1, Dead), (4, Active)], 4);
    let (_, out) = replica(2, p);
    let fenced: Vec<(NodeId, Message)> = sends(&out);
    let targets: Vec<NodeId> = fenced.iter().map(|(n, _)| *n).collect();
    assert_eq!(targets, vec![1, 4], "dead ones too, not the syncing one");
    assert!(fenced.iter().all(|(_, m)| matches!(m, Message::Fence { epoch: 4, .. })));
}

#[test]
fn a_take_over_without_enough_answers_refuses_what_waits_on_it() {
    let p = placement(2, &[(2, Active), (1, Dead), (3, Active)], 2);
    let (mut r, _) = replica(2, p);
    r.handle(Event::ClientWrite { req: 1 });
    let out = r.handle(Event::Tick { now: 2_000 });
    assert!(
        out.contains(&Command::RefuseWrite { req: 1, error: ReplError::TakeoverIncomplete { answered: 0, needed: 1 } })
    );
    assert!(!r.is_serving());
}

#[test]
fn a_new_primary_catches_up_from_the_most_advanced_replica_first() {
    let p = placement(2, &[(2, Active), (1, Dead), (3, Active)], 2);
    let (mut r, out) = replica(2, p);
    r.handle(Event::ClientRead { req: 50 });
    let rid1 = rid_to(&out, 1);
    let rid3 = rid_to(&out, 3);
    assert!(recv(&mut r, 3, Message::FenceReply { rid: rid3, result: Ok(lid(1, 2)) }).is_empty());
    let c = recv(&mut r, 1, Message::FenceReply { rid: rid1, result: Ok(lid(1, 4)) });
    let Some((1, Message::FetchLog { rid, from: 1, limit: 256 })) = sends(&c).pop() else { panic!("{c:?}") };
    let c = recv(&mut r, 1, Message::FetchLogReply { rid, entries: (1..=4).map(|s| lid(1, s)).collect() });
    assert_eq!(c, vec![Command::Apply { first: 1, last: 4 }, Command::ServeRead { req: 50 }]);
    assert!(r.is_serving());
    assert_eq!(r.progress(), lid(1, 4));
}

#[test]
fn logs_that_disagree_fall_back_to_a_pushed_copy() {
    let p = placement(3, &[(2, Active), (1, Dead), (3, Active)], 3);
    let (mut f, _) = replica(2, three());
    recv(&mut f, 1, replicate(1, 1, None, &[lid(1, 1), lid(1, 2)], 0));
    let out = f.handle(Event::Placement(p));
    let rid1 = rid_to(&out, 1);
    recv(&mut f, 3, Message::FenceReply { rid: rid_to(&out, 3), result: Ok(lid(1, 1)) });
    let c = recv(&mut f, 1, Message::FenceReply { rid: rid1, result: Ok(lid(2, 5)) });
    let rid = rid_to(&c, 1);
    // Node 1's entry 2 has epoch 2, not 1.
    let c = recv(&mut f, 1, Message::FetchLogReply { rid, entries: vec![lid(2, 2), lid(2, 3)] });
    let Some((1, Message::PushCopy { rid })) = sends(&c).pop() else { panic!("{c:?}") };
    // A failed copy fails the take-over.
    let c = recv(&mut f, 1, Message::PushCopyReply { rid, result: Err(ReplError::NamespaceNotFound) });
    assert!(c.is_empty());
    assert!(!f.is_serving());
    // The next pass tries again; this time the copy arrives first.
    let out = f.handle(Event::Tick { now: 1_000 });
    recv(&mut f, 3, Message::FenceReply { rid: rid_to(&out, 3), result: Ok(lid(1, 1)) });
    let c = recv(&mut f, 1, Message::FenceReply { rid: rid_to(&out, 1), result: Ok(lid(2, 5)) });
    let rid = rid_to(&c, 1);
    let c = recv(&mut f, 1, Message::FetchLogReply { rid, entries: vec![] });
    let Some((1, Message::PushCopy { rid })) = sends(&c).pop() else { panic!("{c:?}") };
    f.handle(Event::CopyBegin { from: 1, sender_epoch: 3 });
    f.handle(Event::CopyInstalled { log: crate::log::LogIds::from_last(lid(2, 5)) });
    recv(&mut f, 1, Message::PushCopyReply { rid, result: Ok(lid(2, 5)) });
    assert!(f.is_serving());
}

#[test]
fn a_placement_change_that_keeps_the_primary_needs_no_new_take_over() {
    let mut r = taken_over(three());
    let out = r.handle(Event::Placement(placement(2, &[(1, Active), (2, Active), (3, Dead)], 1)));
    assert!(out.is_empty());
    assert!(r.is_serving());
}

// --- truncation ---

#[test]
fn the_primary_truncates_to_what_its_slowest_follower_acknowledged_and_tells_them() {
    let (mut r, out) = primary_with(5);
    let c = handshake(&mut r, &out, 2, LogId::default());
    let rid = rid_to(&c, 2);
    recv(&mut r, 2, Message::ReplicateReply { rid, result: Ok(ApplyOutcome::Applied { seq: 5 }) });
    let c = handshake(&mut r, &out, 3, LogId::default());
    let rid = rid_to(&c, 3);
    let c = recv(&mut r, 3, Message::ReplicateReply { rid, result: Ok(ApplyOutcome::Applied { seq: 3 }) });
    // Node 3 is still being sent 4..=5: its exchange counts as 0 this round.
    let t = r.handle(Event::Tick { now: 3_000 });
    assert!(!t.iter().any(|c| matches!(c, Command::TruncateLog { .. })), "{t:?}");
    let rid = rid_to(&c, 3);
    recv(&mut r, 3, Message::ReplicateReply { rid, result: Ok(ApplyOutcome::Applied { seq: 5 }) });
    let c = r.handle(Event::Tick { now: 6_000 });
    assert!(c.contains(&Command::TruncateLog { below: 5 }), "{c:?}");
    let floors: Vec<(NodeId, Seq)> = sends(&c)
        .into_iter()
        .filter_map(|(n, m)| match m {
            Message::Replicate { entries, floor, .. } if entries.is_empty() => Some((n, floor)),
            _ => None,
        })
        .collect();
    assert_eq!(floors, vec![(2, 5), (3, 5)]);
    assert_eq!(r.log().floor(), 5);
}

#[test]
fn a_follower_keeps_at_most_log_keep_entries() {
    let mut cfg = Config::new(2);
    cfg.log_keep = 2;
    let mut f = Replica::new(cfg);
    f.handle(Event::Placement(three()));
    recv(&mut f, 1, replicate(1, 1, None, &(1..=6).map(|s| lid(1, s)).collect::<Vec<_>>(), 0));
    let c = f.handle(Event::Tick { now: 3_000 });
    assert_eq!(c, vec![Command::TruncateLog { below: 4 }]);
}

#[test]
fn errors_say_whether_to_retry() {
    assert!(ReplError::TakeoverIncomplete { answered: 0, needed: 1 }.is_retryable());
    assert!(!ReplError::NamespaceNotFound.is_retryable());
    let e = ReplError::NotOwner { epoch: 3, primary: Some(2) };
    let json = serde_json::to_string(&e).expect("serialises");
    assert_eq!(serde_json::from_str::<ReplError>(&json).expect("parses"), e);
}

#[test]
fn a_copy_over_a_primary_fails_its_pending_writes_and_ends_its_term() {
    let mut r = taken_over(three());
    r.handle(Event::ClientWrite { req: 1 });
    // A newer primary (epoch 2, which this node's catalogue has not shown yet) copies over it.
    assert_eq!(r.handle(Event::CopyBegin { from: 2, sender_epoch: 2 })[0], Command::AcceptCopy { from: 2 });
    let out = r.handle(Event::CopyInstalled { log: crate::log::LogIds::from_last(lid(2, 1)) });
    assert_eq!(out, vec![Command::RefuseWrite { req: 1, error: ReplError::QuorumNotReached { got: 1, needed: 2 } }]);
    assert!(!r.is_serving());
    // Its fence (2) now refuses its own writes in epoch 1.
    let out = r.handle(Event::ClientWrite { req: 2 });
    assert!(!out.iter().any(|c| matches!(c, Command::Append { .. } | Command::AckWrite { .. })), "{out:?}");
}

#[test]
fn an_accepted_copy_is_aborted_once_the_replica_moves_past_it() {
    // Accepted from the epoch-1 primary, then fenced by a newer one: the copy is dropped.
    let mut f = follower();
    assert_eq!(f.handle(Event::CopyBegin { from: 1, sender_epoch: 1 })[0], Command::AcceptCopy { from: 1 });
    let out = recv(&mut f, 3, Message::Fence { rid: 1, epoch: 2 });
    assert!(out.contains(&Command::RefuseCopy { from: 1, error: ReplError::Fenced { epoch: 2 } }), "{out:?}");
    // Accepted, then entries applied from a newer primary: installing the copy would roll
    // them back.
    let mut g = follower();
    g.handle(Event::CopyBegin { from: 1, sender_epoch: 1 });
    let out = recv(&mut g, 3, replicate(1, 2, None, &[lid(2, 1)], 0));
    assert!(out.iter().any(|c| matches!(c, Command::RefuseCopy { from: 1, .. })), "{out:?}");
}

#[test]
fn a_stale_primary_neither_learns_progress_nor_takes_over() {
    // A replica fenced at 3 refuses a Fence of epoch 2.
    let mut f = follower();
    recv(&mut f, 3, Message::Fence { rid: 1, epoch: 3 });
    let out = recv(&mut f, 1, Message::Fence { rid: 2, epoch: 2 });
    assert_eq!(
        out,
        vec![Command::Send { to: 1, msg: Message::FenceReply { rid: 2, result: Err(ReplError::Fenced { epoch: 3 }) } }]
    );
    // A node whose fence is newer than the placement naming it primary does not take over.
    let (mut r, _) = replica(2, three());
    recv(&mut r, 3, Message::Fence { rid: 1, epoch: 4 });
    let out = r.handle(Event::Placement(placement(2, &[(2, Active), (1, Dead), (3, Active)], 2)));
    assert!(sends(&out).is_empty(), "{out:?}");
    let out = r.handle(Event::ClientRead { req: 1 });
    assert_eq!(out, vec![Command::RefuseRead { req: 1, error: ReplError::NotOwner { epoch: 4, primary: None } }]);
}
