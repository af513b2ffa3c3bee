//! Node start-up and shut-down.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use loci_api::AppState;
use loci_raft::catalogue::Command;
use loci_raft::{CatalogueNode, ChannelPool, NodeAddr, OpenedStore, RaftService, RaftSettings};
use loci_service::cluster::{Cluster, ClusterSettings, Local};
use loci_service::contexts::{Contexts, Readiness};
use loci_service::{Core, CoreConfig};
use loci_storage::crypto::{MasterSecret, random_bytes};
use loci_storage::{Store, StoreConfig};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::ServeArgs;

/// A running node; dropping it does not stop it, call [`NodeHandle::shutdown`].
pub struct NodeHandle {
    pub node_id: u64,
    pub http_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    /// Node-to-node listener (Raft, forwarding, replication).
    pub cluster_addr: SocketAddr,
    pub gossip_addr: SocketAddr,
    pub data_dir: PathBuf,
    pub core: Arc<Core>,
    pub cluster: Arc<Cluster>,
    /// The REST router (benchmarks drive it in-process).
    pub router: axum::Router,
    cancel: CancellationToken,
    tasks: tokio::task::JoinSet<()>,
}

impl NodeHandle {
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Wait until the node is asked to stop (signal or `cancel_token().cancel()`), then stop it.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.cancel.cancelled().await;
        self.shutdown().await
    }

    /// Stop like `kill -9` as far as the node's data is concerned: no flush of the text index or
    /// access statistics, no goodbye to peers. Acknowledged writes are in the synced WAL.
    pub async fn crash(mut self) {
        self.core.set_ready(false);
        self.core.close_streams();
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        self.cluster.gossip.stop().await;
        self.core.catalogue.shutdown().await;
        tracing::warn!(node_id = self.node_id, "node crashed (simulated)");
    }

    /// Graceful stop: listeners close, in-flight requests finish, pending index and access-stat
    /// writes reach disk, Raft stops.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        // Open event streams end first: graceful HTTP shutdown waits for every connection.
        self.core.close_streams();
        self.cancel.cancel();
        while self.tasks.join_next().await.is_some() {}
        let store = self.core.store.clone();
        tokio::task::spawn_blocking(move || store.shutdown()).await??;
        self.core.catalogue.shutdown().await;
        tracing::info!(node_id = self.node_id, "node stopped");
        Ok(())
    }
}

/// Write a secret file readable only by the owner (refuses to replace an existing file).
pub(crate) fn write_secret(path: &Path, content: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(content.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

fn read_or_generate(path: &Path, generate: impl FnOnce() -> String) -> anyhow::Result<(String, bool)> {
    if path.exists() {
        let s = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        return Ok((s.trim().to_string(), false));
    }
    let s = generate();
    write_secret(path, &s)?;
    Ok((s, true))
}

/// A gRPC listener's connections with Nagle's algorithm off: an HTTP/2 answer is several small
/// writes (headers, data, trailers), and against a peer's delayed ACKs each could wait 40 ms
/// (measured: the p99 of a typed gRPC store was 42 ms against REST's 9 ms).
fn no_delay(listener: tokio::net::TcpListener) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    tokio_stream::StreamExt::map(tokio_stream::wrappers::TcpListenerStream::new(listener), |conn| {
        conn.inspect(|s| {
            let _ = s.set_nodelay(true);
        })
    })
}

fn node_id(args: &ServeArgs) -> anyhow::Result<u64> {
    let path = args.data_dir.join("node_id");
    if let Some(id) = args.node_id {
        if id == 0 {
            bail!("--node-id must be greater than 0");
        }
        if let Ok(existing) = std::fs::read_to_string(&path) {
            if existing.trim().parse::<u64>().ok() != Some(id) {
                bail!("data directory belongs to node {} but --node-id is {id}", existing.trim());
            }
        } else {
            std::fs::write(&path, id.to_string())?;
        }
        return Ok(id);
    }
    let (s, _) = read_or_generate(&path, || {
        let mut b = [0u8; 8];
        random_bytes(&mut b);
        // Positive, readable ids (< 2^53 so JSON clients keep them exact).
        ((u64::from_be_bytes(b) >> 11) | 1).to_string()
    })?;
    s.parse::<u64>().context("node_id file is corrupt")
}

/// Replace an unspecified bind address with something peers can dial.
fn advertised(addr: SocketAddr, host: Option<&str>) -> String {
    match host {
        Some(h) => format!("{h}:{}", addr.port()),
        None if addr.ip().is_unspecified() => format!("127.0.0.1:{}", addr.port()),
        None => addr.to_string(),
    }
}

async fn bind(addr: &str, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| format!("cannot bind the {what} address {addr}"))
}

