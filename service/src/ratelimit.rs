//! Rate limiting: GCRA per API key and per namespace, shared across nodes through Redis.
//!
//! The Redis script takes `now` from Redis `TIME`, so node clocks don't matter. When Redis is
//! unreachable or slow (each call is bounded by 250 ms), the limiter falls back to an in-process
//! GCRA at `rate / alive nodes`: never unlimited. Three consecutive Redis failures open a circuit
//! for a few seconds so requests don't pay the timeout; afterwards Redis is probed again and used
//! as soon as it answers.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

const GCRA_LUA: &str = r#"
local key = KEYS[1]
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', key) or now)
if tat < now then tat = now end
local allow_at = tat - tolerance
if allow_at > now then
  return {0, 0, allow_at - now, tat - now}
end
local new_tat = tat + interval
redis.call('SET', key, new_tat, 'PX', math.ceil((new_tat - now) / 1000) + 1)
local remaining = math.floor((tolerance - (new_tat - now)) / interval + 0.000001) + 1
if remaining < 0 then remaining = 0 end
return {1, remaining, 0, new_tat - now}
"#;

/// Long enough that a working Redis on a busy host is not taken for a failed one: every call
/// decided locally meanwhile draws on a second, local budget (rig-chaos saw 236 requests pass
/// where the shared budget allowed 193 with 50 ms, the host's two cores saturated). Only the
/// calls before the circuit opens pay it.
const REDIS_CALL_TIMEOUT: Duration = Duration::from_millis(250);
const CIRCUIT_OPEN_FOR: Duration = Duration::from_secs(3);
const FAILURES_TO_OPEN: u32 = 3;

/// A limit: `rate` requests per `per` with bursts of up to `burst`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limit {
    pub rate: f64,
    pub per: Duration,
    pub burst: u32,
}

impl Limit {
    pub fn per_second(rate: f64, burst: u32) -> Self {
        Limit { rate, per: Duration::from_secs(1), burst: burst.max(1) }
    }
    pub fn per_minute(rate: f64) -> Self {
        Limit { rate, per: Duration::from_secs(60), burst: (rate as u32).clamp(1, 1000) }
    }
    /// Emission interval and burst tolerance in microseconds.
    fn params(&self, share: f64) -> (u64, u64) {
        let rate = (self.rate * share).max(1e-6);
        let interval = (self.per.as_micros() as f64 / rate).max(1.0);
        let burst = ((self.burst as f64 * share).floor() as u64).max(1);
        (interval as u64, interval as u64 * (burst - 1))
    }
}

/// The answer for one request.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u64,
    pub retry_after: Duration,
    /// Until the bucket is full again.
    pub reset_after: Duration,
    pub backend: Backend,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Redis,
    Local,
}

impl Backend {
    pub fn as_str(&self) -> &'static str {
        match self {
            Backend::Redis => "redis",
            Backend::Local => "local",
        }
    }
}

#[derive(Clone, Debug)]
pub struct RateLimitConfig {
    pub enabled: bool,
    /// Per API key.
    pub rps: f64,
    pub burst: u32,
    pub redis_url: Option<String>,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig { enabled: true, rps: 100.0, burst: 50, redis_url: None }
    }
}

struct Local {
    /// key → theoretical arrival time (µs since `epoch`)
    tats: HashMap<String, u64>,
}

pub struct RateLimiter {
    config: RateLimitConfig,
    redis: Option<redis::aio::ConnectionManager>,
    script: redis::Script,
    local: Mutex<Local>,
    epoch: Instant,
    failures: AtomicU32,
    open_until_us: AtomicU64,
    /// How many nodes share the global budget when falling back to local limits.
    alive_nodes: Arc<dyn Fn() -> usize + Send + Sync>,
}

