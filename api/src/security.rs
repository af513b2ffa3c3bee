//! HTTP hardening (security headers, CORS) and optional content screening.
//!
//! The headers and their settings follow Dakera's security page (seed 002): HSTS, X-Frame-Options,
//! X-Content-Type-Options, X-XSS-Protection, Referrer-Policy and a Content-Security-Policy from one
//! of three presets or from raw directives.

use axum::http::{HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// `LOCI_SECURITY_PRESET` (or a preset name in `LOCI_CSP_DIRECTIVES`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    /// CSP `default-src 'none'; frame-ancestors 'none'` and HSTS: API-only deployments.
    Default,
    /// CSP and HSTS disabled: development and testing.
    Permissive,
    /// A restrictive CSP, HSTS with `preload`, `Cache-Control: no-store`, `Permissions-Policy`.
    Strict,
}

impl Preset {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "default" => Some(Preset::Default),
            "permissive" => Some(Preset::Permissive),
            "strict" => Some(Preset::Strict),
            _ => None,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Preset::Default => "default",
            Preset::Permissive => "permissive",
            Preset::Strict => "strict",
        }
    }

    /// The preset's Content-Security-Policy (`None`: no CSP header).
    pub fn csp(&self) -> Option<&'static str> {
        match self {
            Preset::Default => Some(DEFAULT_CSP),
            Preset::Permissive => None,
            Preset::Strict => Some(STRICT_CSP),
        }
    }
}

pub const DEFAULT_CSP: &str = "default-src 'none'; frame-ancestors 'none'";
pub const STRICT_CSP: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'; sandbox";
pub const DEFAULT_HSTS_MAX_AGE: u64 = 31_536_000;

/// The security settings as configured (flags / `LOCI_*` / `DAKERA_*`), before validation.
#[derive(Clone, Debug)]
pub struct SecuritySettings {
    /// `LOCI_SECURITY_PRESET`: default, permissive or strict.
    pub preset: String,
    /// `LOCI_CSP_ENABLED` / `DAKERA_CSP_ENABLED`; unset: the preset decides.
    pub csp_enabled: Option<bool>,
    /// `LOCI_CSP_DIRECTIVES` / `DAKERA_CSP_DIRECTIVES`: a preset name or raw directives.
    pub csp_directives: Option<String>,
    /// `LOCI_HSTS_ENABLED` / `DAKERA_HSTS_ENABLED`; unset: the preset decides (on but permissive).
    pub hsts_enabled: Option<bool>,
    /// `LOCI_HSTS_MAX_AGE` / `DAKERA_HSTS_MAX_AGE`, seconds.
    pub hsts_max_age: u64,
    /// `LOCI_FRAME_OPTIONS` / `DAKERA_FRAME_OPTIONS`: DENY, SAMEORIGIN or a custom value.
    pub frame_options: String,
    /// `LOCI_CORS_ORIGINS` / `DAKERA_CORS_ORIGINS`, comma-separated.
    pub cors_origins: String,
    /// `LOCI_CORS_CREDENTIALS` / `DAKERA_CORS_CREDENTIALS`.
    pub cors_credentials: bool,
}

impl Default for SecuritySettings {
    fn default() -> Self {
        SecuritySettings {
            preset: "default".into(),
            csp_enabled: None,
            csp_directives: None,
            hsts_enabled: None,
            hsts_max_age: DEFAULT_HSTS_MAX_AGE,
            frame_options: "DENY".into(),
            cors_origins: String::new(),
            cors_credentials: false,
        }
    }
}

/// The resolved HTTP security configuration.
#[derive(Clone, Debug)]
pub struct HttpSecurity {
    pub preset: Preset,
    /// The Content-Security-Policy sent, if any.
    pub csp: Option<String>,
    /// The Strict-Transport-Security value sent, if any.
    pub hsts: Option<String>,
    pub frame_options: String,
    pub cors_origins: Vec<String>,
    pub cors_credentials: bool,
}

