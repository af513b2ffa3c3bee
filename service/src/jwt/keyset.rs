//! The issuer's signing keys (a JWKS), from a file or a URL, cached and refreshed.
//!
//! Verification never waits on IO: it reads the current key set. A background task
//! ([`Jwks::run`]) reloads the set every refresh interval (a file only when it changed) and
//! soon after a token names a key id the set does not hold (an issuer rotating its keys), at
//! most once per [`MIN_REFETCH`]. A reload that fails keeps the previous set.
//!
//! Only asymmetric signing keys are taken (RSA, EC, OKP with `use` absent or `sig`): a
//! symmetric (`oct`) key in the set is ignored, so a token signed with HMAC over a public key
//! (the classic algorithm confusion) has no key to verify against.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;

/// The largest JWKS document read.
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// The shortest time between two fetches asked for by unknown key ids.
pub const MIN_REFETCH: Duration = Duration::from_secs(10);
/// How long a fetch from a URL may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the key set comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum JwksSource {
    File(PathBuf),
    /// `https://…`, or `http://` to a loopback address.
    Url(String),
}

impl JwksSource {
    /// A path or a URL as configured; a plain-HTTP URL must name a loopback host.
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(rest) = s.strip_prefix("http://") {
            let host = rest.split(['/', '?']).next().unwrap_or("");
            let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
            if !matches!(host, "localhost" | "127.0.0.1" | "[::1]") {
                return Err(format!("the JWKS URL '{s}' must use https (plain http only to a loopback address)"));
            }
            Ok(JwksSource::Url(s.to_string()))
        } else if s.starts_with("https://") {
            Ok(JwksSource::Url(s.to_string()))
        } else if s.contains("://") {
            Err(format!("the JWKS source '{s}' is neither a file nor an http(s) URL"))
        } else {
            Ok(JwksSource::File(PathBuf::from(s)))
        }
    }
}

/// Which algorithms a key can verify.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Family {
    Rsa,
    Ec,
    Okp,
}

fn family_of(alg: Algorithm) -> Option<Family> {
    use Algorithm::*;
    match alg {
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => Some(Family::Rsa),
        ES256 | ES384 => Some(Family::Ec),
        EdDSA => Some(Family::Okp),
        HS256 | HS384 | HS512 => None,
    }
}

/// Is `alg` one a token may be verified with (asymmetric)?
pub fn is_asymmetric(alg: Algorithm) -> bool {
    family_of(alg).is_some()
}

/// One verification key of the set.
pub struct VerifyKey {
    pub kid: Option<String>,
    /// The key's own `alg`, if the set names one.
    alg: Option<String>,
    family: Family,
    pub key: DecodingKey,
}

impl VerifyKey {
    /// May this key verify a token signed with `alg`?
    pub fn fits(&self, alg: Algorithm) -> bool {
        family_of(alg) == Some(self.family) && self.alg.as_ref().is_none_or(|a| *a == format!("{alg:?}"))
    }
}

/// A parsed key set.
#[derive(Default)]
pub struct KeySet {
    pub keys: Vec<VerifyKey>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.keys.iter().map(|k| (&k.kid, k.family))).finish()
    }
}

impl KeySet {
    /// Parse a JWKS document, keeping its asymmetric signing keys; refused when none is left.
    pub fn parse(text: &[u8]) -> Result<KeySet, String> {
        let set: JwkSet = serde_json::from_slice(text).map_err(|e| format!("not a JWKS document: {e}"))?;
        let mut keys = Vec::new();
        for jwk in &set.keys {
            if let Some(k) = Self::key(jwk)? {
                keys.push(k);
            }
        }
        if keys.is_empty() {
            return Err("the JWKS holds no RSA, EC or OKP signing key".into());
        }
        Ok(KeySet { keys })
    }

    fn key(jwk: &Jwk) -> Result<Option<VerifyKey>, String> {
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))) {
            return Ok(None);
        }
        let family = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Family::Rsa,
            AlgorithmParameters::EllipticCurve(_) => Family::Ec,
            AlgorithmParameters::OctetKeyPair(_) => Family::Okp,
            AlgorithmParameters::OctetKey(_) => return Ok(None),
        };
        let key = DecodingKey::from_jwk(jwk)
            .map_err(|e| format!("key {:?} of the JWKS is unusable: {e}", jwk.common.key_id))?;
        let alg = jwk.common.key_algorithm.map(|a| format!("{a:?}"));
        Ok(Some(VerifyKey { kid: jwk.common.key_id.clone(), alg, family, key }))
    }

    /// The key a token's header names: by `kid`, or the only key that fits when it names none.
    pub fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<&VerifyKey> {
        match kid {
            Some(kid) => self.keys.iter().find(|k| k.kid.as_deref() == Some(kid) && k.fits(alg)),
            None => {
                let mut fitting = self.keys.iter().filter(|k| k.fits(alg));
                let first = fitting.next()?;
                fitting.next().is_none().then_some(first)
            }
        }
    }
}

/// The cached key set of one issuer and what keeps it fresh.
pub struct Jwks {
    pub source: JwksSource,
    pub refresh: Duration,
    current: RwLock<Option<Arc<KeySet>>>,
    /// The file's modification time at the last load.
    file_mtime: Mutex<Option<SystemTime>>,
    last_fetch: Mutex<Option<Instant>>,
    wake: Notify,
    client: reqwest::Client,
}

impl Jwks {
    pub fn new(source: JwksSource, refresh: Duration) -> Self {
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Jwks {
            source,
            refresh,
            current: RwLock::new(None),
            file_mtime: Mutex::new(None),
            last_fetch: Mutex::new(None),
            wake: Notify::new(),
            client,
        }
    }

