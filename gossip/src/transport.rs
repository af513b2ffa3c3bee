//! Datagram transports: real UDP, and an in-memory network for deterministic unit tests.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;

pub trait Transport: Send + Sync + 'static {
    fn send_to(&self, packet: &[u8], to: SocketAddr) -> impl Future<Output = std::io::Result<()>> + Send;
    fn recv_from(&self, buf: &mut [u8]) -> impl Future<Output = std::io::Result<(usize, SocketAddr)>> + Send;
}

pub struct UdpTransport {
    socket: UdpSocket,
}

impl UdpTransport {
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Self> {
        Ok(UdpTransport { socket: UdpSocket::bind(addr).await? })
    }
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }
}

impl Transport for UdpTransport {
    async fn send_to(&self, packet: &[u8], to: SocketAddr) -> std::io::Result<()> {
        self.socket.send_to(packet, to).await.map(|_| ())
    }
    async fn recv_from(&self, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
        self.socket.recv_from(buf).await
    }
}

type Inboxes = Arc<Mutex<HashMap<SocketAddr, mpsc::UnboundedSender<(Vec<u8>, SocketAddr)>>>>;

/// An in-memory datagram network: every `bind` gets an address-keyed inbox.
#[derive(Clone, Default)]
pub struct MemNetwork {
    inboxes: Inboxes,
}

pub struct MemTransport {
    addr: SocketAddr,
    inboxes: Inboxes,
    rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<(Vec<u8>, SocketAddr)>>,
}

impl MemNetwork {
    pub fn bind(&self, addr: SocketAddr) -> MemTransport {
        let (tx, rx) = mpsc::unbounded_channel();
        self.inboxes.lock().unwrap_or_else(|e| e.into_inner()).insert(addr, tx);
        MemTransport { addr, inboxes: self.inboxes.clone(), rx: tokio::sync::Mutex::new(rx) }
    }

    /// Drop a node's inbox (the node vanished).
    pub fn unbind(&self, addr: SocketAddr) {
        self.inboxes.lock().unwrap_or_else(|e| e.into_inner()).remove(&addr);
    }

    /// Deliver raw bytes as if `from` had sent them (tests inject forged packets).
    pub fn inject(&self, to: SocketAddr, from: SocketAddr, packet: Vec<u8>) {
        if let Some(tx) = self.inboxes.lock().unwrap_or_else(|e| e.into_inner()).get(&to) {
            let _ = tx.send((packet, from));
        }
    }
}

impl Transport for MemTransport {
    async fn send_to(&self, packet: &[u8], to: SocketAddr) -> std::io::Result<()> {
        let tx = self.inboxes.lock().unwrap_or_else(|e| e.into_inner()).get(&to).cloned();
        if let Some(tx) = tx {
            let _ = tx.send((packet.to_vec(), self.addr));
        }
        Ok(())
    }
    async fn recv_from(&self, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
        let mut rx = self.rx.lock().await;
        match rx.recv().await {
            Some((data, from)) => {
                let n = data.len().min(buf.len());
                buf[..n].copy_from_slice(&data[..n]);
                Ok((n, from))
            }
            None => std::future::pending().await,
        }
    }
}
