//! A backup store: a directory (local, or a mount every node shares) or an S3-compatible bucket
//! ([`super::backend`]).
//!
//! ```text
//! <root>/params.json                       the store's key salt and KDF (public)
//! <root>/manifests/<backup_id>.json        one per complete backup (written last)
//! <root>/chunks/<sha256>                   content-addressed, immutable
//! <root>/keys/<cluster_id>/<ns_id>.key     a namespace's data key, sealed under the store key
//! ```
//!
//! Every write is atomic (a directory: a temporary file synced and renamed; S3: one PUT), so a
//! crash leaves either the old file or the new one; a manifest names only chunks written before
//! it.

use serde::{Deserialize, Serialize};

use super::backend::{Backend, S3Options};
use crate::error::{ServiceError, ServiceResult};
use loci_storage::crypto::{Kdf, MasterSecret, SecretKey, random_bytes};

pub struct BackupStore {
    backend: Backend,
}

/// A path segment the store writes: ids it made or digests, never a client's free text.
fn safe(seg: &str) -> ServiceResult<&str> {
    if seg.is_empty() || seg.len() > 128 || !seg.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        return Err(ServiceError::bad_request(format!("'{seg}' is not a backup store name")));
    }
    Ok(seg)
}

#[derive(Serialize, Deserialize)]
struct Params {
    salt: String,
    kdf: Kdf,
}

/// The store key `secret` and a store's `params.json` derive (a store's own, or an archive's).
pub fn key_of(secret: &MasterSecret, params_json: &[u8]) -> ServiceResult<SecretKey> {
    let params: Params = serde_json::from_slice(params_json)
        .map_err(|e| super::chunks::corrupt(format!("backup store params.json: {e}")))?;
    let salt: [u8; 16] = hex::decode(&params.salt)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| super::chunks::corrupt("backup store params.json: the salt is not 16 hex bytes"))?;
    secret.backup_key(&salt, &params.kdf).map_err(|e| ServiceError::internal(e.to_string()))
}

/// A namespace's data key as a store keeps it.
#[derive(Serialize, Deserialize)]
struct KeyFile {
    ns_id: u64,
    dek_version: u32,
    sealed: String,
}

impl BackupStore {
    /// A directory (`/mnt/backups`), or `s3://bucket/prefix` with `s3`.
    pub fn open(location: &str, s3: &S3Options) -> ServiceResult<BackupStore> {
        Ok(BackupStore { backend: Backend::open(location, s3)? })
    }

    pub fn location(&self) -> String {
        self.backend.location()
    }

    fn write(&self, rel: &str, data: &[u8]) -> ServiceResult<()> {
        self.backend.write(rel, data)
    }

    fn read(&self, rel: &str) -> ServiceResult<Option<Vec<u8>>> {
        self.backend.read(rel)
    }

    fn remove(&self, rel: &str) -> ServiceResult<bool> {
        self.backend.remove(rel)
    }

    fn names(&self, dir: &str) -> ServiceResult<Vec<String>> {
        self.backend.names(dir)
    }

    /// A file of the store's own (`params.json`, `schedule.json`, a key file) by its name.
    pub fn file(&self, rel: &str) -> ServiceResult<Option<Vec<u8>>> {
        self.read(rel)
    }

    pub fn put_file(&self, rel: &str, data: &[u8]) -> ServiceResult<()> {
        self.write(rel, data)
    }

    /// When a chunk was last written or refreshed.
    pub fn chunk_modified(&self, sha256: &str) -> ServiceResult<Option<std::time::SystemTime>> {
        self.backend.modified(&format!("chunks/{}", safe(sha256)?))
    }

    /// Mark a chunk as used now (when it is older than `older_than`).
    pub fn touch_chunk(&self, sha256: &str, older_than: std::time::Duration) -> ServiceResult<()> {
        self.backend.touch(&format!("chunks/{}", safe(sha256)?), older_than)
    }

    /// The store's key from `secret`: the salt is chosen on first use and kept in the store.
    pub fn key(&self, secret: &MasterSecret) -> ServiceResult<SecretKey> {
        let params = match self.read("params.json")? {
            Some(b) => b,
            None => {
                // Several nodes may open a new shared store at once: the first file wins, and
                // every node reads it back.
                let mut salt = [0u8; 16];
                random_bytes(&mut salt);
                let p = Params { salt: hex::encode(salt), kdf: secret.kdf() };
                self.backend.create_or_read("params.json", &serde_json::to_vec_pretty(&p).unwrap_or_default())?
            }
        };
        key_of(secret, &params)
    }

    // --- chunks ---

    pub fn has_chunk(&self, sha256: &str) -> ServiceResult<bool> {
        self.backend.exists(&format!("chunks/{}", safe(sha256)?))
    }