impl Default for HttpSecurity {
    fn default() -> Self {
        HttpSecurity::from_settings(&SecuritySettings::default()).expect("the defaults are valid")
    }
}

impl HttpSecurity {
    /// Resolve and check the settings; an error refuses the start (its text names the setting).
    pub fn from_settings(s: &SecuritySettings) -> Result<Self, String> {
        let mut preset = Preset::parse(&s.preset)
            .ok_or_else(|| format!("LOCI_SECURITY_PRESET '{}' is not default, permissive or strict", s.preset))?;
        let mut raw_csp = None;
        if let Some(d) = s.csp_directives.as_deref().map(str::trim).filter(|d| !d.is_empty()) {
            match Preset::parse(d) {
                Some(p) => {
                    let explicit = Preset::parse(&s.preset).filter(|named| *named != Preset::Default);
                    if let Some(e) = explicit.filter(|e| *e != p) {
                        return Err(format!(
                            "LOCI_SECURITY_PRESET '{}' and LOCI_CSP_DIRECTIVES (DAKERA_CSP_DIRECTIVES) '{}' name different presets",
                            e.as_str(),
                            p.as_str()
                        ));
                    }
                    preset = p;
                }
                None => {
                    if HeaderValue::from_str(d).is_err() {
                        return Err(
                            "LOCI_CSP_DIRECTIVES (DAKERA_CSP_DIRECTIVES) is not a valid header value (control characters?)"
                                .into(),
                        );
                    }
                    raw_csp = Some(d.to_string());
                }
            }
        }
        let csp_on = s.csp_enabled.unwrap_or(preset != Preset::Permissive);
        // CSP switched on explicitly under `permissive` falls back to the default preset's policy.
        let csp = csp_on.then(|| raw_csp.unwrap_or_else(|| preset.csp().unwrap_or(DEFAULT_CSP).to_string()));
        let hsts_on = s.hsts_enabled.unwrap_or(preset != Preset::Permissive);
        let hsts = hsts_on.then(|| {
            let mut v = format!("max-age={}; includeSubDomains", s.hsts_max_age);
            if preset == Preset::Strict {
                v.push_str("; preload");
            }
            v
        });
        let fo = s.frame_options.trim();
        let frame_options = match fo.to_ascii_uppercase().as_str() {
            "DENY" | "SAMEORIGIN" => fo.to_ascii_uppercase(),
            _ if fo.is_empty() || HeaderValue::from_str(fo).is_err() => {
                return Err(format!(
                    "LOCI_FRAME_OPTIONS (DAKERA_FRAME_OPTIONS) '{}' must be DENY, SAMEORIGIN or a valid header value",
                    fo.escape_debug()
                ));
            }
            _ => fo.to_string(),
        };
        let cors_origins: Vec<String> =
            s.cors_origins.split(',').map(str::trim).filter(|o| !o.is_empty()).map(str::to_string).collect();
        let http =
            HttpSecurity { preset, csp, hsts, frame_options, cors_origins, cors_credentials: s.cors_credentials };
        http.validate()?;
        Ok(http)
    }

    /// Refuse configurations that would be unsafe (checked at start-up).
    pub fn validate(&self) -> Result<(), String> {
        if self.cors_credentials && self.cors_origins.iter().any(|o| o == "*") {
            return Err("LOCI_CORS_ORIGINS (DAKERA_CORS_ORIGINS) '*' together with LOCI_CORS_CREDENTIALS (DAKERA_CORS_CREDENTIALS) true would let any web site send requests with a user's credentials; list the trusted origins or turn credentials off".into());
        }
        for o in &self.cors_origins {
            if o != "*" && !(o.starts_with("http://") || o.starts_with("https://")) {
                return Err(format!(
                    "LOCI_CORS_ORIGINS (DAKERA_CORS_ORIGINS) entry '{}' must be an http(s) origin or '*'",
                    o.escape_debug()
                ));
            }
            if HeaderValue::from_str(o).is_err() {
                return Err(format!("LOCI_CORS_ORIGINS entry '{}' is not a valid header value", o.escape_debug()));
            }
        }
        Ok(())
    }

