//! Operator commands (`loci cluster …`, `loci ns …`, `loci keys …`): they call any node's typed
//! gRPC services (`loci.v1.Cluster`, `loci.v1.Namespaces`, `loci.v1.Keys`) with a super_admin key,
//! and print a table, or the answer as JSON with `--json`.

use clap::{Args, Subcommand};
use loci_api::pb;
use serde_json::Value;
use tonic::transport::Channel;

#[derive(Args, Debug, Clone)]
pub struct Conn {
    /// gRPC address of any node.
    #[arg(long, env = "LOCI_ADDR", default_value = "http://127.0.0.1:50051", global = true)]
    pub addr: String,
    /// API key (super_admin for cluster and key operations). Alias DAKERA_API_KEY.
    #[arg(long, env = "LOCI_API_KEY", hide_env_values = true, global = true)]
    pub api_key: Option<String>,
    /// Read the API key from this file (e.g. DATA_DIR/root.key).
    #[arg(long, global = true)]
    pub api_key_file: Option<std::path::PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// CA certificate (PEM) to verify a node whose public listeners use TLS (`--tls-cert`);
    /// implies `https://` for an address given without a scheme. An `https://` address needs it.
    #[arg(long, env = "LOCI_TLS_CA", global = true)]
    pub tls_ca: Option<std::path::PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum ClusterCmd {
    /// Members, gossip and Raft state, leader, applied index, namespaces per node, unhealthy replicas.
    Status,
    /// The member list.
    Members,
    /// Initialise a new cluster with the members the node currently sees.
    Init,
    /// Announce the node to a gossip seed of an existing cluster.
    Join { seed: String },
    /// Move this node's data away, then leave the cluster.
    Leave,
    /// Remove a member from the catalogue.
    Remove { node: String },
    /// Move every replica off a node (before removing it).
    Drain {
        node: String,
        /// Wait until the node holds no replica.
        #[arg(long)]
        wait: bool,
    },
    /// Stop draining a node.
    Undrain { node: String },
    /// Show (or confirm) the moves that balance namespaces across nodes.
    Rebalance {
        #[arg(long)]
        dry_run: bool,
    },
    /// Certificates for mutual TLS between nodes (no node is contacted).
    #[command(subcommand)]
    Certs(CertsCmd),
}

#[derive(Subcommand, Debug)]
pub enum CertsCmd {
    /// Create the cluster CA (`ca.crt`, and `ca.key` mode 0600: keep it off the nodes).
    CreateCa {
        #[arg(long, default_value = "certs")]
        certs_dir: std::path::PathBuf,
    },
    /// Create a node certificate signed by the CA (`node.crt`, `node.key`, a copy of `ca.crt`)
    /// into `--out-dir`, which becomes the node's `--cluster-certs-dir`.
    CreateNode {
        /// Where `ca.crt` and `ca.key` are.
        #[arg(long, default_value = "certs")]
        certs_dir: std::path::PathBuf,
        #[arg(long)]
        out_dir: std::path::PathBuf,
        /// Host names or IPs of the node, put in the certificate as well (repeat or comma-separate).
        #[arg(long, value_delimiter = ',')]
        host: Vec<String>,
    },
}

/// `loci cluster certs …`
pub fn certs(cmd: &CertsCmd) -> anyhow::Result<String> {
    match cmd {
        CertsCmd::CreateCa { certs_dir } => {
            let p = crate::tls::create_ca(certs_dir)?;
            Ok(format!("created the cluster CA: {} (and ca.key, mode 0600)", p.display()))
        }
        CertsCmd::CreateNode { certs_dir, out_dir, host } => {
            let p = crate::tls::create_node(certs_dir, out_dir, host)?;
            Ok(format!("created {} (and node.key, mode 0600; ca.crt beside it)", p.display()))
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum NsCmd {
    List,
    Create {
        name: String,
        #[arg(long)]
        dimension: u32,
        #[arg(long, default_value = "cosine")]
        distance: String,
    },
    /// Erase a namespace (its data key is destroyed first).
    Delete {
        name: String,
    },
    /// Which nodes hold the namespace.
    Placement {
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeysCmd {
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "read")]
        scope: String,
        /// Namespaces (or `prefix*` patterns) the key may touch; none = every namespace.
        #[arg(long = "namespace")]
        namespaces: Vec<String>,
        #[arg(long)]
        expires_in_days: Option<u64>,
    },
    List,
    /// Deactivate a key (or delete it with --delete).
    Revoke {
        key_id: String,
        #[arg(long)]
        delete: bool,
    },
    /// Revoke and reissue in one call.
    Rotate {
        key_id: String,
        #[arg(long)]
        grace_secs: Option<u64>,
    },
}

pub struct Client {
    conn: Conn,
    key: String,
}

impl Client {
    pub fn new(conn: Conn) -> anyhow::Result<Self> {
        let key = read_api_key(conn.api_key.as_deref(), conn.api_key_file.as_deref())?;
        Ok(Client { conn, key })
    }

    /// A channel to the node (TLS when the address is `https://` or a CA is given).
    pub async fn channel(&self) -> anyhow::Result<Channel> {
        let addr = if self.conn.addr.starts_with("http") {
            self.conn.addr.clone()
        } else if self.conn.tls_ca.is_some() {
            format!("https://{}", self.conn.addr)
        } else {
            format!("http://{}", self.conn.addr)
        };
        let mut endpoint = tonic::transport::Endpoint::from_shared(addr.clone())
            .map_err(|e| anyhow::anyhow!("not a node address: {addr}: {e}"))?;
        if addr.starts_with("https://") {
            let ca = self.conn.tls_ca.as_ref().ok_or_else(|| {
                anyhow::anyhow!("{addr} uses TLS: give the CA certificate that signed its certificate (--tls-ca)")
            })?;
            let pem = std::fs::read_to_string(ca)
                .map_err(|e| anyhow::anyhow!("cannot read the CA certificate {}: {e}", ca.display()))?;
            let tls =
                tonic::transport::ClientTlsConfig::new().ca_certificate(tonic::transport::Certificate::from_pem(pem));
            endpoint = endpoint.tls_config(tls).map_err(|e| anyhow::anyhow!("TLS settings for {addr}: {e}"))?;
        }
        endpoint.connect().await.map_err(|e| anyhow::anyhow!("cannot connect to {addr}: {e}"))
    }

    /// A request carrying the key.
    pub(crate) fn req<T>(&self, msg: T) -> anyhow::Result<tonic::Request<T>> {
        let mut r = tonic::Request::new(msg);
        let v = format!("Bearer {}", self.key)
            .parse()
            .map_err(|_| anyhow::anyhow!("the API key holds characters that cannot be sent"))?;
        r.metadata_mut().insert("authorization", v);
        Ok(r)
    }

    /// An answer as JSON (field names as in the REST answers), or the refusal as an error
    /// (`STATUS CODE: message`).
    pub(crate) fn answer<M: prost::Message>(
        &self,
        r: Result<tonic::Response<M>, tonic::Status>,
        name: &str,
    ) -> anyhow::Result<Value> {
        let m = r.map_err(|st| anyhow::anyhow!("{}", loci_api::error::describe_status(&st)))?.into_inner();
        loci_api::grpc::transcode::to_display_json(&m, name).map_err(|st| anyhow::anyhow!("{}", st.message()))
    }

    pub(crate) fn print(&self, v: &Value, table: impl FnOnce(&Value) -> String) {
        if self.conn.json {
            println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
        } else {
            print!("{}", table(v));
        }
    }
}

/// Left-aligned columns.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| -> String {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{:<w$}", c, w = widths[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = line(headers.iter().map(|h| h.to_string()).collect());
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.clone()));
        out.push('\n');
    }
    out
}

