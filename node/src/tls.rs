//! Mutual TLS between the nodes of a cluster: the cluster CA and node certificates
//! (`loci cluster certs create-ca | create-node`, the flow of CockroachDB's `cert create-ca` /
//! `create-node`), and the rustls configurations of the cluster listener and of the channels
//! to peers. With it, a node accepts internal traffic (Raft, forwarding, replication) only from
//! a peer holding a certificate of the same CA, and the cluster secret never travels.
//!
//! A certificates directory holds `ca.crt` (the CA's certificate), `node.crt` and `node.key`
//! (this node's), and, where certificates are minted, `ca.key` (keep it off the nodes).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls;

/// The name every node certificate carries and every node verifies when it dials a peer:
/// peers are authenticated by the cluster CA's signature, not by host name (addresses change
/// when a node restarts elsewhere).
pub const NODE_NAME: &str = "loci-node";

const CA_CERT: &str = "ca.crt";
const CA_KEY: &str = "ca.key";
const NODE_CERT: &str = "node.crt";
const NODE_KEY: &str = "node.key";

/// This node's TLS material, loaded from a certificates directory.
#[derive(Clone)]
pub struct ClusterTls {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

fn read(dir: &Path, name: &str) -> anyhow::Result<String> {
    let p = dir.join(name);
    std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))
}

fn write_public(path: &Path, contents: &str) -> anyhow::Result<()> {
    if path.exists() {
        bail!("{} exists already; not overwriting it", path.display());
    }
    std::fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))
}

fn ca_params() -> anyhow::Result<CertificateParams> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Loci cluster CA");
    dn.push(DnType::OrganizationName, "Loci");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    p.not_after = rcgen::date_time_ymd(2036, 1, 1);
    Ok(p)
}

/// Create a new cluster CA in `dir` (`ca.crt`, `ca.key` mode 0600). Refuses to overwrite.
pub fn create_ca(dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let key = KeyPair::generate()?;
    let cert = ca_params()?.self_signed(&key)?;
    crate::server::write_secret(&dir.join(CA_KEY), &key.serialize_pem())?;
    write_public(&dir.join(CA_CERT), &cert.pem())?;
    Ok(dir.join(CA_CERT))
}

/// Create a node certificate signed by the CA in `ca_dir`, into `out_dir` (`node.crt`,
/// `node.key` mode 0600, and a copy of `ca.crt`). `hosts` are extra names or IPs in the
/// certificate (the advertised host, for tools that check it); every node certificate also
/// holds [`NODE_NAME`] and serves as both server and client certificate.
pub fn create_node(ca_dir: &Path, out_dir: &Path, hosts: &[String]) -> anyhow::Result<PathBuf> {
    let ca_pem = read(ca_dir, CA_CERT)?;
    let ca_key = KeyPair::from_pem(&read(ca_dir, CA_KEY)?).context("ca.key is not a private key")?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).context("ca.crt is not a certificate")?;
    let mut names = vec![NODE_NAME.to_string()];
    names.extend(hosts.iter().filter(|h| !h.is_empty()).cloned());
    let mut p = CertificateParams::new(names)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, NODE_NAME);
    p.distinguished_name = dn;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    p.not_after = rcgen::date_time_ymd(2031, 1, 1);
    let key = KeyPair::generate()?;
    let cert = p.signed_by(&key, &issuer)?;
    std::fs::create_dir_all(out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;
    crate::server::write_secret(&out_dir.join(NODE_KEY), &key.serialize_pem())?;
    write_public(&out_dir.join(NODE_CERT), &cert.pem())?;
    if out_dir.join(CA_CERT) != ca_dir.join(CA_CERT) && !out_dir.join(CA_CERT).exists() {
        write_public(&out_dir.join(CA_CERT), &ca_pem)?;
    }
    Ok(out_dir.join(NODE_CERT))
}

