//! The audit log over the cluster: a node's records for `GET /v1/audit` answered on another
//! node (`Internal.AuditQuery`), and the conversions of its filter.

use serde_json::Value;

use super::Cluster;
use super::wire::pb;
use crate::audit::query::{AuditFilter, Cursor, MAX_EXPORT_LIMIT, ScanResult, Visibility};

impl From<(&AuditFilter, &Visibility, usize)> for pb::AuditQueryRequest {
    fn from((f, vis, limit): (&AuditFilter, &Visibility, usize)) -> Self {
        let (all, within) = match vis {
            Visibility::All => (true, Vec::new()),
            Visibility::Within(p) => (false, p.clone()),
        };
        pb::AuditQueryRequest {
            event_type: f.event_type.clone(),
            key_id: f.key_id.clone(),
            namespace: f.namespace.clone(),
            agent_id: f.agent_id.clone(),
            method: f.method.clone(),
            path_prefix: f.path_prefix.clone(),
            status: f.status.clone(),
            from_ms: f.from_ms,
            to_ms: f.to_ms,
            before_ts_ms: f.before.map(|c| c.ts_ms),
            before_node: f.before.map(|c| c.node),
            before_seq: f.before.map(|c| c.seq),
            within,
            all,
            limit: u32::try_from(limit).unwrap_or(u32::MAX),
        }
    }
}

/// The filter, view and limit a request carries. A request that names no view sees nothing.
pub fn query_of(r: pb::AuditQueryRequest) -> (AuditFilter, Visibility, usize) {
    let before = match (r.before_ts_ms, r.before_node, r.before_seq) {
        (Some(ts_ms), Some(node), Some(seq)) => Some(Cursor { ts_ms, node, seq }),
        _ => None,
    };
    let filter = AuditFilter {
        event_type: r.event_type,
        key_id: r.key_id,
        namespace: r.namespace,
        agent_id: r.agent_id,
        method: r.method,
        path_prefix: r.path_prefix,
        status: r.status,
        from_ms: r.from_ms,
        to_ms: r.to_ms,
        node: None,
        before,
    };
    let vis = if r.all { Visibility::All } else { Visibility::Within(r.within) };
    (filter, vis, (r.limit as usize).min(MAX_EXPORT_LIMIT))
}

impl Cluster {
    /// This node's answer to another node's audit query (file IO off the async threads).
    pub async fn serve_audit_query(&self, r: pb::AuditQueryRequest) -> pb::AuditQueryReply {
        let (filter, vis, limit) = query_of(r);
        let audit = self.local.audit.clone();
        let read = tokio::task::spawn_blocking(move || audit.read(&filter, &vis, limit)).await;
        match read {
            Ok(Ok(Some(ScanResult { records, truncated, oldest_scanned, .. }))) => {
                let stopped = oldest_scanned.filter(|_| truncated);
                pb::AuditQueryReply {
                    readable: true,
                    records: records.iter().map(Value::to_string).collect(),
                    truncated,
                    error: None,
                    stopped_ts_ms: stopped.map(|c| c.ts_ms),
                    stopped_node: stopped.map(|c| c.node),
                    stopped_seq: stopped.map(|c| c.seq),
                }
            }
            Ok(Ok(None)) => pb::AuditQueryReply { readable: false, ..Default::default() },
            Ok(Err(e)) => reply_error(format!("reading the audit log: {e}")),
            Err(e) => reply_error(format!("reading the audit log: {e}")),
        }
    }
}

fn reply_error(msg: String) -> pb::AuditQueryReply {
    pb::AuditQueryReply {
        readable: true,
        error: Some(pb::ClusterError {
            kind: Some(pb::cluster_error::Kind::Unavailable(msg)),
            namespace: String::new(),
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_and_view_cross_the_wire_unchanged() {
        let f = AuditFilter {
            event_type: Some("request".into()),
            key_id: Some("k".into()),
            namespace: Some("ns".into()),
            agent_id: Some("a".into()),
            method: Some("POST".into()),
            path_prefix: Some("/v1".into()),
            status: Some("4xx".into()),
            from_ms: Some(1),
            to_ms: Some(2),
            node: None,
            before: Some(Cursor { ts_ms: 5, node: 2, seq: 9 }),
        };
        for vis in [Visibility::All, Visibility::Within(vec!["acme-*".into()]), Visibility::Within(vec![])] {
            let (f2, v2, l2) = query_of(pb::AuditQueryRequest::from((&f, &vis, 50)));
            assert_eq!((f2, v2, l2), (f.clone(), vis, 50));
        }
        let (_, _, l) = query_of(pb::AuditQueryRequest::from((&f, &Visibility::All, 1_000_000)));
        assert_eq!(l, MAX_EXPORT_LIMIT);
    }
}