pub(crate) fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        // An empty list (a global key's namespaces) as REST's `null` was shown.
        Value::Array(a) if a.is_empty() => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub async fn cluster(conn: Conn, cmd: ClusterCmd) -> anyhow::Result<()> {
    if let ClusterCmd::Certs(cmd) = &cmd {
        // Local files only: no node and no API key involved.
        println!("{}", certs(cmd)?);
        return Ok(());
    }
    let c = Client::new(conn)?;
    let mut cl = pb::cluster_client::ClusterClient::new(c.channel().await?);
    let node_id = |node: &str| -> anyhow::Result<u64> {
        node.parse().map_err(|_| anyhow::anyhow!("a node id is a number, not '{node}'"))
    };
    match cmd {
        ClusterCmd::Status => {
            let v = c.answer(cl.status(c.req(pb::ClusterStatusRequest {})?).await, "loci.v1.ClusterStatusResponse")?;
            c.print(&v, |v| {
                let mut out = format!(
                    "cluster {}  state {}  leader {}  term {}  applied {}  namespaces {}\n\n",
                    s(&v["cluster_id"]),
                    s(&v["state"]),
                    s(&v["leader"]),
                    s(&v["term"]),
                    s(&v["applied_index"]),
                    s(&v["namespace_count"])
                );
                let rows: Vec<Vec<String>> = v["members"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|m| {
                                let leader = m["node_id"] == v["leader"];
                                vec![
                                    format!("{}{}", s(&m["node_id"]), if leader { "*" } else { "" }),
                                    s(&m["rpc_addr"]),
                                    s(&m["gossip_state"]),
                                    s(&m["raft_role"]),
                                    s(&m["applied_index"]),
                                    s(&m["namespaces_primary"]),
                                    s(&m["namespaces_replica"]),
                                    if m["draining"] == true { "draining".into() } else { String::new() },
                                ]
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.push_str(&table(
                    &["NODE", "RPC ADDRESS", "GOSSIP", "RAFT", "APPLIED", "PRIMARIES", "REPLICAS", ""],
                    &rows,
                ));
                let unhealthy = v["unhealthy_replicas"].as_array().cloned().unwrap_or_default();
                if unhealthy.is_empty() {
                    out.push_str("\nall replicas healthy\n");
                } else {
                    out.push_str(&format!("\n{} unhealthy replicas:\n", unhealthy.len()));
                    let rows: Vec<Vec<String>> = unhealthy
                        .iter()
                        .map(|u| vec![s(&u["namespace"]), s(&u["node"]), s(&u["state"]), s(&u["alive"])])
                        .collect();
                    out.push_str(&table(&["NAMESPACE", "NODE", "STATE", "ALIVE"], &rows));
                }
                out
            });
        }
        ClusterCmd::Members => {
            let v = c.answer(cl.nodes(c.req(pb::ClusterNodesRequest {})?).await, "loci.v1.ClusterNodesResponse")?;
            c.print(&v, |v| {
                let rows: Vec<Vec<String>> = v["nodes"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|n| {
                                vec![
                                    s(&n["node_id"]),
                                    s(&n["address"]),
                                    s(&n["rpc_addr"]),
                                    s(&n["role"]),
                                    s(&n["status"]),
                                    s(&n["uptime_seconds"]),
                                ]
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                table(&["NODE", "HTTP", "RPC", "ROLE", "STATUS", "UPTIME"], &rows)
            });
        }
        ClusterCmd::Init => {
            let v = c.answer(cl.init(c.req(pb::ClusterInitRequest {})?).await, "loci.v1.ClusterInitResponse")?;
            c.print(&v, |v| format!("initialised with members {}\n", s(&v["members"])));
        }
        ClusterCmd::Join { seed } => {
            let v = c.answer(cl.join(c.req(pb::ClusterJoinRequest { seed })?).await, "loci.v1.ClusterJoinResponse")?;
            c.print(&v, |v| format!("announced to {}\n", s(&v["announced_to"])));
        }
        ClusterCmd::Leave => {
            let v = c.answer(cl.leave(c.req(pb::ClusterLeaveRequest {})?).await, "loci.v1.ClusterLeaveResponse")?;
            c.print(&v, |v| format!("node {} left the cluster\n", s(&v["left"])));
        }
        ClusterCmd::Remove { node } => {
            let req = c.req(pb::ClusterRemoveRequest { node: node_id(&node)? })?;
            let v = c.answer(cl.remove(req).await, "loci.v1.ClusterRemoveResponse")?;
            c.print(&v, |v| format!("removed node {}\n", s(&v["removed"])));
        }
        ClusterCmd::Drain { node, wait } => {
            let req = c.req(pb::ClusterDrainRequest { node: node_id(&node)? })?;
            let v = c.answer(cl.drain(req).await, "loci.v1.ClusterDrainResponse")?;
            if wait {
                loop {
                    let st = c.answer(
                        cl.status(c.req(pb::ClusterStatusRequest {})?).await,
                        "loci.v1.ClusterStatusResponse",
                    )?;
                    let m = st["members"].as_array().and_then(|a| a.iter().find(|m| s(&m["node_id"]) == node).cloned());
                    let held = m.as_ref().map_or(0, |m| {
                        m["namespaces_primary"].as_u64().unwrap_or(0) + m["namespaces_replica"].as_u64().unwrap_or(0)
                    });
                    if held == 0 {
                        break;
                    }
                    if !c.conn.json {
                        eprintln!("node {node} still holds {held} replicas…");
                    }
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
            c.print(&v, |v| {
                format!(
                    "node {} draining ({} replicas at the time of the request)\n",
                    s(&v["node_id"]),
                    s(&v["replicas_on_node"])
                )
            });
        }
        ClusterCmd::Undrain { node } => {
            let req = c.req(pb::ClusterUndrainRequest { node: node_id(&node)? })?;
            let v = c.answer(cl.undrain(req).await, "loci.v1.ClusterDrainResponse")?;
            c.print(&v, |v| format!("node {} no longer draining\n", s(&v["node_id"])));
        }
        // Answered above, before connecting.
        ClusterCmd::Certs(_) => {}
        ClusterCmd::Rebalance { dry_run } => {
            let req = c.req(pb::ClusterRebalanceRequest { dry_run })?;
            let v = c.answer(cl.rebalance(req).await, "loci.v1.ClusterRebalanceResponse")?;
            c.print(&v, |v| {
                let rows: Vec<Vec<String>> = v["planned_moves"]
                    .as_array()
                    .map(|a| a.iter().map(|m| vec![s(&m["namespace"]), s(&m["from_node"]), s(&m["to_node"])]).collect())
                    .unwrap_or_default();
                format!("{} moves planned\n{}", rows.len(), table(&["NAMESPACE", "FROM", "TO"], &rows))
            });
        }
    }
    Ok(())
}

pub async fn ns(conn: Conn, cmd: NsCmd) -> anyhow::Result<()> {
    let c = Client::new(conn)?;
    let mut nsc = pb::namespaces_client::NamespacesClient::new(c.channel().await?);
    match cmd {
        NsCmd::List => {
            let v = c.answer(nsc.list(c.req(pb::ListNamespacesRequest {})?).await, "loci.v1.ListNamespacesResponse")?;
            c.print(&v, |v| {
                let rows: Vec<Vec<String>> = v["namespaces"]
                    .as_array()
                    .map(|a| a.iter().map(|n| vec![s(n), s(&v["kinds"][n.as_str().unwrap_or("")])]).collect())
                    .unwrap_or_default();
                table(&["NAMESPACE", "KIND"], &rows)
            });
        }
        NsCmd::Create { name, dimension, distance } => {
            let req = pb::CreateNamespaceRequest {
                name,
                dimension: Some(i64::from(dimension)),
                distance,
                ..Default::default()
            };
            let v = c.answer(nsc.create(c.req(req)?).await, "loci.v1.NamespaceCreated")?;
            c.print(&v, |v| {
                format!(
                    "namespace {} (dimension {}, {}) {}\n",
                    s(&v["namespace"]),
                    s(&v["dimension"]),
                    s(&v["distance"]),
                    if v["created"] == true { "created" } else { "already existed" }
                )
            });
        }
        NsCmd::Delete { name } => {
            let v =
                c.answer(nsc.delete(c.req(pb::DeleteNamespaceRequest { ns: name })?).await, "loci.v1.DeletionReceipt")?;
            c.print(&v, |v| {
                format!(
                    "erased {}: {} memories, data key destroyed: {}\n",
                    s(&v["namespace"]),
                    s(&v["memories_deleted"]),
                    s(&v["data_key_destroyed"])
                )
            });
        }
        NsCmd::Placement { name } => {
            let mut cl = pb::cluster_client::ClusterClient::new(c.channel().await?);
            let req = c.req(pb::ClusterPlacementRequest { ns: name })?;
            let v = c.answer(cl.placement(req).await, "loci.v1.ClusterPlacementResponse")?;
            c.print(&v, |v| {
                let rows: Vec<Vec<String>> = v["replicas"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .enumerate()
                            .map(|(i, r)| {
                                vec![
                                    s(&r["node_id"]),
                                    if i == 0 { "primary".into() } else { "replica".into() },
                                    s(&r["state"]),
                                    s(&r["alive"]),
                                ]
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                format!(
                    "{} epoch {} rf {}\n{}",
                    s(&v["namespace"]),
                    s(&v["epoch"]),
                    s(&v["rf"]),
                    table(&["NODE", "ROLE", "STATE", "ALIVE"], &rows)
                )
            });
        }
    }
    Ok(())
}

pub async fn keys(conn: Conn, cmd: KeysCmd) -> anyhow::Result<()> {
    let c = Client::new(conn)?;
    let mut kc = pb::keys_client::KeysClient::new(c.channel().await?);
    match cmd {
        KeysCmd::Create { name, scope, namespaces, expires_in_days } => {
            let req = pb::KeysCreateRequest { name, scope, namespaces, expires_in_days, ..Default::default() };
            let v = c.answer(kc.create(c.req(req)?).await, "loci.v1.ApiKey")?;
            c.print(&v, |v| format!("key_id {}\nkey    {}\n{}\n", s(&v["key_id"]), s(&v["key"]), s(&v["warning"])));
        }
        KeysCmd::List => {
            let v = c.answer(kc.list(c.req(pb::KeysListRequest {})?).await, "loci.v1.KeysListResponse")?;
            c.print(&v, |v| {
                let rows: Vec<Vec<String>> = v["keys"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|k| {
                                vec![
                                    s(&k["key_id"]),
                                    s(&k["name"]),
                                    s(&k["scope"]),
                                    s(&k["namespaces"]),
                                    s(&k["active"]),
                                    s(&k["expires_at"]),
                                ]
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                table(&["KEY ID", "NAME", "SCOPE", "NAMESPACES", "ACTIVE", "EXPIRES"], &rows)
            });
        }
        KeysCmd::Revoke { key_id, delete } => {
            let v = if delete {
                c.answer(kc.delete(c.req(pb::KeysDeleteRequest { id: key_id })?).await, "loci.v1.KeysRevokeResponse")?
            } else {
                let req = c.req(pb::KeysDeactivateRequest { id: key_id })?;
                c.answer(kc.deactivate(req).await, "loci.v1.KeysRevokeResponse")?
            };
            c.print(&v, |v| format!("{}\n", s(&v["message"])));
        }
        KeysCmd::Rotate { key_id, grace_secs } => {
            let req = c.req(pb::KeysRotateRequest { id: key_id, grace_secs })?;
            let v = c.answer(kc.rotate(req).await, "loci.v1.KeysRotateResponse")?;
            c.print(&v, |v| {
                format!(
                    "new key_id {}\nnew key    {}\nold key {} expires at {}\n",
                    s(&v["key_id"]),
                    s(&v["new_key"]),
                    s(&v["old_key_id"]),
                    s(&v["old_key_expires_at"])
                )
            });
        }
    }
    Ok(())
}

/// `loci audit verify --url`: read a node's audit file through `GET
/// /v1/audit/export?format=chain` and check its chain as it streams in.
pub fn verify_audit_url(
    url: &str,
    api_key: Option<&str>,
    api_key_file: Option<&std::path::Path>,
) -> anyhow::Result<loci_service::audit::Verdict> {
    let key = read_api_key(api_key, api_key_file)?;
    let endpoint = format!("{}/v1/audit/export?format=chain", url.trim_end_matches('/'));
    let resp = reqwest::blocking::Client::builder()
        .timeout(None)
        .build()?
        .get(&endpoint)
        .bearer_auth(key)
        .send()
        .map_err(|e| anyhow::anyhow!("GET {endpoint}: {e}"))?;
    if !resp.status().is_success() {
        let status = resp.status();
        let body = resp.text().unwrap_or_default();
        anyhow::bail!("GET {endpoint} answered {status}: {}", body.chars().take(300).collect::<String>());
    }
    Ok(loci_service::audit::verify_reader(std::io::BufReader::new(resp))?)
}

/// The operator's key: `--api-key` (`LOCI_API_KEY`), else `--api-key-file`, else `DAKERA_API_KEY`.
fn read_api_key(key: Option<&str>, file: Option<&std::path::Path>) -> anyhow::Result<String> {
    match (key, file) {
        (Some(k), _) => Ok(k.to_string()),
        (None, Some(f)) => Ok(std::fs::read_to_string(f)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", f.display()))?
            .trim()
            .to_string()),
        (None, None) => std::env::var("DAKERA_API_KEY")
            .map_err(|_| anyhow::anyhow!("an API key is needed: --api-key, LOCI_API_KEY or --api-key-file")),
    }
}
