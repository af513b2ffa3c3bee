//! JWT / OIDC bearer tokens next to API keys (seed 004: "OAuth 2.0 / JWT / API key").
//!
//! A request's bearer credential that is a JWS compact token (three base64url parts, the first
//! a JOSE header) is verified here when the operator configured an issuer: the signature with
//! the issuer's JWKS ([`keyset`]), then `iss`, `aud`, `exp` and `nbf` (with a leeway), then the
//! claims are mapped to namespace grants ([`claims`]). The catalogue's deny list
//! ([`loci_raft::catalogue::TokenDenial`], checked in [`crate::access::authenticate`]) revokes
//! tokens by `jti`, signing key `kid` or subject before they expire.

pub mod claims;
pub mod denials;
pub mod keyset;

use std::sync::Arc;

use jsonwebtoken::{Algorithm, Validation};

use crate::access::Principal;
use crate::error::{ServiceError, ServiceResult};
pub use claims::{Claims, GrantPolicy, invalid_token};
pub use keyset::{Jwks, JwksSource, KeySet};

/// The longest token read (a header line's worth).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The operator's token settings (`LOCI_JWT_*`).
#[derive(Clone, Debug)]
pub struct JwtConfig {
    /// `iss` every token must carry.
    pub issuer: String,
    /// Accepted `aud` values (a token's `aud` must hold one of them).
    pub audiences: Vec<String>,
    /// Accepted signature algorithms (asymmetric only).
    pub algorithms: Vec<Algorithm>,
    /// Seconds of clock skew allowed on `exp` and `nbf`.
    pub leeway_secs: u64,
    pub policy: GrantPolicy,
}

impl JwtConfig {
    /// Parse an algorithm list (`RS256,ES256,EdDSA`); HMAC and unknown names are refused.
    pub fn parse_algorithms(s: &str) -> Result<Vec<Algorithm>, String> {
        let mut out = Vec::new();
        for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let alg: Algorithm = name.parse().map_err(|_| format!("unknown JWT algorithm '{name}'"))?;
            if !keyset::is_asymmetric(alg) {
                return Err(format!(
                    "JWT algorithm '{name}' is symmetric: tokens are verified with the issuer's public keys only"
                ));
            }
            if !out.contains(&alg) {
                out.push(alg);
            }
        }
        if out.is_empty() {
            return Err("no JWT algorithm allowed".into());
        }
        Ok(out)
    }
}

/// Does this credential look like a JWS compact token (and not like an API key)?
pub fn looks_like_jwt(secret: &str) -> bool {
    secret.starts_with("eyJ")
        && secret.len() <= MAX_TOKEN_BYTES
        && secret.split('.').count() == 3
        && secret.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A verified token.
#[derive(Debug)]
pub struct Verified {
    pub claims: Claims,
    /// The signing key's id, if the header named one.
    pub kid: Option<String>,
}

/// Verifies tokens of one issuer.
pub struct JwtVerifier {
    pub config: JwtConfig,
    pub jwks: Arc<Jwks>,
}

impl JwtVerifier {
    pub fn new(config: JwtConfig, jwks: Arc<Jwks>) -> Self {
        JwtVerifier { config, jwks }
    }

    /// Check a token's signature and registered claims at the current time.
    pub fn verify(&self, token: &str) -> ServiceResult<Verified> {
        use jsonwebtoken::errors::ErrorKind;
        let header = jsonwebtoken::decode_header(token).map_err(|e| invalid_token(format!("malformed header: {e}")))?;
        if !self.config.algorithms.contains(&header.alg) {
            return Err(invalid_token(format!("algorithm {:?} is not accepted", header.alg)));
        }
        let Some(set) = self.jwks.current() else {
            return Err(ServiceError::unavailable("the token issuer's signing keys are not loaded yet; retry"));
        };
        let Some(key) = set.find(header.kid.as_deref(), header.alg) else {
            self.jwks.ask_refetch();
            return Err(invalid_token(match &header.kid {
                Some(kid) => format!("no signing key '{}' for {:?}", crate::validate::printable(kid), header.alg),
                None => format!("the token names no key id and no single key fits {:?}", header.alg),
            }));
        };
        let mut v = Validation::new(header.alg);
        v.set_issuer(&[&self.config.issuer]);
        v.set_audience(&self.config.audiences);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v.leeway = self.config.leeway_secs;
        v.validate_exp = true;
        v.validate_nbf = true;
        let data = jsonwebtoken::decode::<Claims>(token, &key.key, &v).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => {
                ServiceError::new(crate::error::StatusCode::UNAUTHORIZED, "TOKEN_EXPIRED", "the token has expired")
            }
            ErrorKind::ImmatureSignature => invalid_token("the token is not valid yet (nbf)"),
            ErrorKind::InvalidSignature => invalid_token("bad signature"),
            ErrorKind::InvalidAudience => invalid_token("wrong audience"),
            ErrorKind::InvalidIssuer => invalid_token("wrong issuer"),
            ErrorKind::MissingRequiredClaim(c) => invalid_token(format!("the '{c}' claim is required")),
            other => invalid_token(format!("{other:?}")),
        })?;
        Ok(Verified { claims: data.claims, kid: header.kid })
    }

    /// The principal of a verified token (its grants under the operator's policy).
    pub fn principal(&self, v: &Verified) -> ServiceResult<Principal> {
        claims::principal(&v.claims, &self.config.policy)
    }
}
