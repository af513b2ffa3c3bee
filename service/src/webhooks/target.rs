//! Where a webhook may point: `http` or `https` URLs whose host resolves only to public
//! addresses, unless the operator allows private ones (`LOCI_WEBHOOK_ALLOW_PRIVATE`) or lists
//! the ranges it trusts (`LOCI_WEBHOOK_ALLOWED_CIDRS`). The check runs when a webhook is
//! created and again on every connection ([`SafeResolver`]): a name that later resolves to an
//! internal address (DNS rebinding) is refused at delivery, and redirects are never followed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;

/// The longest target URL.
pub const MAX_URL_LEN: usize = 2048;

#[derive(Clone, Debug, Default)]
pub struct TargetPolicy {
    /// Every address allowed (a private network's own receivers).
    pub allow_private: bool,
    /// Ranges allowed although not public.
    pub allowed: Vec<IpNet>,
}

/// Why an address is not public, if it is not.
pub fn non_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return non_public_v4(v4);
            }
            let s = v6.segments();
            // NAT64 (64:ff9b::/96) reaches the IPv4 address in its last 32 bits.
            if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
                let v4 = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
                return non_public_v4(v4);
            }
            if v6.is_unspecified() {
                Some("unspecified")
            } else if v6.is_loopback() {
                Some("loopback")
            } else if (s[0] & 0xfe00) == 0xfc00 {
                Some("unique local")
            } else if (s[0] & 0xffc0) == 0xfe80 {
                Some("link-local")
            } else if v6.is_multicast() {
                Some("multicast")
            } else if s[0] == 0x2001 && s[1] == 0x0db8 {
                Some("documentation")
            } else if v6 == Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 1) {
                Some("loopback")
            } else {
                None
            }
        }
    }
}

fn non_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    if ip.is_unspecified() || o[0] == 0 {
        Some("unspecified")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_link_local() {
        // 169.254.169.254 is the cloud metadata service.
        Some("link-local")
    } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
        Some("shared address space")
    } else if o[0] == 192 && o[1] == 0 && o[2] == 0 {
        Some("IETF protocol assignments")
    } else if o[0] == 198 && (o[1] & 0xfe) == 18 {
        Some("benchmarking")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if o[0] >= 240 {
        Some("reserved")
    } else if ip.is_documentation() {
        Some("documentation")
    } else {
        None
    }
}

impl TargetPolicy {
    /// Refuse `ip` unless it is public or allowed.
    pub fn check(&self, ip: IpAddr) -> Result<(), String> {
        let Some(why) = non_public(ip) else { return Ok(()) };
        if self.allow_private || self.allowed.iter().any(|n| n.contains(&ip)) {
            return Ok(());
        }
        Err(format!(
            "{ip} is a {why} address: webhooks reach public addresses only (LOCI_WEBHOOK_ALLOWED_CIDRS lists trusted ranges)"
        ))
    }
}

/// A target URL that passed the syntax checks.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub url: reqwest::Url,
    /// The host is an IP address (no resolution happens: it is checked as it is).
    pub literal: Option<IpAddr>,
}

/// Parse and check a target URL's form: scheme, host, no credentials, bounded length.
pub fn parse(raw: &str) -> Result<Target, String> {
    if raw.len() > MAX_URL_LEN {
        return Err(format!("url is longer than {MAX_URL_LEN} bytes"));
    }
    let url = reqwest::Url::parse(raw).map_err(|e| format!("url is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("url must be http or https".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("url must not carry credentials (the signature authenticates deliveries)".into());
    }
    let literal = match url.host() {
        None => return Err("url has no host".into()),
        Some(url::Host::Ipv4(a)) => Some(IpAddr::V4(a)),
        Some(url::Host::Ipv6(a)) => Some(IpAddr::V6(a)),
        Some(url::Host::Domain("")) => return Err("url has no host".into()),
        Some(url::Host::Domain(_)) => None,
    };
    if url.fragment().is_some() {
        return Err("url must not have a fragment".into());
    }
    Ok(Target { url, literal })
}

impl TargetPolicy {
    /// Resolve the target now and check every address it resolves to.
    pub async fn vet(&self, t: &Target) -> Result<(), String> {
        if let Some(ip) = t.literal {
            return self.check(ip);
        }
        let host = t.url.host_str().unwrap_or_default().to_string();
        let port = t.url.port_or_known_default().unwrap_or(443);
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .collect();
        if addrs.is_empty() {
            return Err(format!("{host} resolves to no address"));
        }
        for a in &addrs {
            self.check(a.ip())?;
        }
        Ok(())
    }
}

/// The resolver of the delivery client: a name resolves only when every address it has is
/// allowed, and the connection goes to those addresses.
pub struct SafeResolver {
    pub policy: Arc<TargetPolicy>,
}

impl reqwest::dns::Resolve for SafeResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            for a in &addrs {
                policy
                    .check(a.ip())
                    .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { Box::new(std::io::Error::other(e)) })?;
            }
            let it: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(it)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn internal_addresses_are_refused_and_public_ones_pass() {
        let p = TargetPolicy::default();
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
            "198.18.0.1",
        ] {
            assert!(p.check(ip(bad)).is_err(), "{bad} must be refused");
        }
        for good in ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "64:ff9b::808:808"] {
            assert!(p.check(ip(good)).is_ok(), "{good} must pass");
        }
    }

    #[test]
    fn listed_ranges_and_allow_private_open_the_gate() {
        let p =
            TargetPolicy { allow_private: false, allowed: vec!["127.0.0.0/8".parse().unwrap_or_else(|_| panic!())] };
        assert!(p.check(ip("127.0.0.1")).is_ok());
        assert!(p.check(ip("10.0.0.1")).is_err());
        let p = TargetPolicy { allow_private: true, allowed: vec![] };
        assert!(p.check(ip("169.254.169.254")).is_ok());
    }

    #[test]
    fn url_forms() {
        assert!(parse("https://hooks.example.com/x?y=1").is_ok_and(|t| t.literal.is_none()));
        assert_eq!(parse("http://127.0.0.1:8080/h").ok().and_then(|t| t.literal), Some(ip("127.0.0.1")));
        assert_eq!(parse("http://[::1]/h").ok().and_then(|t| t.literal), Some(ip("::1")));
        for bad in [
            "ftp://example.com/",
            "https://user:pw@example.com/",
            "not a url",
            "file:///etc/passwd",
            "https://example.com/#f",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(parse(&format!("https://example.com/{}", "a".repeat(MAX_URL_LEN))).is_err());
    }

    #[tokio::test]
    async fn a_name_is_checked_by_what_it_resolves_to() {
        let p = TargetPolicy::default();
        let t = parse("http://localhost:9/h").unwrap_or_else(|e| panic!("{e}"));
        assert!(p.vet(&t).await.is_err(), "localhost resolves to loopback");
        let t = parse("http://169.254.169.254/latest/meta-data").unwrap_or_else(|e| panic!("{e}"));
        assert!(p.vet(&t).await.is_err());
    }
}
