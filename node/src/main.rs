use clap::Parser;
use loci_node::config::{AuditCommand, Cli, Command, ModelCommand, prepare_environment};

/// jemalloc (`--features jemalloc`), as TiKV runs it; the default is the system allocator
/// (see docs/performance.md, "The primary's memory while a follower lags", for both measured).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if let Err(e) = prepare_environment(&args) {
        eprintln!("error: {e:#}");
        return std::process::ExitCode::from(2);
    }
    let cli = Cli::parse();
    if let Command::Model(m) = &cli.command {
        let res = match m {
            ModelCommand::Fetch { dest, data_dir } => {
                let dest = dest
                    .clone()
                    .or_else(|| std::env::var_os("LOCI_EMBEDDING_MODEL_DIR").map(Into::into))
                    .unwrap_or_else(|| loci_node::model::fetch_dir(data_dir));
                loci_node::model::fetch(&dest)
            }
            ModelCommand::Verify { dir } => loci_storage::minilm::verify_dir(dir)
                .map(|_| format!("{}: all-MiniLM-L6-v2 verified", dir.display()))
                .map_err(|e| anyhow::anyhow!("{e}")),
        };
        return match res {
            Ok(msg) => {
                println!("{msg}");
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    if let Command::Audit(AuditCommand::Verify { file, url, api_key, api_key_file }) = &cli.command {
        let (what, verdict) = match (file, url) {
            (Some(file), _) => {
                (file.display().to_string(), loci_service::audit::verify(file).map_err(anyhow::Error::from))
            }
            (None, Some(url)) => {
                (url.clone(), loci_node::cli::verify_audit_url(url, api_key.as_deref(), api_key_file.as_deref()))
            }
            (None, None) => (String::new(), Err(anyhow::anyhow!("give an audit log file or --url"))),
        };
        return match verdict {
            Ok(loci_service::audit::Verdict::Intact { lines }) => {
                println!("intact: {lines} lines, hash chain verified");
                std::process::ExitCode::SUCCESS
            }
            Ok(loci_service::audit::Verdict::Broken { line, reason }) => {
                println!("BROKEN at line {line}: {reason}");
                std::process::ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("error: cannot read {what}: {e:#}");
                std::process::ExitCode::from(2)
            }
        };
    }
    if let Command::Health { url, timeout_secs } = &cli.command {
        return match loci_node::probe::probe(url, std::time::Duration::from_secs(*timeout_secs)) {
            Ok(code) if (200..300).contains(&code) => std::process::ExitCode::SUCCESS,
            Ok(code) => {
                eprintln!("{url}: {code}");
                std::process::ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve(*args).await,
            Command::Audit(_) | Command::Model(_) | Command::Health { .. } => Ok(()),
            Command::Cluster { conn, cmd } => loci_node::cli::cluster(conn, cmd).await,
            Command::Ns { conn, cmd } => loci_node::cli::ns(conn, cmd).await,
            Command::Keys { conn, cmd } => loci_node::cli::keys(conn, cmd).await,
            Command::Backup { conn, cmd } => loci_node::backup_cli::backup(conn, cmd).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(args: loci_node::ServeArgs) -> anyhow::Result<()> {
    loci_node::logging::init(args.log_format);
    let node = loci_node::start(args).await?;
    let token = node.cancel_token();
    tokio::spawn(async move {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot install the SIGTERM handler");
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received, shutting down"),
        }
        token.cancel();
    });
    node.run_until_stopped().await
}
