//! One backup as a single gzip file (`GET /v1/admin/backups/{id}/download`, `POST
//! /v1/admin/backups/upload`): to move a backup between stores or keep it offline.
//!
//! Inside the gzip stream, entries `[u16 name length][name][u64 data length][data]`: the store's
//! `params.json`, the key file of each namespace, every chunk, and the manifest last. The key
//! files travel sealed under the store key, so the archive opens only with the secret the store
//! key derives from; an archive is a copy outside the store, so erasing a namespace later does not
//! reach it (keep archives under the same retention as the store).

use std::io::{Read, Write};

use flate2::Compression as GzLevel;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use loci_raft::catalogue::Scope;
use tokio::sync::mpsc;

use super::chunks::corrupt;
use super::manifest::{Chunk, Manifest};
use super::{BackupInfo, Backups, not_found};
use crate::access::Principal;
use crate::error::{ServiceError, ServiceResult};

/// The largest entry an archive may hold (a chunk, a manifest).
const MAX_ENTRY: u64 = 80 << 20;

/// A `Write` that hands what it is given to an async body, 256 KiB at a time.
struct ChannelWriter {
    tx: mpsc::Sender<Result<Vec<u8>, std::io::Error>>,
    buf: Vec<u8>,
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= 256 * 1024 {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.buf);
        self.tx
            .blocking_send(Ok(out))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))
    }
}

fn entry(w: &mut impl Write, name: &str, data: &[u8]) -> std::io::Result<()> {
    w.write_all(&(name.len() as u16).to_be_bytes())?;
    w.write_all(name.as_bytes())?;
    w.write_all(&(data.len() as u64).to_be_bytes())?;
    w.write_all(data)
}

fn read_entry(r: &mut impl Read) -> ServiceResult<Option<(String, Vec<u8>)>> {
    let mut n = [0u8; 2];
    match r.read_exact(&mut n) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(corrupt(format!("archive: {e}"))),
    }
    let mut name = vec![0u8; u16::from_be_bytes(n) as usize];
    r.read_exact(&mut name).map_err(|e| corrupt(format!("archive: {e}")))?;
    let name = String::from_utf8(name).map_err(|_| corrupt("archive: an entry name is not text"))?;
    let mut len = [0u8; 8];
    r.read_exact(&mut len).map_err(|e| corrupt(format!("archive: {e}")))?;
    let len = u64::from_be_bytes(len);
    if len > MAX_ENTRY {
        return Err(corrupt(format!("archive: entry '{name}' is {len} bytes, over the limit")));
    }
    let mut data = Vec::with_capacity(len as usize);
    r.take(len).read_to_end(&mut data).map_err(|e| corrupt(format!("archive: {e}")))?;
    if data.len() as u64 != len {
        return Err(corrupt(format!("archive: entry '{name}' ends early")));
    }
    Ok(Some((name, data)))
}