    pub fn put_chunk(&self, sha256: &str, data: &[u8]) -> ServiceResult<()> {
        self.write(&format!("chunks/{}", safe(sha256)?), data)
    }

    pub fn chunk(&self, sha256: &str) -> ServiceResult<Option<Vec<u8>>> {
        self.read(&format!("chunks/{}", safe(sha256)?))
    }

    pub fn chunk_names(&self) -> ServiceResult<Vec<String>> {
        self.names("chunks")
    }

    pub fn remove_chunk(&self, sha256: &str) -> ServiceResult<bool> {
        self.remove(&format!("chunks/{}", safe(sha256)?))
    }

    // --- manifests ---

    pub fn put_manifest(&self, id: &str, data: &[u8]) -> ServiceResult<()> {
        self.write(&format!("manifests/{}.json", safe(id)?), data)
    }

    pub fn manifest(&self, id: &str) -> ServiceResult<Option<Vec<u8>>> {
        match safe(id) {
            Ok(id) => self.read(&format!("manifests/{id}.json")),
            Err(_) => Ok(None),
        }
    }

    pub fn manifest_ids(&self) -> ServiceResult<Vec<String>> {
        Ok(self.names("manifests")?.into_iter().filter_map(|n| n.strip_suffix(".json").map(str::to_string)).collect())
    }

    pub fn remove_manifest(&self, id: &str) -> ServiceResult<bool> {
        self.remove(&format!("manifests/{}.json", safe(id)?))
    }

    // --- job status (so every node on the store can answer for a job) ---

    pub fn put_job(&self, kind: &str, id: &str, data: &[u8]) -> ServiceResult<()> {
        self.write(&format!("jobs/{}/{}.json", safe(kind)?, safe(id)?), data)
    }

    pub fn job(&self, kind: &str, id: &str) -> ServiceResult<Option<Vec<u8>>> {
        match (safe(kind), safe(id)) {
            (Ok(k), Ok(i)) => self.read(&format!("jobs/{k}/{i}.json")),
            _ => Ok(None),
        }
    }

    pub fn job_ids(&self, kind: &str) -> ServiceResult<Vec<String>> {
        Ok(self
            .names(&format!("jobs/{}", safe(kind)?))?
            .into_iter()
            .filter_map(|n| n.strip_suffix(".json").map(str::to_string))
            .collect())
    }

    pub fn remove_job(&self, kind: &str, id: &str) -> ServiceResult<bool> {
        self.remove(&format!("jobs/{}/{}.json", safe(kind)?, safe(id)?))
    }

    // --- namespace keys ---

    fn key_path(cluster: &str, ns_id: u64) -> ServiceResult<String> {
        Ok(format!("keys/{}/{ns_id}.key", safe(cluster)?))
    }

    fn key_aad(ns_id: u64, dek_version: u32) -> Vec<u8> {
        let mut aad = b"loci/backup/dek/".to_vec();
        aad.extend_from_slice(&ns_id.to_be_bytes());
        aad.extend_from_slice(&dek_version.to_be_bytes());
        aad
    }

    pub fn has_namespace_key(&self, cluster: &str, ns_id: u64) -> ServiceResult<bool> {
        self.backend.exists(&Self::key_path(cluster, ns_id)?)
    }

    /// Keep a namespace's data key, sealed under the store key.
    pub fn put_namespace_key(
        &self,
        store_key: &SecretKey,
        cluster: &str,
        ns_id: u64,
        dek_version: u32,
        dek: &SecretKey,
    ) -> ServiceResult<()> {
        let sealed = store_key.seal(&Self::key_aad(ns_id, dek_version), dek.as_bytes());
        let f = KeyFile { ns_id, dek_version, sealed: hex::encode(sealed) };
        self.write(&Self::key_path(cluster, ns_id)?, &serde_json::to_vec(&f).unwrap_or_default())
    }

    /// A namespace's data key and its version; `None` once it was erased.
    pub fn namespace_key(
        &self,
        store_key: &SecretKey,
        cluster: &str,
        ns_id: u64,
    ) -> ServiceResult<Option<(u32, SecretKey)>> {
        let Some(b) = self.read(&Self::key_path(cluster, ns_id)?)? else { return Ok(None) };
        let f: KeyFile = serde_json::from_slice(&b).map_err(|e| super::chunks::corrupt(format!("key file: {e}")))?;
        let sealed = hex::decode(&f.sealed).map_err(|_| super::chunks::corrupt("key file: not hex"))?;
        let pt = store_key.open(&Self::key_aad(f.ns_id, f.dek_version), &sealed).map_err(|_| {
            super::chunks::corrupt("a namespace key does not open under this store's key (another secret?)")
        })?;
        let bytes: [u8; 32] = pt.try_into().map_err(|_| super::chunks::corrupt("key file: wrong length"))?;
        Ok(Some((f.dek_version, SecretKey::from_bytes(bytes))))
    }

