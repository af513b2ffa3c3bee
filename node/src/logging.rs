//! Structured logs: `LOCI_LOG` (an env-filter, default `info`) and `--log-format json|text`.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_env("LOCI_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,openraft=warn,tantivy=warn,hnsw_rs=warn"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Text logs with an explicit filter (tests).
pub fn init_with_filter(filter: &str) {
    let _ = tracing_subscriber::fmt().with_env_filter(EnvFilter::new(filter)).with_writer(std::io::stderr).try_init();
}