    /// The key set now, if one was ever loaded.
    pub fn current(&self) -> Option<Arc<KeySet>> {
        self.current.read().clone()
    }

    /// A token named a key this set does not hold: ask the refresh task to look again.
    pub fn ask_refetch(&self) {
        self.wake.notify_one();
    }

    /// Load the set now; on failure the previous set stays. `Ok(false)`: a file not changed.
    pub async fn reload(&self) -> Result<bool, String> {
        *self.last_fetch.lock() = Some(Instant::now());
        let text = match &self.source {
            JwksSource::File(path) => {
                let mtime = std::fs::metadata(path)
                    .and_then(|m| m.modified())
                    .map_err(|e| format!("cannot read the JWKS file {}: {e}", path.display()))?;
                if self.current.read().is_some() && *self.file_mtime.lock() == Some(mtime) {
                    return Ok(false);
                }
                let text =
                    std::fs::read(path).map_err(|e| format!("cannot read the JWKS file {}: {e}", path.display()))?;
                if text.len() > MAX_JWKS_BYTES {
                    return Err(format!("the JWKS file is larger than {MAX_JWKS_BYTES} bytes"));
                }
                *self.file_mtime.lock() = Some(mtime);
                text
            }
            JwksSource::Url(url) => self.fetch(url).await?,
        };
        let set = KeySet::parse(&text)?;
        tracing::info!(keys = set.keys.len(), source = ?self.source, "JWKS loaded");
        *self.current.write() = Some(Arc::new(set));
        Ok(true)
    }

    async fn fetch(&self, url: &str) -> Result<Vec<u8>, String> {
        let mut resp = self.client.get(url).send().await.map_err(|e| format!("JWKS fetch from {url} failed: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("JWKS fetch from {url} answered {}", resp.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| format!("JWKS fetch from {url} failed: {e}"))? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(format!("the JWKS at {url} is larger than {MAX_JWKS_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// The refresh loop: every `refresh`, and after an unknown key id (at most once per
    /// [`MIN_REFETCH`]). Runs until the task is dropped.
    pub async fn run(self: Arc<Self>) {
        loop {
            let woken = tokio::select! {
                _ = tokio::time::sleep(self.refresh) => false,
                _ = self.wake.notified() => true,
            };
            if woken {
                let since = self.last_fetch.lock().map(|t| t.elapsed());
                if let Some(since) = since.filter(|s| *s < MIN_REFETCH) {
                    tokio::time::sleep(MIN_REFETCH - since).await;
                }
            }
            if let Err(e) = self.reload().await {
                tracing::warn!(error = %e, "JWKS refresh failed; keeping the previous keys");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_files_or_safe_urls() {
        assert_eq!(JwksSource::parse("/etc/loci/jwks.json").unwrap(), JwksSource::File("/etc/loci/jwks.json".into()));
        assert!(matches!(JwksSource::parse("https://idp.example/.well-known/jwks.json"), Ok(JwksSource::Url(_))));
        assert!(matches!(JwksSource::parse("http://127.0.0.1:8080/jwks"), Ok(JwksSource::Url(_))));
        assert!(matches!(JwksSource::parse("http://localhost/jwks"), Ok(JwksSource::Url(_))));
        assert!(JwksSource::parse("http://idp.example/jwks").is_err());
        assert!(JwksSource::parse("http://127.0.0.1.evil.example/jwks").is_err());
        assert!(JwksSource::parse("ftp://x/jwks").is_err());
    }

    // An Ed25519 public key (RFC 8037, appendix A.2) and an HMAC secret.
    const OKP: &str = r#"{"kty":"OKP","crv":"Ed25519","kid":"ed","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#;
    const OCT: &str = r#"{"kty":"oct","kid":"hmac","k":"c2VjcmV0"}"#;

    #[test]
    fn only_asymmetric_signing_keys_are_kept() {
        let set = KeySet::parse(format!(r#"{{"keys":[{OKP},{OCT}]}}"#).as_bytes()).unwrap();
        assert_eq!(set.keys.len(), 1);
        assert!(set.find(Some("ed"), Algorithm::EdDSA).is_some());
        assert!(set.find(Some("hmac"), Algorithm::HS256).is_none());
        assert!(set.find(Some("ed"), Algorithm::HS256).is_none(), "an HMAC token cannot use a public key");
        assert!(set.find(Some("ed"), Algorithm::RS256).is_none());
        assert!(set.find(None, Algorithm::EdDSA).is_some(), "one fitting key: no kid needed");
        assert!(set.find(Some("other"), Algorithm::EdDSA).is_none());
        assert!(KeySet::parse(format!(r#"{{"keys":[{OCT}]}}"#).as_bytes()).is_err());
        assert!(KeySet::parse(b"{}").is_err());
        assert!(KeySet::parse(b"not json").is_err());
        let enc = OKP.replace(r#""kid":"ed""#, r#""kid":"ed","use":"enc""#);
        assert!(KeySet::parse(format!(r#"{{"keys":[{enc}]}}"#).as_bytes()).is_err());
    }

    #[test]
    fn a_key_with_its_own_alg_fits_only_that_alg() {
        let two = OKP.replace(r#""kid":"ed""#, r#""kid":"ed2","alg":"EdDSA""#);
        let set = KeySet::parse(format!(r#"{{"keys":[{OKP},{two}]}}"#).as_bytes()).unwrap();
        assert!(set.find(None, Algorithm::EdDSA).is_none(), "two fitting keys and no kid: ambiguous");
        assert!(set.find(Some("ed2"), Algorithm::EdDSA).is_some());
    }
}
