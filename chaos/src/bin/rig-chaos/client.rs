//! REST calls to the rig's nodes on their published loopback ports, and the recorder of what
//! each call saw.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use loci_chaos::history::{Event, Ms, Op, Seen};
use parking_lot::Mutex;
use serde_json::Value;

pub struct Rig {
    pub http: reqwest::Client,
    /// REST port of each node on 127.0.0.1.
    pub ports: Vec<u16>,
    pub root: String,
    pub t0: Instant,
    pub events: Mutex<Vec<Event>>,
}

/// One answer: status (None without one), JSON body, start and end.
pub struct Answer {
    pub status: Option<u16>,
    pub body: Value,
    pub start: Ms,
    pub end: Ms,
}

impl Answer {
    pub fn ok(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

impl Rig {
    pub fn new(ports: Vec<u16>, root: String, timeout: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder().timeout(timeout).connect_timeout(Duration::from_secs(3)).build()?;
        Ok(Rig { http, ports, root, t0: Instant::now(), events: Mutex::new(Vec::new()) })
    }

    pub fn nodes(&self) -> usize {
        self.ports.len()
    }

    pub fn now(&self) -> Ms {
        self.t0.elapsed().as_millis() as u64
    }

    pub fn url(&self, node: usize, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ports[node])
    }

    pub async fn call(&self, node: usize, method: &str, path: &str, key: &str, body: Option<&Value>) -> Answer {
        self.call_within(node, method, path, key, body, None).await
    }

    /// [`Rig::call`] with its own timeout (a revocation waits for every member, or 11 s).
    pub async fn call_within(
        &self,
        node: usize,
        method: &str,
        path: &str,
        key: &str,
        body: Option<&Value>,
        timeout: Option<Duration>,
    ) -> Answer {
        let start = self.now();
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::GET);
        let mut req = self.http.request(method, self.url(node, path)).bearer_auth(key);
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let (status, body) = match req.send().await {
            Ok(r) => {
                let s = r.status().as_u16();
                // A body cut off by a fault still has its status: the node decided.
                (Some(s), r.json::<Value>().await.unwrap_or(Value::Null))
            }
            Err(_) => (None, Value::Null),
        };
        Answer { status, body, start, end: self.now() }
    }

    pub fn record(&self, tenant: usize, node: usize, a: &Answer, op: Op) {
        let error = a.status.filter(|s| *s >= 500).map(|_| a.body["error"].as_str().unwrap_or("").to_string());
        self.events.lock().push(Event { tenant, node, start: a.start, end: a.end, status: a.status, op, error });
    }

    /// Whether a node answers `/health/ready` with 200.
    pub async fn ready(&self, node: usize) -> bool {
        let r = self.http.get(self.url(node, "/health/ready")).timeout(Duration::from_secs(3)).send().await;
        r.is_ok_and(|r| r.status().is_success())
    }

    pub async fn wait_all_ready(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            let mut all = true;
            for n in 0..self.nodes() {
                all &= self.ready(n).await;
            }
            if all {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Every memory of `ns` through `node`, a page of 1000 at a time.
    pub async fn read_all(&self, node: usize, ns: &str, key: &str) -> Option<BTreeMap<String, String>> {
        let mut rows = BTreeMap::new();
        loop {
            let path = format!("/v1/agents/{ns}/memories?limit=1000&offset={}", rows.len());
            let a = self.call(node, "GET", &path, key, None).await;
            if !a.ok() {
                return None;
            }
            let page = a.body.as_array()?;
            for m in page {
                rows.insert(m["id"].as_str()?.to_string(), m["content"].as_str()?.to_string());
            }
            if page.len() < 1000 {
                return Some(rows);
            }
        }
    }
}

/// The memories in a listing (an array of memories) or a recall answer (`memories` of scored
/// memories holding `memory`).
pub fn seen_in(body: &Value) -> Vec<Seen> {
    let items: &[Value] = match body {
        Value::Array(a) => a,
        Value::Object(o) => o.get("memories").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]),
        _ => &[],
    };
    items
        .iter()
        .filter_map(|m| {
            let m = m.get("memory").unwrap_or(m);
            Some(Seen { id: m["id"].as_str()?.to_string(), content: m["content"].as_str()?.to_string() })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_listings_and_recall_answers() {
        let list = json!([{"id": "t0-1", "content": "a"}, {"id": "t0-2", "content": "b"}]);
        assert_eq!(seen_in(&list).len(), 2);
        let recall = json!({"memories": [{"memory": {"id": "t0-1", "content": "a"}, "score": 0.5}]});
        assert_eq!(seen_in(&recall), vec![Seen { id: "t0-1".into(), content: "a".into() }]);
        assert!(seen_in(&json!({"error": "x"})).is_empty());
    }
}
