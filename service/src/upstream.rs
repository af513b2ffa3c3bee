//! What the OpenAI-compatible embedder and extractor share: a blocking HTTP client built on
//! first use, one JSON POST with an optional bearer key, and retries with backoff.

use std::time::Duration;

use serde_json::Value;

/// A blocking client, built on first use: it owns a runtime and must not be created or dropped
/// on an async worker thread (both callers run on the blocking pool or the extraction worker).
#[derive(Default)]
pub struct LazyClient(std::sync::OnceLock<reqwest::blocking::Client>);

impl LazyClient {
    pub fn get(&self, timeout: Duration) -> &reqwest::blocking::Client {
        self.0.get_or_init(|| {
            reqwest::blocking::Client::builder()
                .timeout(timeout)
                .connect_timeout(Duration::from_secs(2))
                .build()
                .unwrap_or_else(|_| reqwest::blocking::Client::new())
        })
    }
}

/// POST `body` to `url` and read the JSON answer; the error names the URL, and a non-2xx
/// answer's status and first 300 characters.
pub fn post_json(
    client: &reqwest::blocking::Client,
    url: &str,
    api_key: Option<&str>,
    body: &Value,
) -> Result<Value, String> {
    let mut req = client.post(url).json(body);
    if let Some(k) = api_key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().map_err(|e| format!("{url}: {e}"))?;
    let status = resp.status();
    if !status.is_success() {
        let text = resp.text().unwrap_or_default();
        return Err(format!("{url} answered {status}: {}", text.chars().take(300).collect::<String>()));
    }
    resp.json().map_err(|e| format!("{url}: unreadable answer: {e}"))
}

/// `call` once, then up to `retries` more times after 100 ms, 200 ms, 400 ms, … (at most 3.2 s);
/// the last error when every attempt failed.
pub fn with_retries<T>(retries: u32, mut call: impl FnMut() -> Result<T, String>) -> Result<T, String> {
    let mut last = String::new();
    for attempt in 0..=retries {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(100 * (1 << (attempt - 1).min(5))));
        }
        match call() {
            Ok(v) => return Ok(v),
            Err(e) => last = e,
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_stop_at_the_first_success_and_keep_the_last_error() {
        let mut n = 0;
        assert_eq!(
            with_retries(3, || {
                n += 1;
                if n < 2 { Err(format!("e{n}")) } else { Ok(n) }
            }),
            Ok(2)
        );
        let mut m = 0;
        assert_eq!(
            with_retries::<()>(1, || {
                m += 1;
                Err(format!("e{m}"))
            }),
            Err("e2".to_string())
        );
        assert_eq!(m, 2);
    }
}