impl RateLimiter {
    pub fn new(config: RateLimitConfig, alive_nodes: Arc<dyn Fn() -> usize + Send + Sync>) -> Result<Self, String> {
        let redis = match &config.redis_url {
            None => None,
            Some(url) => {
                let client = redis::Client::open(url.as_str()).map_err(|e| format!("LOCI_REDIS_URL: {e}"))?;
                let cfg = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_millis(200)))
                    .set_response_timeout(Some(REDIS_CALL_TIMEOUT))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(200));
                Some(
                    redis::aio::ConnectionManager::new_lazy_with_config(client, cfg)
                        .map_err(|e| format!("redis: {e}"))?,
                )
            }
        };
        Ok(RateLimiter {
            config,
            redis,
            script: redis::Script::new(GCRA_LUA),
            local: Mutex::new(Local { tats: HashMap::new() }),
            epoch: Instant::now(),
            failures: AtomicU32::new(0),
            open_until_us: AtomicU64::new(0),
            alive_nodes,
        })
    }

    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    pub fn key_limit(&self) -> Limit {
        Limit::per_second(self.config.rps, self.config.burst)
    }

    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    /// The backend that would answer now.
    pub fn backend(&self) -> Backend {
        if self.redis.is_some() && self.open_until_us.load(Ordering::Relaxed) <= self.now_us() {
            Backend::Redis
        } else {
            Backend::Local
        }
    }

    fn local_check(&self, key: &str, limit: Limit) -> Decision {
        let share = 1.0 / (self.alive_nodes)().max(1) as f64;
        let (interval, tolerance) = limit.params(if self.redis.is_some() { share } else { 1.0 });
        let now = self.now_us();
        let mut l = self.local.lock();
        if l.tats.len() > 100_000 {
            l.tats.retain(|_, tat| *tat > now);
        }
        let tat = l.tats.get(key).copied().unwrap_or(now).max(now);
        let limit_n = (tolerance / interval + 1) as u32;
        // GCRA: conforming while the theoretical arrival time is within the burst tolerance.
        let allow_at = tat.saturating_sub(tolerance);
        if allow_at > now {
            return Decision {
                allowed: false,
                limit: limit_n,
                remaining: 0,
                retry_after: Duration::from_micros(allow_at - now),
                reset_after: Duration::from_micros(tat - now),
                backend: Backend::Local,
            };
        }
        let new_tat = tat + interval;
        l.tats.insert(key.to_string(), new_tat);
        Decision {
            allowed: true,
            limit: limit_n,
            remaining: (now + tolerance + interval).saturating_sub(new_tat) / interval,
            retry_after: Duration::ZERO,
            reset_after: Duration::from_micros(new_tat - now),
            backend: Backend::Local,
        }
    }

    async fn redis_check(
        &self,
        conn: &redis::aio::ConnectionManager,
        key: &str,
        limit: Limit,
    ) -> Result<Decision, String> {
        let (interval, tolerance) = limit.params(1.0);
        let mut conn = conn.clone();
        let mut inv = self.script.key(format!("loci:rl:{key}"));
        inv.arg(interval).arg(tolerance);
        let fut = inv.invoke_async::<Vec<i64>>(&mut conn);
        let r = tokio::time::timeout(REDIS_CALL_TIMEOUT, fut).await.map_err(|_| "timeout".to_string())?;
        let v = r.map_err(|e| e.to_string())?;
        if v.len() != 4 {
            return Err("unexpected script reply".into());
        }
        Ok(Decision {
            allowed: v[0] == 1,
            limit: (tolerance / interval + 1) as u32,
            remaining: v[1].max(0) as u64,
            retry_after: Duration::from_micros(v[2].max(0) as u64),
            reset_after: Duration::from_micros(v[3].max(0) as u64),
            backend: Backend::Redis,
        })
    }

    /// Check (and consume one unit of) the budget named `key`.
    pub async fn check(&self, key: &str, limit: Limit) -> Decision {
        let d = match (&self.redis, self.backend()) {
            (Some(conn), Backend::Redis) => match self.redis_check(conn, key, limit).await {
                Ok(d) => {
                    self.failures.store(0, Ordering::Relaxed);
                    d
                }
                Err(e) => {
                    metrics::counter!("loci_ratelimit_redis_failures_total").increment(1);
                    let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
                    if n >= FAILURES_TO_OPEN {
                        self.open_until_us
                            .store(self.now_us() + CIRCUIT_OPEN_FOR.as_micros() as u64, Ordering::Relaxed);
                        self.failures.store(0, Ordering::Relaxed);
                        tracing::warn!(error = %e, "redis rate limiting unavailable; using local limits");
                    }
                    self.local_check(key, limit)
                }
            },
            _ => self.local_check(key, limit),
        };
        metrics::gauge!("loci_ratelimit_backend", "backend" => "redis").set(if d.backend == Backend::Redis {
            1.0
        } else {
            0.0
        });
        metrics::gauge!("loci_ratelimit_backend", "backend" => "local").set(if d.backend == Backend::Local {
            1.0
        } else {
            0.0
        });
        metrics::counter!("loci_ratelimit_decisions_total", "backend" => d.backend.as_str(), "allowed" => if d.allowed { "true" } else { "false" }).increment(1);
        d
    }
}

/// Which per-namespace budget a request draws on.
#[derive(Clone, Copy, Debug)]
pub enum NsClass {
    Store,
    Recall,
}

/// Per-namespace limits: the namespace's memory policy (when `rate_limit_enabled`) within the
/// operator's ceiling (always): the refusing decision and what it limited, or `None` when the
/// request may go on.
pub async fn check_namespace(
    limiter: &RateLimiter,
    policy: &loci_raft::catalogue::MemoryPolicy,
    ceiling: &loci_raft::quota::Ceiling,
    ns: &str,
    class: NsClass,
) -> Option<(Decision, String)> {
    if !limiter.enabled() {
        return None;
    }
    let (own, operator) = match class {
        NsClass::Store => (policy.rate_limit_stores_per_minute, ceiling.max_stores_per_minute),
        NsClass::Recall => (policy.rate_limit_recalls_per_minute, ceiling.max_recalls_per_minute),
    };
    let own = own.filter(|_| policy.rate_limit_enabled);
    let pm = loci_raft::quota::tighter(own, operator)?;
    let class_name = match class {
        NsClass::Store => "store",
        NsClass::Recall => "recall",
    };
    let d = limiter.check(&format!("ns:{ns}:{class_name}"), Limit::per_minute(pm as f64)).await;
    (!d.allowed).then(|| (d, format!("{class_name}s in namespace '{ns}'")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_gcra_allows_the_burst_then_refuses_then_refills() {
        let rl =
            RateLimiter::new(RateLimitConfig { rps: 10.0, burst: 5, ..Default::default() }, Arc::new(|| 1)).unwrap();
        let limit = rl.key_limit();
        let mut allowed = 0;
        for _ in 0..20 {
            if rl.check("k", limit).await.allowed {
                allowed += 1;
            }
        }
        assert_eq!(allowed, 5, "exactly the burst passes at once");
        let d = rl.check("k", limit).await;
        assert!(!d.allowed);
        assert!(d.retry_after <= Duration::from_millis(100));
        assert_eq!(d.backend, Backend::Local);
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(rl.check("k", limit).await.allowed, "refilled at 10/s");
        // Budgets are independent per key.
        assert!(rl.check("other", limit).await.allowed);
    }
}