impl ClusterTls {
    /// Load `ca.crt`, `node.crt` and `node.key` from `dir`, checking they parse.
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let tls =
            ClusterTls { ca_pem: read(dir, CA_CERT)?, cert_pem: read(dir, NODE_CERT)?, key_pem: read(dir, NODE_KEY)? };
        tls.server_config().with_context(|| format!("the certificates in {} do not fit together", dir.display()))?;
        Ok(tls)
    }

    fn roots(&self) -> anyhow::Result<rustls::RootCertStore> {
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pemfile_certs(&self.ca_pem)? {
            roots.add(c).context("ca.crt holds an unusable certificate")?;
        }
        Ok(roots)
    }

    /// The cluster listener's rustls configuration: this node's certificate, and a client
    /// certificate signed by the cluster CA required of every peer.
    pub fn server_config(&self) -> anyhow::Result<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(self.roots()?), provider.clone())
                .build()
                .context("cannot build the client certificate verifier")?;
        let certs = rustls_pemfile_certs(&self.cert_pem)?;
        let key = rustls_pemfile_key(&self.key_pem)?;
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)
            .context("node.crt and node.key do not match")?;
        cfg.alpn_protocols = vec![b"h2".to_vec()];
        Ok(cfg)
    }

    /// The configuration of channels to peers (verify the peer by the CA, present this node's
    /// certificate).
    pub fn client_config(&self) -> tonic::transport::ClientTlsConfig {
        tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(&self.ca_pem))
            .identity(tonic::transport::Identity::from_pem(&self.cert_pem, &self.key_pem))
            .domain_name(NODE_NAME)
    }
}

fn rustls_pemfile_certs(pem: &str) -> anyhow::Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    use rustls::pki_types::pem::PemObject;
    let certs: Vec<_> = rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .context("not a PEM certificate")?;
    if certs.is_empty() {
        bail!("no certificate in the PEM file");
    }
    Ok(certs)
}

fn rustls_pemfile_key(pem: &str) -> anyhow::Result<rustls::pki_types::PrivateKeyDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::PrivateKeyDer::from_pem_slice(pem.as_bytes()).context("node.key is not a PEM private key")
}

/// Accepted connections of the cluster listener, TLS-terminated. A peer that fails the
/// handshake (no certificate, one from another CA, not TLS at all) is logged and dropped; it
/// never reaches a service.
pub fn accept(
    listener: TcpListener,
    config: rustls::ServerConfig,
) -> impl futures::Stream<Item = std::io::Result<tokio_rustls::server::TlsStream<TcpStream>>> {
    let rx = handshakes(listener, config, Listener::Cluster);
    tokio_stream::StreamExt::map(tokio_stream::wrappers::ReceiverStream::new(rx), |(tls, _)| Ok(tls))
}

/// Accepted connections of a public listener (gRPC), TLS-terminated.
pub fn accept_public(
    listener: TcpListener,
    config: rustls::ServerConfig,
    name: &'static str,
) -> impl futures::Stream<Item = std::io::Result<tokio_rustls::server::TlsStream<TcpStream>>> {
    let rx = handshakes(listener, config, Listener::Public(name));
    tokio_stream::StreamExt::map(tokio_stream::wrappers::ReceiverStream::new(rx), |(tls, _)| Ok(tls))
}

/// Which listener a TLS acceptor serves (for logs and metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    Cluster,
    /// REST or gRPC: anyone may connect; a failed handshake is counted, not warned about.
    Public(&'static str),
}

/// Accept TCP connections and run each TLS handshake in its own task (bounded by 10 s), so a
/// slow or hostile client never holds up the others; completed handshakes come out of the
/// channel with the peer's address.
pub fn handshakes(
    listener: TcpListener,
    config: rustls::ServerConfig,
    which: Listener,
) -> tokio::sync::mpsc::Receiver<(tokio_rustls::server::TlsStream<TcpStream>, std::net::SocketAddr)> {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(c) => {
                    // No Nagle: an HTTP/2 answer is several small writes, and with delayed ACKs on
                    // the peer each one could wait 40 ms.
                    let _ = c.0.set_nodelay(true);
                    c
                }
                Err(e) => {
                    tracing::warn!(listener = ?which, error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            if tx.is_closed() {
                return;
            }
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let handshake = tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(tcp)).await;
                match (handshake, which) {
                    (Ok(Ok(tls)), _) => {
                        let _ = tx.send((tls, peer)).await;
                    }
                    (Ok(Err(e)), Listener::Cluster) => {
                        metrics::counter!("loci_cluster_tls_refused_total").increment(1);
                        tracing::warn!(%peer, error = %e, "refused a cluster connection: TLS handshake failed (no certificate, or one not signed by the cluster CA)");
                    }
                    (Err(_), Listener::Cluster) => {
                        tracing::warn!(%peer, "refused a cluster connection: TLS handshake timed out")
                    }
                    (Ok(Err(e)), Listener::Public(name)) => {
                        metrics::counter!("loci_public_tls_refused_total", "listener" => name).increment(1);
                        tracing::debug!(%peer, listener = name, error = %e, "TLS handshake failed");
                    }
                    (Err(_), Listener::Public(name)) => {
                        metrics::counter!("loci_public_tls_refused_total", "listener" => name).increment(1);
                        tracing::debug!(%peer, listener = name, "TLS handshake timed out");
                    }
                }
            });
        }
    });
    rx
}

