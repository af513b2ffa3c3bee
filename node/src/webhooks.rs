//! The webhook settings of `loci serve`.

use std::time::Duration;

use loci_service::webhooks::WebhookConfig;
use loci_service::webhooks::target::TargetPolicy;

use crate::config::WebhookArgs;

pub fn config(a: &WebhookArgs) -> anyhow::Result<WebhookConfig> {
    let allowed = a
        .webhook_allowed_cidrs
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<ipnet::IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|e| anyhow::anyhow!("LOCI_WEBHOOK_ALLOWED_CIDRS: {s:?} is not a range: {e}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if a.webhook_max_attempts == 0 {
        anyhow::bail!("LOCI_WEBHOOK_MAX_ATTEMPTS must be at least 1");
    }
    Ok(WebhookConfig {
        policy: TargetPolicy { allow_private: a.webhook_allow_private, allowed },
        max_attempts: a.webhook_max_attempts,
        retry_base: Duration::from_millis(a.webhook_retry_base_ms.max(1)),
        queue: a.webhook_queue.max(1),
        timeout: Duration::from_secs(a.webhook_timeout_secs.max(1)),
        ..WebhookConfig::default()
    })
}