    /// Take a key file sealed under `from` (another store's key) into this store, re-sealed
    /// under `to`. A key this store already holds is kept.
    pub fn import_namespace_key(
        &self,
        from: &SecretKey,
        to: &SecretKey,
        cluster: &str,
        ns_id: u64,
        file: &[u8],
    ) -> ServiceResult<()> {
        if self.has_namespace_key(cluster, ns_id)? {
            return Ok(());
        }
        let f: KeyFile = serde_json::from_slice(file).map_err(|e| super::chunks::corrupt(format!("key file: {e}")))?;
        if f.ns_id != ns_id {
            return Err(super::chunks::corrupt("key file: it names another namespace"));
        }
        let sealed = hex::decode(&f.sealed).map_err(|_| super::chunks::corrupt("key file: not hex"))?;
        let pt = from.open(&Self::key_aad(f.ns_id, f.dek_version), &sealed).map_err(|_| {
            super::chunks::corrupt("a namespace key of the archive does not open with this node's secret")
        })?;
        let bytes: [u8; 32] = pt.try_into().map_err(|_| super::chunks::corrupt("key file: wrong length"))?;
        self.put_namespace_key(to, cluster, ns_id, f.dek_version, &SecretKey::from_bytes(bytes))
    }

    /// Erase a namespace's key: every chunk of it, in every backup, becomes unreadable.
    pub fn remove_namespace_key(&self, cluster: &str, ns_id: u64) -> ServiceResult<bool> {
        self.remove(&Self::key_path(cluster, ns_id)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    #[test]
    fn files_round_trip_and_names_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let s = BackupStore::open(dir.path().to_str().unwrap(), &S3Options::default()).unwrap();
        s.put_chunk("ab12", b"x").unwrap();
        assert!(s.has_chunk("ab12").unwrap());
        assert_eq!(s.chunk("ab12").unwrap(), Some(b"x".to_vec()));
        assert_eq!(s.chunk_names().unwrap(), vec!["ab12".to_string()]);
        assert!(s.put_chunk("../escape", b"x").is_err());
        assert!(s.manifest("../../etc/passwd").unwrap().is_none());
        s.put_manifest("bk_1", b"{}").unwrap();
        assert_eq!(s.manifest_ids().unwrap(), vec!["bk_1".to_string()]);
        assert!(s.remove_manifest("bk_1").unwrap());
        assert!(!s.remove_manifest("bk_1").unwrap());
    }

    #[test]
    fn a_namespace_key_opens_with_the_same_secret_only_and_is_gone_once_removed() {
        let dir = tempfile::tempdir().unwrap();
        let s = BackupStore::open(dir.path().to_str().unwrap(), &S3Options::default()).unwrap();
        let secret = MasterSecret::parse(&"ab".repeat(32)).unwrap();
        let k = s.key(&secret).unwrap();
        assert_eq!(k.as_bytes(), s.key(&secret).unwrap().as_bytes(), "the salt is kept");
        let dek = SecretKey::random();
        s.put_namespace_key(&k, "c1", 42, 3, &dek).unwrap();
        let (v, got) = s.namespace_key(&k, "c1", 42).unwrap().unwrap();
        assert_eq!((v, got.as_bytes()), (3, dek.as_bytes()));
        let other = BackupStore::open(dir.path().to_str().unwrap(), &S3Options::default())
            .unwrap()
            .key(&MasterSecret::parse(&"cd".repeat(32)).unwrap())
            .unwrap();
        assert!(s.namespace_key(&other, "c1", 42).is_err());
        assert!(s.remove_namespace_key("c1", 42).unwrap());
        assert!(s.namespace_key(&k, "c1", 42).unwrap().is_none());
        // No key material in the clear on disk.
        for e in walk(dir.path()) {
            let b = std::fs::read(&e).unwrap();
            assert!(!b.windows(32).any(|w| w == dek.as_bytes()), "{}", e.display());
        }
    }

    #[test]
    fn nodes_opening_a_new_shared_store_at_once_agree_on_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let keys: Vec<[u8; 32]> = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..8)
                .map(|_| {
                    sc.spawn(|| {
                        let s = BackupStore::open(dir.path().to_str().unwrap(), &S3Options::default()).unwrap();
                        *s.key(&MasterSecret::parse(&"ab".repeat(32)).unwrap()).unwrap().as_bytes()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(keys.windows(2).all(|w| w[0] == w[1]), "nodes derived different store keys");
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".new"))
            .collect();
        assert!(left.is_empty(), "temporary files left behind");
    }

    fn walk(p: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(p).unwrap().flatten() {
            if e.path().is_dir() {
                out.extend(walk(&e.path()));
            } else {
                out.push(e.path());
            }
        }
        out
    }
}