/// The public listeners' TLS configuration (`--tls-cert`, `--tls-key`): this certificate
/// chain and key, no client certificate asked for (clients authenticate with API keys), and
/// the given ALPN protocols.
pub fn public_config(cert: &Path, key: &Path, alpn: &[&[u8]]) -> anyhow::Result<rustls::ServerConfig> {
    let cert_pem =
        std::fs::read_to_string(cert).with_context(|| format!("cannot read the TLS certificate {}", cert.display()))?;
    let key_pem = std::fs::read_to_string(key).with_context(|| format!("cannot read the TLS key {}", key.display()))?;
    let certs = rustls_pemfile_certs(&cert_pem).with_context(|| format!("{}", cert.display()))?;
    use rustls::pki_types::pem::PemObject;
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .with_context(|| format!("{} is not a PEM private key", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the TLS certificate and key do not match")?;
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(cfg)
}

/// The REST listener over TLS, for `axum::serve`.
pub struct TlsListener {
    rx: tokio::sync::mpsc::Receiver<(tokio_rustls::server::TlsStream<TcpStream>, std::net::SocketAddr)>,
    local: std::net::SocketAddr,
}

impl TlsListener {
    pub fn new(listener: TcpListener, config: rustls::ServerConfig) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        Ok(TlsListener { rx: handshakes(listener, config, Listener::Public("rest")), local })
    }
}

/// The peer of a TLS connection to the REST listener (axum's `ConnectInfo` for it; `serve`
/// turns it into the `ConnectInfo<SocketAddr>` the middleware reads).
#[derive(Clone, Copy, Debug)]
pub struct TlsPeer(pub std::net::SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>> for TlsPeer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> Self {
        *stream.remote_addr()
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = TlsPeer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some((io, peer)) => (io, TlsPeer(peer)),
            // The acceptor task ends only with the runtime: wait for shutdown.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(TlsPeer(self.local))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_signs_node_certificates_that_load_and_another_ca_is_a_different_root() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca");
        create_ca(&ca).unwrap();
        assert!(create_ca(&ca).is_err(), "an existing CA is never overwritten");
        let n1 = dir.path().join("n1");
        create_node(&ca, &n1, &["10.0.0.1".into(), "loci-1".into()]).unwrap();
        let tls = ClusterTls::load(&n1).unwrap();
        assert!(tls.cert_pem.contains("BEGIN CERTIFICATE"));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(n1.join(NODE_KEY)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::metadata(ca.join(CA_KEY)).unwrap().permissions().mode() & 0o777, 0o600);

        // A node key that does not belong to its certificate does not load.
        let other = dir.path().join("other");
        create_ca(&other).unwrap();
        let n2 = dir.path().join("n2");
        create_node(&other, &n2, &[]).unwrap();
        let mixed = dir.path().join("mixed");
        std::fs::create_dir_all(&mixed).unwrap();
        std::fs::copy(n1.join(CA_CERT), mixed.join(CA_CERT)).unwrap();
        std::fs::copy(n1.join(NODE_CERT), mixed.join(NODE_CERT)).unwrap();
        std::fs::copy(n2.join(NODE_KEY), mixed.join(NODE_KEY)).unwrap();
        assert!(ClusterTls::load(&mixed).is_err());
    }
}