    /// Headers added to every response.
    pub fn headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        let mut v = vec![
            ("x-frame-options", self.frame_options.clone()),
            ("x-content-type-options", "nosniff".to_string()),
            ("x-xss-protection", "1; mode=block".to_string()),
            ("referrer-policy", "strict-origin-when-cross-origin".to_string()),
            ("cross-origin-opener-policy", "same-origin".to_string()),
        ];
        if let Some(h) = &self.hsts {
            v.push(("strict-transport-security", h.clone()));
        }
        if let Some(c) = &self.csp {
            v.push(("content-security-policy", c.clone()));
        }
        if self.preset == Preset::Strict {
            v.push(("cache-control", "no-store".to_string()));
            v.push(("permissions-policy", "camera=(), microphone=(), geolocation=(), interest-cohort=()".to_string()));
        }
        v.into_iter()
            .filter_map(|(k, val)| Some((HeaderName::from_static(k), HeaderValue::from_str(&val).ok()?)))
            .collect()
    }

    pub fn cors(&self) -> Option<CorsLayer> {
        if self.cors_origins.is_empty() {
            return None;
        }
        let mut layer = CorsLayer::new()
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE, Method::OPTIONS])
            .allow_headers([
                axum::http::header::AUTHORIZATION,
                axum::http::header::CONTENT_TYPE,
                HeaderName::from_static("x-api-key"),
            ])
            // Browser clients may read the rate-limit answer and the request id.
            .expose_headers([
                axum::http::header::RETRY_AFTER,
                HeaderName::from_static("x-ratelimit-limit"),
                HeaderName::from_static("x-ratelimit-remaining"),
                HeaderName::from_static("x-ratelimit-reset"),
                HeaderName::from_static("x-request-id"),
            ]);
        layer = if self.cors_origins.iter().any(|o| o == "*") {
            layer.allow_origin(AllowOrigin::any())
        } else {
            let list: Vec<HeaderValue> =
                self.cors_origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
            layer.allow_origin(list)
        };
        if self.cors_credentials {
            layer = layer.allow_credentials(true);
        }
        Some(layer)
    }
}

/// Content screening now lives in the service (it is a memory policy decision).
pub use loci_service::screening::{FAMILIES, ScreeningMode, screen};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_and_their_overrides() {
        let with = |f: &dyn Fn(&mut SecuritySettings)| {
            let mut s = SecuritySettings::default();
            f(&mut s);
            HttpSecurity::from_settings(&s)
        };
        let d = with(&|_| {}).unwrap();
        assert_eq!(d.csp.as_deref(), Some(DEFAULT_CSP));
        assert_eq!(d.hsts.as_deref(), Some("max-age=31536000; includeSubDomains"));
        let p = with(&|s| s.csp_directives = Some("Permissive".into())).unwrap();
        assert_eq!((p.csp, p.hsts), (None, None));
        let p = with(&|s| {
            s.preset = "permissive".into();
            s.hsts_enabled = Some(true);
        })
        .unwrap();
        assert!(p.csp.is_none() && p.hsts.is_some());
        assert!(
            with(&|s| {
                s.preset = "strict".into();
                s.csp_directives = Some("permissive".into());
            })
            .is_err()
        );
        assert!(with(&|s| s.frame_options = " ".into()).is_err());
        assert!(with(&|s| s.csp_directives = Some("default-src 'none';\r\nX: y".into())).is_err());
        assert_eq!(with(&|s| s.frame_options = "sameorigin".into()).unwrap().frame_options, "SAMEORIGIN");
    }

    #[test]
    fn wildcard_cors_with_credentials_is_refused() {
        let s = HttpSecurity { cors_origins: vec!["*".into()], cors_credentials: true, ..Default::default() };
        assert!(s.validate().is_err());
        let s = HttpSecurity {
            cors_origins: vec!["https://app.example".into()],
            cors_credentials: true,
            ..Default::default()
        };
        assert!(s.validate().is_ok());
    }
}
