//! `loci health`: a tiny HTTP probe for container health checks, so an image needs no shell and
//! no curl. Plain HTTP/1.1 over `std::net` (the public listener has no TLS); exits 0 on a 2xx.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{Context, bail};

/// `http://host:port/path` → (`host:port`, `/path`). Only `http` is accepted.
pub fn split_url(url: &str) -> anyhow::Result<(String, String)> {
    let rest = url.strip_prefix("http://").with_context(|| format!("'{url}': only http:// URLs are probed"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        bail!("'{url}' has no host");
    }
    let authority = if authority.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    Ok((authority, path.to_string()))
}

/// GET `url` and return the status code of the answer.
pub fn probe(url: &str, timeout: Duration) -> anyhow::Result<u16> {
    let (authority, path) = split_url(url)?;
    let addrs: Vec<_> = authority.to_socket_addrs().with_context(|| format!("cannot resolve {authority}"))?.collect();
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(mut stream) => {
                stream.set_read_timeout(Some(timeout))?;
                stream.set_write_timeout(Some(timeout))?;
                let host = authority.rsplit_once(':').map(|(h, _)| h).unwrap_or(&authority);
                // One write: `write!` on a bare socket would send the request in pieces.
                let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
                stream.write_all(request.as_bytes())?;
                // The status line is all we need; read until it is complete.
                let mut head = Vec::new();
                let mut buf = [0u8; 512];
                while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 4096 {
                    let n = stream.read(&mut buf).context("reading the answer")?;
                    if n == 0 {
                        break;
                    }
                    head.extend_from_slice(&buf[..n]);
                }
                return parse_status(&head);
            }
            Err(e) => last = Some(e),
        }
    }
    match last {
        Some(e) => Err(e).with_context(|| format!("cannot connect to {authority}")),
        None => bail!("{authority} resolved to no address"),
    }
}

/// The status code of an HTTP/1.x status line.
pub fn parse_status(head: &[u8]) -> anyhow::Result<u16> {
    let text = String::from_utf8_lossy(head);
    let line = text.lines().next().unwrap_or("");
    let mut parts = line.split_whitespace();
    match (parts.next(), parts.next().and_then(|c| c.parse::<u16>().ok())) {
        (Some(v), Some(code)) if v.starts_with("HTTP/1.") => Ok(code),
        _ => bail!("not an HTTP answer: {:?}", line.chars().take(80).collect::<String>()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A one-shot server answering `answer` to the first connection; returns its URL.
    fn serve_once(answer: &'static str) -> (String, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/health/ready", listener.local_addr().expect("addr"));
        let handle = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            // The request may arrive in pieces: read up to the end of its head.
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).expect("read request");
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&buf[..n]);
            }
            s.write_all(answer.as_bytes()).expect("write");
            String::from_utf8_lossy(&req).into_owned()
        });
        (url, handle)
    }

    #[test]
    fn reads_the_status_of_a_ready_and_an_unready_node() {
        let (url, h) = serve_once("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}");
        assert_eq!(probe(&url, Duration::from_secs(5)).expect("probe"), 200);
        let request = h.join().expect("server");
        assert!(request.starts_with("GET /health/ready HTTP/1.1\r\n"), "{request}");
        let (url, h) = serve_once("HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\n\r\n");
        assert_eq!(probe(&url, Duration::from_secs(5)).expect("probe"), 503);
        h.join().expect("server");
    }

    #[test]
    fn refuses_what_is_not_http() {
        let (url, h) = serve_once("SSH-2.0-OpenSSH\r\n");
        assert!(probe(&url, Duration::from_secs(5)).is_err());
        h.join().expect("server");
        assert!(split_url("https://x:1/").is_err());
        assert!(split_url("http:///health").is_err());
        assert_eq!(split_url("http://loci-1:3300").expect("url"), ("loci-1:3300".into(), "/".into()));
        assert_eq!(split_url("http://h/x").expect("url"), ("h:80".into(), "/x".into()));
    }

    #[test]
    fn a_closed_port_is_an_error() {
        let port = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        assert!(probe(&format!("http://127.0.0.1:{port}/health"), Duration::from_secs(2)).is_err());
    }
}
