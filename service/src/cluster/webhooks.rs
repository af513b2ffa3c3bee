//! Node-local state read from another node: webhook deliveries (each node sends and logs those of
//! the events it recorded; a listing or a replay asked elsewhere reaches it here) and import jobs.

use std::time::Duration;

use super::Cluster;
use super::error::{ClusterError, ClusterResult};
use super::wire::pb;
use crate::webhooks::Delivery;

fn decode(s: &str) -> ClusterResult<Delivery> {
    serde_json::from_str(s).map_err(|e| ClusterError::Internal(format!("decoding a webhook delivery: {e}")))
}

impl Cluster {
    pub fn serve_webhook_deliveries(&self, r: pb::WebhookDeliveriesRequest) -> pb::WebhookDeliveriesReply {
        let list = match &self.local.webhooks {
            Some(d) => d.deliveries(&r.webhook_id, (r.limit as usize).clamp(1, 1000)),
            None => Vec::new(),
        };
        pb::WebhookDeliveriesReply { deliveries: list.iter().filter_map(|d| serde_json::to_string(d).ok()).collect() }
    }

    pub fn serve_webhook_replay(&self, r: pb::WebhookReplayRequest) -> pb::WebhookReplayReply {
        let d = self.local.webhooks.as_ref().and_then(|d| d.replay(&r.webhook_id, &r.delivery_id));
        pb::WebhookReplayReply { delivery: d.and_then(|d| serde_json::to_string(&d).ok()) }
    }

    pub async fn webhook_deliveries_on(
        &self,
        node: u64,
        webhook_id: &str,
        limit: usize,
        timeout: Duration,
    ) -> ClusterResult<Vec<Delivery>> {
        let req = pb::WebhookDeliveriesRequest { webhook_id: webhook_id.to_string(), limit: limit as u32 };
        let reply = self.rpc(node, timeout, req, |mut c, r| async move { c.webhook_deliveries(r).await }).await?;
        reply.deliveries.iter().map(|d| decode(d)).collect()
    }

    pub async fn webhook_replay_on(
        &self,
        node: u64,
        webhook_id: &str,
        delivery_id: &str,
        timeout: Duration,
    ) -> ClusterResult<Option<Delivery>> {
        let req = pb::WebhookReplayRequest { webhook_id: webhook_id.to_string(), delivery_id: delivery_id.to_string() };
        let reply = self.rpc(node, timeout, req, |mut c, r| async move { c.webhook_replay(r).await }).await?;
        reply.delivery.as_deref().map(decode).transpose()
    }
}

impl Cluster {
    /// One of `node`'s import jobs.
    pub async fn import_job_on(
        &self,
        node: u64,
        job_id: &str,
        timeout: Duration,
    ) -> ClusterResult<Option<crate::memories::jobs::ImportJob>> {
        let req = pb::ImportStatusRequest { job_id: job_id.to_string() };
        let reply = self.rpc(node, timeout, req, |mut c, r| async move { c.import_status(r).await }).await?;
        reply
            .job
            .as_deref()
            .map(|j| {
                serde_json::from_str(j).map_err(|e| ClusterError::Internal(format!("decoding an import job: {e}")))
            })
            .transpose()
    }
}