/// Start a node and return once it serves requests.
pub async fn start(args: ServeArgs) -> anyhow::Result<NodeHandle> {
    for name in crate::config::unknown_env_vars() {
        tracing::warn!(
            "unknown environment variable {name} is ignored (not a Loci setting; see docs/configuration.md)"
        );
    }
    // The HTTP security settings are checked before anything is created or opened.
    let http_security = loci_api::security::HttpSecurity::from_settings(&loci_api::security::SecuritySettings {
        preset: args.security_preset.clone(),
        csp_enabled: args.csp_enabled,
        csp_directives: args.csp_directives.clone(),
        hsts_enabled: args.hsts_enabled,
        hsts_max_age: args.hsts_max_age,
        frame_options: args.frame_options.clone(),
        cors_origins: args.cors_origins.clone(),
        cors_credentials: args.cors_credentials,
    })
    .map_err(|e| anyhow::anyhow!("refusing to start: {e}"))?;
    if http_security.preset == loci_api::security::Preset::Strict
        && http_security.hsts.is_some()
        && args.hsts_max_age < loci_api::security::DEFAULT_HSTS_MAX_AGE
    {
        tracing::warn!(
            max_age = args.hsts_max_age,
            "HSTS preload lists require a max-age of at least 31536000 seconds (LOCI_HSTS_MAX_AGE)"
        );
    }
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create data directory {}", args.data_dir.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&args.data_dir, std::fs::Permissions::from_mode(0o700));
    }
    let raft_dir = args.data_dir.join("raft");

    // Keys first, and check the encryption key against the catalogue before anything is written.
    let peeked = loci_raft::peek_catalogue(&raft_dir).map_err(|e| anyhow::anyhow!("cannot read the catalogue: {e}"))?;
    let master = match &args.encryption_key {
        Some(k) => MasterSecret::parse(k).map_err(|e| anyhow::anyhow!("LOCI_ENCRYPTION_KEY: {e}"))?,
        None => {
            let path = args.data_dir.join("master.key");
            if !path.exists() && peeked.as_ref().is_some_and(|c| c.encryption.is_some()) {
                bail!(
                    "refusing to start: this data directory is encrypted but no LOCI_ENCRYPTION_KEY is set and {} is missing. \
                     Nothing was changed.",
                    path.display()
                );
            }
            let (k, generated) = read_or_generate(&path, MasterSecret::generate_hex)?;
            if generated {
                tracing::warn!(
                    path = %path.display(),
                    "no LOCI_ENCRYPTION_KEY given: generated a random master key into the data directory; \
                     back it up and move it to a secret store — losing it loses every memory"
                );
            } else {
                tracing::warn!(path = %path.display(), "using the master key stored in the data directory (set LOCI_ENCRYPTION_KEY in production)");
            }
            MasterSecret::parse(&k).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        }
    };
    let (keyring, pending_params) = match peeked.as_ref().and_then(|c| c.encryption.clone()) {
        Some(params) => (
            master.unlock(&params).map_err(|e| {
                anyhow::anyhow!(
                    "refusing to start: {e}. Nothing was changed; start again with the right LOCI_ENCRYPTION_KEY."
                )
            })?,
            None,
        ),
        None => {
            let (ring, params) = master.establish()?;
            (ring, Some(params))
        }
    };

    let node_id = node_id(&args)?;
    let root_key = match &args.root_api_key {
        Some(k) if k.trim().len() >= 8 => k.trim().to_string(),
        Some(_) => bail!("LOCI_ROOT_API_KEY must be at least 8 characters"),
        None => {
            let path = args.data_dir.join("root.key");
            let (k, generated) = read_or_generate(&path, || {
                let mut b = [0u8; 32];
                random_bytes(&mut b);
                format!("dk_{}", hex::encode(b))
            })?;
            if generated {
                tracing::warn!(path = %path.display(), "no LOCI_ROOT_API_KEY given: generated a root API key (read it from this file)");
            } else {
                tracing::info!(path = %path.display(), "root API key loaded from the data directory");
            }
            k
        }
    };

    let store = Arc::new(
        Store::open(
            &args.data_dir.join("data"),
            StoreConfig { sync_writes: args.sync_writes, ann_threshold: args.ann_threshold, ..Default::default() },
        )
        .context("cannot open the data store")?,
    );

    match args.entity_extractor.as_str() {
        "rules" => {}
        "openai-compatible" => {
            let url = args
                .openai_extractor_url
                .clone()
                .context("LOCI_ENTITY_EXTRACTOR=openai-compatible needs LOCI_OPENAI_EXTRACTOR_URL")?;
            store.set_extractor(Arc::new(loci_service::extractors::OpenAiExtractor::new(
                loci_service::extractors::OpenAiExtractorConfig {
                    url,
                    model: args.openai_extractor_model.clone(),
                    api_key: args.openai_extractor_key.clone(),
                    timeout: Duration::from_secs(30),
                    retries: 2,
                },
            )));
            tracing::info!(model = %args.openai_extractor_model, "entities extracted by an OpenAI-compatible endpoint");
        }
        other => bail!("LOCI_ENTITY_EXTRACTOR '{other}' is not rules or openai-compatible"),
    }

    // Options that can be wrong are checked before anything is initialised.
    let join = args.join_seeds();
    let standalone = join.is_empty() && args.bootstrap_expect <= 1;
    let cluster_secret = match &args.cluster_secret {
        Some(s) if s.len() >= 16 => s.clone(),
        Some(_) => bail!("LOCI_CLUSTER_SECRET must be at least 16 characters"),
        None if standalone => {
            let mut b = [0u8; 32];
            random_bytes(&mut b);
            hex::encode(b)
        }
        None => bail!("joining or forming a cluster needs LOCI_CLUSTER_SECRET (the same on every node)"),
    };
    // A seed whose name does not resolve yet (a peer container not started) is not fatal: it is
    // looked up again until it does (see the seed task below).
    let mut seeds = Vec::new();
    let mut unresolved_seeds = Vec::new();
    for s in &join {
        match tokio::net::lookup_host(s.trim()).await {
            Ok(resolved) => seeds.extend(resolved),
            Err(e) => {
                tracing::warn!(seed = %s, error = %e, "a --join seed does not resolve yet; looking it up again every 2 s");
                unresolved_seeds.push(s.trim().to_string());
            }
        }
    }
    let audit = loci_service::audit::AuditLog::open(
        loci_service::audit::AuditConfig {
            enabled: args.audit_enabled,
            file: args.audit_file.clone(),
            exclude_paths: args
                .audit_exclude_paths
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            request_body: args.audit_request_body,
            response_body: args.audit_response_body,
            max_body_size: args.audit_max_body_size,
            max_file_bytes: args.audit_max_file_bytes,
            retain_files: args.audit_retain_files,
            retention: (args.audit_retention_days > 0)
                .then(|| Duration::from_secs(args.audit_retention_days.saturating_mul(86_400))),
        },
        node_id,
    )
    .context("cannot open the audit log")?;

    let http_listener = bind(&args.http_addr, "HTTP").await?;
    let grpc_listener = bind(&args.grpc_addr, "gRPC").await?;
    let cluster_listener = bind(&args.cluster_addr, "cluster").await?;
    let cluster_tls = match &args.cluster_certs_dir {
        Some(dir) => Some(crate::tls::ClusterTls::load(dir).context("cannot load the cluster certificates")?),
        None => None,
    };
    // TLS on the public listeners: REST negotiates HTTP/2 or HTTP/1.1, gRPC HTTP/2.
    let public_tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some((
            crate::tls::public_config(cert, key, &[b"h2", b"http/1.1"])?,
            crate::tls::public_config(cert, key, &[b"h2"])?,
        )),
        (None, None) => None,
        _ => anyhow::bail!("--tls-cert and --tls-key go together"),
    };
    let gossip_addr_req: std::net::SocketAddr = tokio::net::lookup_host(&args.gossip_addr)
        .await
        .with_context(|| format!("cannot resolve the gossip address {}", args.gossip_addr))?
        .next()
        .with_context(|| format!("no address for {}", args.gossip_addr))?;
    let gossip_transport = loci_gossip::UdpTransport::bind(gossip_addr_req)
        .await
        .with_context(|| format!("cannot bind the gossip address {}", args.gossip_addr))?;
    let http_addr = http_listener.local_addr()?;
    let grpc_addr = grpc_listener.local_addr()?;
    let cluster_addr = cluster_listener.local_addr()?;
    let gossip_addr = gossip_transport.local_addr()?;
    let host = args.advertise_host.as_deref();
    // Gossip identities carry a socket address: resolve an advertised host name once, here, and
    // refuse to start rather than advertise an address peers cannot reach.
    let gossip_adv: std::net::SocketAddr = tokio::net::lookup_host(advertised(gossip_addr, host))
        .await
        .ok()
        .and_then(|mut a| a.next())
        .with_context(|| format!("cannot resolve the advertised host {}", host.unwrap_or("127.0.0.1")))?;
    let addr = NodeAddr {
        rpc_addr: args.cluster_advertise_addr.clone().unwrap_or_else(|| advertised(cluster_addr, host)),
        http_addr: advertised(http_addr, host),
        gossip_addr: gossip_adv.to_string(),
    };

    let opened = OpenedStore::open(&raft_dir).map_err(|e| anyhow::anyhow!("cannot open the catalogue: {e}"))?;
    if cluster_tls.is_none() && !standalone {
        tracing::warn!(
            "node-to-node traffic is plaintext and carries the cluster secret: set --cluster-certs-dir (loci cluster certs) outside development"
        );
    }
    let pool = ChannelPool::with_tls(cluster_tls.as_ref().map(crate::tls::ClusterTls::client_config));
    let catalogue = CatalogueNode::start(
        opened,
        node_id,
        addr.clone(),
        &RaftSettings::default(),
        pool.clone(),
        cluster_secret.clone(),
    )
    .await
    .map_err(|e| anyhow::anyhow!("cannot start the catalogue: {e}"))?;
    let gossip = loci_gossip::Gossip::start(
        loci_gossip::GossipConfig::new(
            loci_gossip::NodeIdentity {
                id: node_id,
                gossip_addr: gossip_adv,
                rpc_addr: addr.rpc_addr.clone(),
                http_addr: addr.http_addr.clone(),
                bump: loci_gossip::now_ms(),
            },
            seeds,
            cluster_secret.clone(),
        ),
        gossip_transport,
    );
    {
        // Raft reaches members where gossip says they are now (addresses change on restart).
        let g = gossip.clone();
        pool.set_resolver(Arc::new(move |id| {
            g.view().members.get(&id).map(|m| m.identity.rpc_addr.clone()).filter(|a| !a.is_empty())
        }));
    }
    // What the data plane acts on: this node's store, the namespace contexts (data keys under
    // the keyring, embedders), and the readiness flag.
    let contexts = Arc::new(Contexts::new(keyring.clone()));
    let events = Arc::new(loci_service::events::EventHub::new(node_id, args.event_buffer.max(1)));
    audit.tap(events.clone());
    let webhooks = if args.webhooks.webhooks_enabled {
        let d = loci_service::webhooks::Dispatcher::new(
            node_id,
            crate::webhooks::config(&args.webhooks)?,
            catalogue.clone(),
            contexts.clone(),
        )
        .map_err(|e| anyhow::anyhow!(e))?;
        d.start(events.clone());
        Some(d)
    } else {
        None
    };
    let local = Local {
        store: store.clone(),
        contexts: contexts.clone(),
        ready: Arc::new(Readiness::default()),
        audit: audit.clone(),
        events,
        webhooks,
        import_jobs: loci_service::memories::jobs::ImportJobs::new(node_id),
    };
    let cluster = Cluster::new(
        node_id,
        ClusterSettings {
            replication_factor: args.replication_factor.max(1),
            voters: args.voters.max(1),
            failover_after: Duration::from_secs(args.failover_after_secs.max(1)),
            dead_node_grace: Duration::from_secs(args.dead_node_grace_secs.max(1)),
            bootstrap_expect: args.bootstrap_expect,
            standalone,
        },
        catalogue.clone(),
        gossip.clone(),
        pool,
        cluster_secret,
        local,
    );

    let limiter = {
        let c = cluster.clone();
        Arc::new(
            loci_service::ratelimit::RateLimiter::new(
                loci_service::ratelimit::RateLimitConfig {
                    enabled: args.rate_limit_enabled,
                    rps: args.rate_limit_rps,
                    burst: args.rate_limit_burst,
                    redis_url: args.redis_url.clone(),
                },
                Arc::new(move || c.alive_members().len().max(1)),
            )
            .map_err(|e| anyhow::anyhow!(e))?,
        )
    };
    // The default embedder: the built-in model when its files are present (and verified).
    let model_dir = crate::model::resolve_dir(args.embedding_model_dir.as_deref(), &args.data_dir);
    let want = args.embedding_provider.as_str();
    // Loaded whenever present, whatever the default: namespaces created with it earlier (or on
    // other nodes) keep working.
    let minilm = if model_dir.exists() {
        let dir = model_dir.clone();
        match tokio::task::spawn_blocking(move || loci_storage::minilm::MiniLm::load(&dir)).await? {
            Ok(m) => Some(m),
            Err(e) if want == "builtin-minilm" => bail!("cannot load the embedding model: {e}"),
            Err(e) => {
                tracing::warn!(error = %e, "the embedding model could not be loaded");
                None
            }
        }
    } else if want == "builtin-minilm" {
        bail!(
            "LOCI_EMBEDDING_PROVIDER=builtin-minilm but {} holds no model; run `loci model fetch`",
            model_dir.display()
        );
    } else {
        None
    };
    let default_embedder = match (want, &minilm) {
        ("auto", Some(_)) | ("builtin-minilm", Some(_)) => loci_storage::minilm::PROVIDER.to_string(),
        ("auto", None) | ("hash", _) => {
            if want == "auto" {
                let looked: Vec<String> = match &args.embedding_model_dir {
                    Some(d) => vec![d.display().to_string()],
                    None => crate::model::search_dirs(&args.data_dir).iter().map(|d| d.display().to_string()).collect(),
                };
                tracing::warn!(
                    looked_in = %looked.join(", "),
                    "no embedding model found: new namespaces use the hashed n-gram fallback (keyword overlap, not meaning); run `loci model fetch`"
                );
            }
            loci_storage::embed::HashEmbedder::PROVIDER.to_string()
        }
        ("openai-compatible", _) => {
            if args.openai_embeddings_url.is_none() {
                bail!("LOCI_EMBEDDING_PROVIDER=openai-compatible needs LOCI_OPENAI_EMBEDDINGS_URL");
            }
            "openai-compatible".to_string()
        }
        (other, _) => bail!("LOCI_EMBEDDING_PROVIDER '{other}' is not auto, builtin-minilm, hash or openai-compatible"),
    };
    let jwt = crate::jwt::verifier(&args.jwt).await?;
    let mut core = Core::new(
        CoreConfig {
            node_id,
            default_embedder: default_embedder.clone(),
            default_dimension: args.default_dimension,
            max_content_bytes: args.max_content_bytes,
            max_body_bytes: args.max_body_size,
            ..Default::default()
        },
        catalogue.clone(),
        cluster.clone(),
        &root_key,
        audit.clone(),
    );
    if let Some(v) = &jwt {
        core = core.with_jwt(v.clone());
    }
    if let Some(dir) = &args.backup_dir {
        let secret = match &args.backup_key {
            Some(k) => MasterSecret::parse(k).map_err(|e| anyhow::anyhow!("LOCI_BACKUP_KEY: {e}"))?,
            None => master.clone(),
        };
        let s3 = loci_service::backup::backend::S3Options {
            endpoint: args.backup_s3_endpoint.clone(),
            region: args.backup_s3_region.clone(),
            access_key: args.backup_s3_access_key.clone(),
            secret_key: args.backup_s3_secret_key.clone(),
        };
        let location = dir.to_string_lossy();
        let state = loci_service::backup::BackupState::open(&location, &s3, secret)
            .map_err(|e| anyhow::anyhow!("backup store {location}: {}", e.message))?;
        tracing::info!(dir = %dir.display(), "backup store opened");
        core = core.with_backups(Arc::new(state));
    }
    let core = Arc::new(core);
    if let Some(m) = minilm {
        tracing::info!(model = loci_storage::minilm::MODEL_NAME, dir = %m.dir.display(), "built-in embedding model loaded");
        contexts.set_minilm(m);
    }
    if let Some(url) = &args.openai_embeddings_url {
        contexts.set_openai(loci_service::embedders::OpenAiConfig {
            url: url.clone(),
            model: args.openai_embeddings_model.clone(),
            api_key: args.openai_embeddings_key.clone(),
            timeout: Duration::from_secs(30),
            retries: 2,
        });
    }
    loci_api::metrics::handle();

    let cancel = CancellationToken::new();
    if !unresolved_seeds.is_empty() {
        // Knock on the seeds that did not resolve at start, while this node sees no one.
        let g = gossip.clone();
        let token = cancel.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            loop {
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = tick.tick() => {}
                }
                if g.view().alive_count() > 1 {
                    continue;
                }
                for s in &unresolved_seeds {
                    if let Ok(addrs) = tokio::net::lookup_host(s.as_str()).await {
                        for a in addrs {
                            let _ = g.announce(a).await;
                        }
                    }
                }
            }
        });
    }
    let mut tasks = tokio::task::JoinSet::new();
    if core.backup.is_some() {
        // Scheduled backups and retention: every node looks each minute; the catalogue's
        // leader alone acts.
        let (core, token) = (core.clone(), cancel.clone());
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = tick.tick() => {}
                }
                if !core.is_ready() {
                    continue;
                }
                match core.backups().tick().await {
                    Ok(Some(id)) => tracing::info!(backup = %id, "scheduled backup taken"),
                    Ok(None) => {}
                    Err(e) => tracing::warn!(error = %e.message, "scheduled backup pass failed"),
                }
            }
        });
    }
    if let Some(v) = &jwt {
        let (keys, token) = (v.jwks.clone(), cancel.clone());
        tasks.spawn(async move {
            tokio::select! {
                _ = token.cancelled() => {}
                _ = keys.run() => {}
            }
        });
    }
    let state = AppState {
        core: core.clone(),
        audit,
        limiter,
        usage: Arc::new(loci_service::usage::Usage::default()),
        http: Arc::new(http_security),
        metrics_auth: args.metrics_auth,
    };
    let app = loci_api::router(state.clone());
    if let Some(addr) = &args.metrics_addr {
        let listener = bind(addr, "metrics").await?;
        tracing::info!(addr = %listener.local_addr()?, "serving /metrics without a key on the metrics listener");
        let token = cancel.clone();
        let metrics_app = loci_api::metrics_router(state.clone());
        tasks.spawn(async move {
            if let Err(e) = axum::serve(listener, metrics_app).with_graceful_shutdown(token.cancelled_owned()).await {
                tracing::error!(error = %e, "metrics server failed");
            }
        });
    }

    // gRPC: Raft transport, node-to-node services, and the public service.
    {
        let raft_svc = RaftService::new(catalogue.clone()).into_server();
        let internal = loci_service::cluster::wire::pb::internal_server::InternalServer::new(
            loci_service::cluster::server::InternalService { cluster: cluster.clone() },
        )
        .max_decoding_message_size(256 * 1024 * 1024);
        let public = loci_api::grpc::public_routes(state.clone(), app.clone(), args.max_body_size.max(4 * 1024 * 1024));
        // grpc.health.v1.Health: "" (the node) and each public service follow the node's
        // readiness (`/health/ready`), checked every second; server reflection lists them.
        let (health, health_service) = tonic_health::server::health_reporter();
        {
            let (core, token) = (core.clone(), cancel.clone());
            tasks.spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                let mut last = None;
                loop {
                    tokio::select! {
                        _ = token.cancelled() => return,
                        _ = tick.tick() => {}
                    }
                    let ready = core.is_ready()
                        && core.catalogue.raft.metrics().borrow().current_leader.is_some()
                        && core.catalogue.is_fresh(loci_service::access::CATALOGUE_FRESHNESS);
                    if last == Some(ready) {
                        continue;
                    }
                    last = Some(ready);
                    let status = if ready {
                        tonic_health::ServingStatus::Serving
                    } else {
                        tonic_health::ServingStatus::NotServing
                    };
                    for name in std::iter::once("").chain(loci_api::grpc::SERVICE_NAMES.iter().copied()) {
                        health.set_service_status(name, status).await;
                    }
                }
            });
        }
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(loci_api::PUBLIC_FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .context("gRPC reflection")?;
        let token = cancel.clone();
        let grpc_tls = public_tls.as_ref().map(|(_, grpc)| grpc.clone());
        tasks.spawn(async move {
            let router = tonic::transport::Server::builder()
                .add_routes(public)
                .add_service(health_service)
                .add_service(reflection);
            let served = match grpc_tls {
                Some(cfg) => {
                    router
                        .serve_with_incoming_shutdown(
                            crate::tls::accept_public(grpc_listener, cfg, "grpc"),
                            token.cancelled_owned(),
                        )
                        .await
                }
                None => router.serve_with_incoming_shutdown(no_delay(grpc_listener), token.cancelled_owned()).await,
            };
            if let Err(e) = served {
                tracing::error!(error = %e, "gRPC server failed");
            }
        });
        // Node-to-node services listen apart from the public API: nothing that reaches the
        // public port can even attempt them.
        let token = cancel.clone();
        let server_tls = match &cluster_tls {
            Some(t) => Some(t.server_config()?),
            None => None,
        };
        tasks.spawn(async move {
            let router = tonic::transport::Server::builder().add_service(raft_svc).add_service(internal);
            let served = match server_tls {
                Some(cfg) => {
                    router
                        .serve_with_incoming_shutdown(
                            crate::tls::accept(cluster_listener, cfg),
                            token.cancelled_owned(),
                        )
                        .await
                }
                None => router.serve_with_incoming_shutdown(no_delay(cluster_listener), token.cancelled_owned()).await,
            };
            if let Err(e) = served {
                tracing::error!(error = %e, "cluster gRPC server failed");
            }
        });
    }
    {
        let token = cancel.clone();
        let app = app.clone();
        let rest_tls = public_tls.as_ref().map(|(rest, _)| rest.clone());
        tasks.spawn(async move {
            let served = match rest_tls {
                Some(cfg) => match crate::tls::TlsListener::new(http_listener, cfg) {
                    Ok(l) => {
                        // The peer address reaches the middleware as it does without TLS.
                        let app = app.layer(axum::middleware::map_request(|mut req: axum::extract::Request| async {
                            use axum::extract::ConnectInfo;
                            let peer = req.extensions().get::<ConnectInfo<crate::tls::TlsPeer>>().map(|c| c.0.0);
                            if let Some(peer) = peer {
                                req.extensions_mut().insert(ConnectInfo(peer));
                            }
                            req
                        }));
                        let make = app.into_make_service_with_connect_info::<crate::tls::TlsPeer>();
                        axum::serve(l, make).with_graceful_shutdown(token.cancelled_owned()).await
                    }
                    Err(e) => Err(e),
                },
                None => {
                    let make = app.into_make_service_with_connect_info::<SocketAddr>();
                    axum::serve(http_listener, make).with_graceful_shutdown(token.cancelled_owned()).await
                }
            };
            if let Err(e) = served {
                tracing::error!(error = %e, "HTTP server failed");
            }
        });
    }

    if standalone {
        // A single node is a one-voter cluster, initialised exactly once (guarded by Raft's
        // persisted state, not by timing).
        if !catalogue.is_initialized().await {
            tracing::info!(node_id, "initialising a new one-voter catalogue");
            catalogue.initialize_single().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        catalogue
            .wait_for_leader(Duration::from_secs(30))
            .await
            .map_err(|e| anyhow::anyhow!("catalogue did not elect a leader: {e}"))?;
        let keyring = match pending_params {
            Some(params) => match catalogue.write(Command::SetEncryption { params }).await? {
                loci_raft::CommandResult::Ok => keyring,
                // Set meanwhile by another node: derive from what the catalogue holds.
                _ => {
                    let params = catalogue.view.read().encryption.clone().context("encryption parameters missing")?;
                    master.unlock(&params)?
                }
            },
            None => keyring,
        };
        if catalogue.view.read().cluster_id.is_none() {
            let mut b = [0u8; 16];
            random_bytes(&mut b);
            catalogue.write(Command::InitCluster { cluster_id: hex::encode(b) }).await?;
        }
        contexts.set_keyring(keyring);
        sweep_orphans(&catalogue, &store).await?;
        core.set_ready(true);
    } else {
        // Form or join the cluster in the background; `/health` answers meanwhile and
        // `/health/ready` turns 200 once the node is a member with the cluster's keys.
        let c = cluster.clone();
        let token = cancel.clone();
        let store = store.clone();
        let catalogue2 = catalogue.clone();
        tasks.spawn(async move {
            c.clone().form(master, pending_params, token).await;
            if c.is_ready() {
                // Only once the local catalogue caught up with the leader's.
                if let Some(leader) = c.catalogue.current_leader().await {
                    let idx = if leader == c.node_id {
                        c.catalogue.view.applied_index()
                    } else {
                        c.node_info_of(leader, Duration::from_secs(5))
                            .await
                            .map(|i| i.applied_index)
                            .unwrap_or(u64::MAX)
                    };
                    if idx != u64::MAX && catalogue2.view.wait_applied(idx, Duration::from_secs(30)).await {
                        if let Err(e) = sweep_orphans(&catalogue2, &store).await {
                            tracing::warn!(error = %e, "orphan sweep failed");
                        }
                    }
                }
            }
        });
    }
    tasks.spawn(cluster.clone().reconcile_loop(cancel.clone()));
    for worker in cluster.background_workers(&cancel) {
        tasks.spawn(worker);
    }
    {
        let g = gossip.clone();
        let token = cancel.clone();
        tasks.spawn(async move {
            token.cancelled().await;
            g.leave().await;
        });
    }

    // Background upkeep: text-index commits, access-stat flushes, TTL sweeps.
    {
        let store = store.clone();
        let token = cancel.clone();
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            let mut n: u64 = 0;
            loop {
                tokio::select! {
                    _ = token.cancelled() => break,
                    _ = tick.tick() => {}
                }
                n += 1;
                let s = store.clone();
                let res = tokio::task::spawn_blocking(move || -> loci_storage::Result<u64> {
                    s.commit_text()?;
                    if n % 10 == 0 {
                        s.flush_access_stats()?;
                    }
                    if n % 20 == 0 { s.sweep_expired() } else { Ok(0) }
                })
                .await;
                match res {
                    Ok(Ok(swept)) if swept > 0 => tracing::info!(swept, "expired memories deleted"),
                    Ok(Err(e)) => tracing::warn!(error = %e, "background upkeep failed"),
                    _ => {}
                }
            }
        });
    }
    // Retention sweeps (namespace policies).
    {
        let core = core.clone();
        let token = cancel.clone();
        let every = Duration::from_secs(args.sweep_interval_secs.max(1));
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = token.cancelled() => break,
                    _ = tokio::time::sleep(every) => {}
                }
                if core.is_ready() {
                    if let Err(e) = core.sweep_retention().await {
                        tracing::warn!(error = %e, "retention sweep failed");
                    }
                }
            }
        });
    }

    // The autopilot (deduplication, consolidation) and trash purges of this node's primaries.
    {
        let core = core.clone();
        let token = cancel.clone();
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = token.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                }
                if core.is_ready() {
                    if let Some(run) = core.maintenance().tick().await {
                        tracing::info!(
                            namespaces = run.namespaces,
                            moved = run.duplicates_moved,
                            consolidated = run.memories_consolidated,
                            purged = run.trash_purged,
                            "autopilot pass"
                        );
                    }
                }
            }
        });
    }

    tracing::info!(node_id, %http_addr, %grpc_addr, %cluster_addr, tls = cluster_tls.is_some(), public_tls = public_tls.is_some(), gossip_addr = %gossip_addr, data_dir = %args.data_dir.display(), ready = core.is_ready(), "loci node started");
    if let Some(path) = &args.ready_file {
        let info = serde_json::json!({
            "node_id": node_id,
            "http_addr": http_addr.to_string(),
            "grpc_addr": grpc_addr.to_string(),
            "cluster_addr": cluster_addr.to_string(),
            "gossip_addr": gossip_addr.to_string(),
            "pid": std::process::id(),
        });
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, info.to_string())?;
        std::fs::rename(&tmp, path)?;
    }
    Ok(NodeHandle {
        node_id,
        http_addr,
        grpc_addr,
        cluster_addr,
        gossip_addr,
        data_dir: args.data_dir.clone(),
        core,
        cluster,
        router: app,
        cancel,
        tasks,
    })
}

/// Rows of namespaces the catalogue no longer knows (an erasure interrupted by a crash after the
/// key was destroyed) are unreadable; delete them. Only run with an up-to-date catalogue.
async fn sweep_orphans(catalogue: &Arc<CatalogueNode>, store: &Arc<Store>) -> anyhow::Result<()> {
    let known: std::collections::HashSet<u64> = catalogue.view.read().namespaces.values().map(|n| n.id).collect();
    let s = store.clone();
    let orphans = tokio::task::spawn_blocking(move || -> loci_storage::Result<Vec<u64>> {
        let mut dropped = Vec::new();
        for id in s.stored_namespace_ids()? {
            if !known.contains(&id) {
                s.drop_namespace(id)?;
                dropped.push(id);
            }
        }
        Ok(dropped)
    })
    .await??;
    if !orphans.is_empty() {
        tracing::warn!(count = orphans.len(), "deleted rows of namespaces erased before a crash");
        // This node missed those erasures' purges: its Raft log may still hold their wrapped
        // keys until it snapshots past them and purges.
        if let Err(e) = catalogue.purge_history().await {
            tracing::warn!(error = %e, "could not purge the catalogue history after the orphan sweep");
        }
    }
    Ok(())
}
