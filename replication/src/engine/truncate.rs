//! Log retention (`truncate_logs` in `node/src/cluster/plane.rs`), every `truncate_every`.
//!
//! The floor is at least `applied - log_keep`. On a taken-over primary it is raised to the
//! lowest sequence its `Active` and `Syncing` followers acknowledged (0 for one with an
//! exchange in progress); `Dead` ones do not hold it back. The primary passes it on with every
//! `Replicate`, and in an empty `Replicate` to each alive follower whenever it rose since that
//! follower was last told, so idle namespaces are truncated too. Every replica deletes the
//! entries below the floor, never its last one.

use super::{Command, Message, Replica};
use crate::NodeId;

impl Replica {
    pub(super) fn truncate_pass(&mut self) {
        let applied = self.log.last().seq;
        let mut floor = applied.saturating_sub(self.cfg.log_keep);
        let serving = self.is_serving();
        if serving {
            let me = self.cfg.me;
            let followers: Vec<NodeId> =
                self.placement.iter().flat_map(|p| p.writable().filter(|n| *n != me).collect::<Vec<_>>()).collect();
            let min_acked = followers.iter().map(|f| self.acked_if_idle(*f)).min().unwrap_or(applied);
            floor = floor.max(min_acked);
            self.floor = floor;
            let sender_epoch = self.placement.as_ref().map_or(0, |p| p.epoch);
            for f in followers {
                let sent = self.floors_sent.get(&f).copied().unwrap_or(0);
                if floor > sent && self.alive(f) {
                    self.floors_sent.insert(f, floor);
                    // Its own rid: the answer matches no link exchange and is ignored.
                    let rid = self.rid();
                    self.send(f, Message::Replicate { rid, sender_epoch, prev: None, entries: Vec::new(), floor });
                }
            }
        }
        if floor > 0 && floor > self.log.floor() && floor <= applied {
            self.log.truncate_below(floor);
            self.out.push(Command::TruncateLog { below: floor });
        }
    }
}
