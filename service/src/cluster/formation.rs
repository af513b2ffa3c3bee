//! Forming or joining a cluster: bootstrap with `--bootstrap-expect`, `loci cluster init`, and
//! learning the cluster's encryption parameters before the node serves data.

use std::sync::Arc;
use std::time::Duration;

use loci_raft::NodeAddr;
use loci_raft::catalogue::Command;
use loci_storage::crypto::MasterSecret;
use tokio_util::sync::CancellationToken;

use super::{Cluster, ClusterAction};

impl Cluster {
    /// Form or join the cluster, learn the encryption parameters, then mark the node ready.
    pub async fn form(
        self: Arc<Self>,
        master: MasterSecret,
        pending_params: Option<loci_storage::crypto::EncryptionParams>,
        token: CancellationToken,
    ) {
        let mut announced_init = false;
        loop {
            if token.is_cancelled() {
                return;
            }
            let initialized = self.catalogue.is_initialized().await;
            if !initialized {
                if self.settings.standalone {
                    if let Err(e) = self.catalogue.initialize_single().await {
                        tracing::error!(error = %e, "cannot initialise the catalogue");
                    }
                } else if self.settings.bootstrap_expect >= 2 {
                    self.try_bootstrap().await;
                } else if !announced_init {
                    tracing::info!(
                        "waiting to be added to an existing cluster (via --join seeds) or for `loci cluster init`"
                    );
                    announced_init = true;
                }
            }
            if self.catalogue.is_initialized().await && self.catalogue.current_leader().await.is_some() {
                // The node that initialised proposes the cluster-wide parameters once.
                let (has_params, has_id) = {
                    let c = self.catalogue.view.read();
                    (c.encryption.is_some(), c.cluster_id.is_some())
                };
                if !has_params && self.catalogue.is_leader_now() {
                    if let Some(p) = pending_params.clone() {
                        let _ = self.catalogue.write(Command::SetEncryption { params: p }).await;
                    }
                }
                if !has_id && self.catalogue.is_leader_now() {
                    let mut b = [0u8; 16];
                    loci_storage::crypto::random_bytes(&mut b);
                    let _ = self.catalogue.write(Command::InitCluster { cluster_id: hex::encode(b) }).await;
                }
                let params = self.catalogue.view.read().encryption.clone();
                if let Some(params) = params {
                    match master.unlock(&params) {
                        Ok(ring) => {
                            self.local.contexts.set_keyring(ring);
                            self.local.ready.set(true);
                            tracing::info!(node_id = self.node_id, "cluster membership established; node ready");
                            return;
                        }
                        Err(e) => {
                            // A member that cannot read the cluster's data must not hold any:
                            // leave the catalogue and gossip, and stay unready.
                            tracing::error!(error = %e, "this node's LOCI_ENCRYPTION_KEY differs from the cluster's: leaving the cluster; not serving data");
                            let retire = ClusterAction::Retire { node: self.node_id };
                            if let Err(e) = self.clone().run_admin(retire).await {
                                tracing::warn!(error = %e.message, "could not remove this node from the catalogue");
                            }
                            self.gossip.leave().await;
                            return;
                        }
                    }
                }
            }
            tokio::select! {
                _ = token.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    }

    /// `--bootstrap-expect N`: once N nodes see each other and none is initialised, the lowest
    /// id initialises the catalogue with exactly those N members (same set on every node).
    pub(crate) async fn try_bootstrap(&self) {
        let view = self.gossip.view();
        let alive: Vec<_> = view.alive().map(|m| m.identity.clone()).collect();
        if alive.len() < self.settings.bootstrap_expect {
            return;
        }
        let mut ids: Vec<u64> = alive.iter().map(|m| m.id).collect();
        ids.sort();
        ids.truncate(self.settings.bootstrap_expect);
        if ids.first() != Some(&self.node_id) {
            return;
        }
        for id in &ids {
            if *id == self.node_id {
                continue;
            }
            match self.node_info_of(*id, Duration::from_secs(2)).await {
                Ok(info) if info.initialized => {
                    tracing::info!(peer = id, "a peer is already part of a cluster; not bootstrapping");
                    return;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "bootstrap: peer not reachable yet");
                    return;
                }
            }
        }
        let members: std::collections::BTreeMap<u64, NodeAddr> = alive
            .iter()
            .filter(|m| ids.contains(&m.id))
            .map(|m| {
                (
                    m.id,
                    NodeAddr {
                        rpc_addr: m.rpc_addr.clone(),
                        http_addr: m.http_addr.clone(),
                        gossip_addr: m.gossip_addr.to_string(),
                    },
                )
            })
            .collect();
        tracing::info!(members = ?members.keys().collect::<Vec<_>>(), "bootstrapping a new cluster");
        if let Err(e) = self.catalogue.raft.initialize(members).await {
            tracing::warn!(error = %e, "bootstrap initialisation failed");
        }
    }

    /// `loci cluster init`: initialise with every member this node currently sees.
    pub async fn init_with_view(&self) -> Result<Vec<u64>, String> {
        if self.catalogue.is_initialized().await {
            return Err("this node already belongs to an initialised cluster".into());
        }
        let members: std::collections::BTreeMap<u64, NodeAddr> = self
            .gossip
            .view()
            .alive()
            .map(|m| {
                (
                    m.identity.id,
                    NodeAddr {
                        rpc_addr: m.identity.rpc_addr.clone(),
                        http_addr: m.identity.http_addr.clone(),
                        gossip_addr: m.identity.gossip_addr.to_string(),
                    },
                )
            })
            .collect();
        let ids: Vec<u64> = members.keys().copied().collect();
        self.catalogue.raft.initialize(members).await.map_err(|e| e.to_string())?;
        Ok(ids)
    }
}