impl Backups<'_> {
    /// Stream backup `id` as one gzip archive (super_admin).
    pub async fn download(
        &self,
        p: &Principal,
        id: &str,
    ) -> ServiceResult<mpsc::Receiver<Result<Vec<u8>, std::io::Error>>> {
        p.require_global(Scope::SuperAdmin)?;
        let s = self.state()?.clone();
        let raw = s.store.manifest(id)?.ok_or_else(|| not_found(id))?;
        let m = Manifest::decode(&raw)?;
        let (tx, rx) = mpsc::channel(4);
        self.core.audit.event("backup_downloaded", None, serde_json::json!({"backup_id": id}));
        tokio::task::spawn_blocking(move || {
            let err_tx = tx.clone();
            let run = || -> std::io::Result<()> {
                let mut gz = GzEncoder::new(ChannelWriter { tx, buf: Vec::new() }, GzLevel::fast());
                let params = s
                    .store
                    .file("params.json")
                    .map_err(|e| std::io::Error::other(e.message))?
                    .ok_or_else(|| std::io::Error::other("the store has no params.json"))?;
                entry(&mut gz, "params.json", &params)?;
                for ns_id in m.namespaces.keys() {
                    let rel = format!("keys/{}/{ns_id}.key", m.cluster_id);
                    if let Ok(Some(k)) = s.store.file(&rel) {
                        entry(&mut gz, &rel, &k)?;
                    }
                }
                for c in m.chunks() {
                    let data = s.store.chunk(&c.sha256).map_err(|e| std::io::Error::other(e.message))?;
                    let data = data.ok_or_else(|| std::io::Error::other(format!("chunk {} is missing", c.sha256)))?;
                    entry(&mut gz, &c.path(), &data)?;
                }
                entry(&mut gz, "manifest.json", &raw)?;
                let mut w = gz.finish()?;
                w.flush()
            };
            if let Err(e) = run() {
                tracing::warn!(error = %e, "a backup download ended early");
                let _ = err_tx.blocking_send(Err(e));
            }
        });
        Ok(rx)
    }

    /// Add a backup from an archive `download` wrote (super_admin). Its chunks are checked
    /// against their digests and its namespace keys re-sealed under this store's key; the
    /// backup appears once all of it is stored.
    pub async fn upload(&self, p: &Principal, data: Vec<u8>) -> ServiceResult<BackupInfo> {
        p.require_global(Scope::SuperAdmin)?;
        let s = self.state()?.clone();
        let m = tokio::task::spawn_blocking(move || -> ServiceResult<Manifest> {
            let mut r = GzDecoder::new(data.as_slice());
            let mut archive_key = None;
            let mut keys = Vec::new();
            while let Some((name, body)) = read_entry(&mut r)? {
                if name == "params.json" {
                    archive_key = Some(super::store::key_of(&s.secret, &body)?);
                } else if let Some(sha) = name.strip_prefix("chunks/") {
                    if Chunk::of(&body).sha256 != sha {
                        return Err(corrupt(format!("archive: chunk {sha} does not match its digest")));
                    }
                    if !s.store.has_chunk(sha)? {
                        s.store.put_chunk(sha, &body)?;
                    }
                } else if let Some(rest) = name.strip_prefix("keys/") {
                    keys.push((rest.to_string(), body));
                } else if name == "manifest.json" {
                    let m = Manifest::decode(&body)?;
                    let key =
                        archive_key.as_ref().ok_or_else(|| corrupt("archive: no params.json before the manifest"))?;
                    for (rest, body) in &keys {
                        let (cluster, file) = rest.split_once('/').ok_or_else(|| corrupt("archive: a key path"))?;
                        let ns_id: u64 = file
                            .strip_suffix(".key")
                            .and_then(|i| i.parse().ok())
                            .ok_or_else(|| corrupt("archive: a key file name"))?;
                        s.store.import_namespace_key(key, &s.store_key, cluster, ns_id, body)?;
                    }
                    for c in m.chunks() {
                        if !s.store.has_chunk(&c.sha256)? {
                            return Err(corrupt(format!("archive: chunk {} of the manifest is missing", c.sha256)));
                        }
                    }
                    if s.store.manifest(&m.backup_id)?.is_some() {
                        return Err(ServiceError::conflict(format!(
                            "backup '{}' is in this store already",
                            m.backup_id
                        )));
                    }
                    s.store.put_manifest(&m.backup_id, &body)?;
                    return Ok(m);
                } else {
                    return Err(corrupt(format!("archive: unexpected entry '{name}'")));
                }
            }
            Err(corrupt("archive: no manifest (a truncated or foreign file)"))
        })
        .await
        .map_err(|e| ServiceError::internal(e.to_string()))??;
        self.core.audit.event("backup_uploaded", None, serde_json::json!({"backup_id": m.backup_id}));
        Ok(self.info_of(&m))
    }
}
