//! Per-key usage counters kept by each node (in memory; they reset when the node restarts).

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;

#[derive(Default, Clone, Serialize)]
pub struct EndpointUsage {
    pub endpoint: String,
    pub requests: u64,
    pub avg_latency_ms: f64,
}

#[derive(Default, Clone)]
struct KeyUsage {
    total: u64,
    successful: u64,
    failed: u64,
    rate_limited: u64,
    latency_ms_sum: f64,
    last_used_at: Option<u64>,
    by_endpoint: HashMap<String, (u64, f64)>,
    by_namespace: HashMap<String, u64>,
}

#[derive(Default)]
pub struct Usage {
    keys: Mutex<HashMap<String, KeyUsage>>,
}

#[derive(Serialize)]
pub struct UsageReport {
    pub key_id: String,
    pub total_requests: u64,
    pub successful_requests: u64,
    pub failed_requests: u64,
    pub rate_limited_requests: u64,
    pub bytes_transferred: u64,
    pub avg_latency_ms: f64,
    pub last_used_at: Option<u64>,
    pub by_endpoint: Vec<EndpointUsage>,
    pub by_namespace: Vec<serde_json::Value>,
}

impl Usage {
    /// Count a request of `key_id`. Token principals (`jwt:<sub>`) are not counted: there is
    /// one per subject of the identity provider, no key to read the usage of, and their requests
    /// are in the audit log and the metrics.
    pub fn record(&self, key_id: &str, endpoint: &str, namespaces: &[String], status: u16, latency: Duration) {
        if key_id.starts_with(crate::jwt::claims::TOKEN_KEY_PREFIX) {
            return;
        }
        let mut keys = self.keys.lock();
        let u = keys.entry(key_id.to_string()).or_default();
        let ms = latency.as_secs_f64() * 1000.0;
        u.total += 1;
        match status {
            200..=399 => u.successful += 1,
            429 => {
                u.failed += 1;
                u.rate_limited += 1
            }
            _ => u.failed += 1,
        }
        u.latency_ms_sum += ms;
        u.last_used_at = Some(loci_storage::model::now_secs());
        if u.by_endpoint.len() < 256 || u.by_endpoint.contains_key(endpoint) {
            let e = u.by_endpoint.entry(endpoint.to_string()).or_default();
            e.0 += 1;
            e.1 += ms;
        }
        for ns in namespaces {
            if u.by_namespace.len() < 256 || u.by_namespace.contains_key(ns) {
                *u.by_namespace.entry(ns.clone()).or_default() += 1;
            }
        }
    }

    pub fn last_used_at(&self, key_id: &str) -> Option<u64> {
        self.keys.lock().get(key_id).and_then(|u| u.last_used_at)
    }

    pub fn report(&self, key_id: &str) -> UsageReport {
        let u = self.keys.lock().get(key_id).cloned().unwrap_or_default();
        let mut by_endpoint: Vec<EndpointUsage> = u
            .by_endpoint
            .iter()
            .map(|(e, (n, ms))| EndpointUsage { endpoint: e.clone(), requests: *n, avg_latency_ms: ms / *n as f64 })
            .collect();
        by_endpoint.sort_by(|a, b| b.requests.cmp(&a.requests));
        let mut by_namespace: Vec<(String, u64)> = u.by_namespace.into_iter().collect();
        by_namespace.sort_by(|a, b| b.1.cmp(&a.1));
        UsageReport {
            key_id: key_id.to_string(),
            total_requests: u.total,
            successful_requests: u.successful,
            failed_requests: u.failed,
            rate_limited_requests: u.rate_limited,
            bytes_transferred: 0,
            avg_latency_ms: if u.total > 0 { u.latency_ms_sum / u.total as f64 } else { 0.0 },
            last_used_at: u.last_used_at,
            by_endpoint,
            by_namespace: by_namespace
                .into_iter()
                .map(|(ns, n)| serde_json::json!({"namespace": ns, "requests": n, "vectors_accessed": 0}))
                .collect(),
        }
    }
}
