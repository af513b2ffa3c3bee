//! Throttling of failed cluster-token checks, per peer address: the token is compared in
//! constant time, and a peer that keeps presenting a wrong one is refused without comparing for
//! a while, so the secret cannot be guessed at line rate. IO-free (time is passed in).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Failures from one address within [`WINDOW`] before it is blocked.
pub const MAX_FAILURES: u32 = 5;
pub const WINDOW: Duration = Duration::from_secs(60);
/// How long a blocked address is refused without a comparison.
pub const BLOCK_FOR: Duration = Duration::from_secs(60);
/// Addresses remembered at most (bounded memory under a spray of sources).
pub const MAX_TRACKED: usize = 10_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Admitted,
    /// A wrong token; `blocked_now` when this failure blocked the address.
    Refused {
        failures: u32,
        blocked_now: bool,
    },
    /// Refused without comparing: the address is blocked.
    Throttled,
}

#[derive(Clone, Copy, Debug)]
struct Record {
    window_start: Instant,
    failures: u32,
    blocked_until: Option<Instant>,
}

#[derive(Default)]
pub struct TokenGuard {
    peers: Mutex<HashMap<IpAddr, Record>>,
}

impl TokenGuard {
    /// Decide on one call from `peer` whose token comparison gave `token_ok` (only consulted
    /// when the address is not blocked).
    pub fn check(&self, peer: Option<IpAddr>, now: Instant, token_ok: impl FnOnce() -> bool) -> Verdict {
        let Some(ip) = peer else {
            return if token_ok() { Verdict::Admitted } else { Verdict::Refused { failures: 1, blocked_now: false } };
        };
        let mut peers = self.peers.lock();
        if let Some(r) = peers.get(&ip) {
            if r.blocked_until.is_some_and(|t| now < t) {
                return Verdict::Throttled;
            }
        }
        if token_ok() {
            peers.remove(&ip);
            return Verdict::Admitted;
        }
        if peers.len() >= MAX_TRACKED && !peers.contains_key(&ip) {
            peers.retain(|_, r| r.blocked_until.is_some_and(|t| now < t));
        }
        let r = peers.entry(ip).or_insert(Record { window_start: now, failures: 0, blocked_until: None });
        if now.duration_since(r.window_start) > WINDOW || r.blocked_until.is_some() {
            *r = Record { window_start: now, failures: 0, blocked_until: None };
        }
        r.failures += 1;
        let blocked_now = r.failures >= MAX_FAILURES;
        if blocked_now {
            r.blocked_until = Some(now + BLOCK_FOR);
        }
        Verdict::Refused { failures: r.failures, blocked_now }
    }

    pub fn tracked(&self) -> usize {
        self.peers.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> Option<IpAddr> {
        Some(IpAddr::from([10, 0, 0, n]))
    }

    #[test]
    fn a_peer_guessing_is_blocked_then_refused_without_comparing_then_released() {
        let g = TokenGuard::default();
        let t0 = Instant::now();
        for i in 1..MAX_FAILURES {
            assert_eq!(g.check(ip(1), t0, || false), Verdict::Refused { failures: i, blocked_now: false });
        }
        assert_eq!(g.check(ip(1), t0, || false), Verdict::Refused { failures: MAX_FAILURES, blocked_now: true });
        // Blocked: even the right token is not compared (the closure would panic if called).
        assert_eq!(
            g.check(ip(1), t0 + Duration::from_secs(1), || panic!("compared while blocked")),
            Verdict::Throttled
        );
        // Other peers are unaffected.
        assert_eq!(g.check(ip(2), t0, || true), Verdict::Admitted);
        // After the block, the right token is admitted and the record forgotten.
        assert_eq!(g.check(ip(1), t0 + BLOCK_FOR + Duration::from_secs(1), || true), Verdict::Admitted);
        assert_eq!(g.tracked(), 0);
    }

    #[test]
    fn failures_spread_beyond_the_window_never_block() {
        let g = TokenGuard::default();
        let mut t = Instant::now();
        for _ in 0..20 {
            assert!(matches!(g.check(ip(3), t, || false), Verdict::Refused { blocked_now: false, .. }));
            t += WINDOW / 2 + Duration::from_secs(1);
            assert!(matches!(g.check(ip(3), t, || false), Verdict::Refused { blocked_now: false, .. }));
            t += WINDOW + Duration::from_secs(1);
        }
    }

    #[test]
    fn memory_stays_bounded_under_a_spray_of_addresses() {
        let g = TokenGuard::default();
        let t = Instant::now();
        for i in 0..(MAX_TRACKED as u32 + 500) {
            let a = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            g.check(Some(a), t, || false);
        }
        assert!(g.tracked() <= MAX_TRACKED);
    }
}
