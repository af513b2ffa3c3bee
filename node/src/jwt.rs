//! The node's JWT settings (`LOCI_JWT_*`) into a verifier, and the JWKS refresh task.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use loci_service::jwt::{GrantPolicy, Jwks, JwksSource, JwtConfig, JwtVerifier};
use loci_service::keys::mint::{check_pattern, parse_scope};

use crate::config::JwtArgs;

fn list(s: &str) -> Vec<String> {
    s.split(',').map(str::trim).filter(|x| !x.is_empty()).map(str::to_string).collect()
}

fn scope(name: &str, what: &str) -> anyhow::Result<loci_raft::catalogue::Scope> {
    let s = parse_scope(name).map_err(|e| anyhow::anyhow!("{what}: {}", e.message))?;
    if s == loci_raft::catalogue::Scope::SuperAdmin {
        bail!("{what}: a token can never hold super_admin");
    }
    Ok(s)
}

/// The verifier the settings describe (None when no issuer is set), with its key set loaded
/// when it is a file. A URL that cannot be fetched yet is retried by the refresh task; tokens
/// answer 503 until it loads, API keys work meanwhile.
pub async fn verifier(a: &JwtArgs) -> anyhow::Result<Option<Arc<JwtVerifier>>> {
    let Some(issuer) = a.jwt_issuer.clone().filter(|s| !s.trim().is_empty()) else {
        if a.jwt_jwks.is_some() || !a.jwt_audience.is_empty() {
            bail!("LOCI_JWT_JWKS and LOCI_JWT_AUDIENCE need LOCI_JWT_ISSUER (the issuer whose tokens to take)");
        }
        return Ok(None);
    };
    let audiences = list(&a.jwt_audience);
    if audiences.is_empty() {
        bail!("LOCI_JWT_ISSUER needs LOCI_JWT_AUDIENCE: the audience (aud) tokens must be issued for");
    }
    let Some(jwks) = &a.jwt_jwks else {
        bail!("LOCI_JWT_ISSUER needs LOCI_JWT_JWKS: a JWKS file or URL with the issuer's public keys");
    };
    let source = JwksSource::parse(jwks).map_err(anyhow::Error::msg)?;
    let algorithms = JwtConfig::parse_algorithms(&a.jwt_algorithms).map_err(anyhow::Error::msg)?;
    let allowed = list(&a.jwt_allowed_namespaces)
        .iter()
        .map(|p| check_pattern(p).map_err(|e| anyhow::anyhow!("LOCI_JWT_ALLOWED_NAMESPACES: {}", e.message)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if allowed.is_empty() {
        bail!("LOCI_JWT_ALLOWED_NAMESPACES is empty: tokens could be granted nothing");
    }
    if let Some(t) = &a.jwt_subject_namespace {
        if !t.contains("{sub}") {
            bail!("LOCI_JWT_SUBJECT_NAMESPACE must contain {{sub}} (every subject would share one namespace)");
        }
        check_pattern(&t.replace("{sub}", "x"))
            .map_err(|e| anyhow::anyhow!("LOCI_JWT_SUBJECT_NAMESPACE: {}", e.message))?;
    }
    if a.jwt_grants_claim.trim().is_empty() {
        bail!("LOCI_JWT_GRANTS_CLAIM is empty");
    }
    let config = JwtConfig {
        issuer,
        audiences,
        algorithms,
        leeway_secs: a.jwt_leeway_secs,
        policy: GrantPolicy {
            claim: a.jwt_grants_claim.trim().to_string(),
            subject_namespace: a.jwt_subject_namespace.clone(),
            subject_scope: scope(&a.jwt_subject_scope, "LOCI_JWT_SUBJECT_SCOPE")?,
            allowed,
            max_scope: scope(&a.jwt_max_scope, "LOCI_JWT_MAX_SCOPE")?,
        },
    };
    let keys = Arc::new(Jwks::new(source.clone(), Duration::from_secs(a.jwt_jwks_refresh_secs.max(1))));
    match (&source, keys.reload().await) {
        (_, Ok(_)) => {}
        (JwksSource::File(_), Err(e)) => return Err(anyhow::Error::msg(e)).context("LOCI_JWT_JWKS"),
        (JwksSource::Url(_), Err(e)) => {
            tracing::warn!(error = %e, "the JWKS is not reachable yet; tokens are refused (503) until it loads");
            keys.ask_refetch();
        }
    }
    tracing::info!(issuer = %config.issuer, audiences = ?config.audiences, "JWT bearer tokens accepted");
    Ok(Some(Arc::new(JwtVerifier::new(config, keys))))
}
