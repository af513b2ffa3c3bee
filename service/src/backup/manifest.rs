//! The backup manifest and the decisions made on it, with no IO: which chunks an incremental
//! backup must write, and whether a store's chunks match a manifest. The runtime that reads the
//! data and writes the store calls these.

use crate::error::ServiceError;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};

/// The manifest format this build writes and reads.
pub const FORMAT: u32 = 1;

/// The largest manifest accepted when decoding (a manifest names chunks, it holds no data).
pub const MAX_MANIFEST_BYTES: usize = 64 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Full,
    Incremental,
}

/// One stored chunk: its digest names it in the store.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Chunk {
    pub sha256: String,
    pub bytes: u64,
}

impl Chunk {
    pub fn of(data: &[u8]) -> Chunk {
        Chunk { sha256: hex::encode(Sha256::digest(data)), bytes: data.len() as u64 }
    }

    /// The chunk's path in a backup store.
    pub fn path(&self) -> String {
        format!("chunks/{}", self.sha256)
    }
}

/// A namespace as read for the backup: at `point` (the last applied entry of its replication
/// log, in `epoch`) on its primary, in `chunks` (in order). `entry` holds its settings (name,
/// kind, embedder, policy), sealed under its key like its rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespacePart {
    pub point: u64,
    pub epoch: u64,
    pub records: u64,
    pub entry: Chunk,
    pub chunks: Vec<Chunk>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub backup_id: String,
    pub name: String,
    pub created_at_ms: u64,
    pub kind: Kind,
    /// When the last chunk was written.
    pub completed_at_ms: u64,
    /// The backup this one was taken after (incremental only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// The cluster it was taken from (its namespaces' keys are kept under this id).
    pub cluster_id: String,
    pub compression: super::chunks::Compression,
    /// The catalogue's keys, quotas and token denials, sealed under the store key.
    pub catalogue: Vec<Chunk>,
    /// By namespace id (names are the tenants' and sit in the sealed entries).
    pub namespaces: BTreeMap<String, NamespacePart>,
}

impl Manifest {
    /// Every chunk the manifest names, each once.
    pub fn chunks(&self) -> BTreeSet<&Chunk> {
        self.catalogue
            .iter()
            .chain(self.namespaces.values().flat_map(|p| std::iter::once(&p.entry).chain(p.chunks.iter())))
            .collect()
    }

    pub fn total_bytes(&self) -> u64 {
        self.chunks().iter().map(|c| c.bytes).sum()
    }

    pub fn encode(&self) -> Vec<u8> {
        // A manifest is plain data: serialising it cannot fail.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Parses a manifest read from a store; a manifest that is not this format is refused.
    pub fn decode(bytes: &[u8]) -> Result<Manifest, ServiceError> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(corrupt(format!("manifest is {} bytes, over the {MAX_MANIFEST_BYTES} limit", bytes.len())));
        }
        let m: Manifest =
            serde_json::from_slice(bytes).map_err(|e| corrupt(format!("manifest does not parse: {e}")))?;
        if m.format != FORMAT {
            return Err(corrupt(format!("manifest format {} is not {FORMAT}", m.format)));
        }
        for c in m.chunks() {
            if c.sha256.len() != 64 || !c.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(corrupt(format!("chunk digest {:?} is not a SHA-256", c.sha256)));
            }
        }
        if (m.kind == Kind::Incremental) != m.parent.is_some() {
            return Err(corrupt("an incremental manifest names its parent and a full one does not".into()));
        }
        Ok(m)
    }
}

fn corrupt(message: String) -> ServiceError {
    ServiceError::new(StatusCode::UNPROCESSABLE_ENTITY, "BACKUP_CORRUPT", message)
}

/// The chunks of `manifest` a store holding `present` (digests) must still be given: the whole
/// of a full backup's new data, and for an incremental one only what changed since.
pub fn plan_upload<'m>(manifest: &'m Manifest, present: &BTreeSet<String>) -> Vec<&'m Chunk> {
    manifest.chunks().into_iter().filter(|c| !present.contains(&c.sha256)).collect()
}

/// What verification found wrong with one chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    Missing { sha256: String },
    WrongSize { sha256: String, expected: u64, found: u64 },
    WrongDigest { sha256: String, found: String },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub chunks_checked: u64,
    pub bytes_checked: u64,
    pub faults: Vec<Fault>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.faults.is_empty()
    }
}

/// Checks every chunk `manifest` names against what `read` returns for its path (`None`: the
/// store has no such chunk).
pub fn verify(manifest: &Manifest, mut read: impl FnMut(&str) -> Option<Vec<u8>>) -> Report {
    let mut report = Report::default();
    for chunk in manifest.chunks() {
        report.chunks_checked += 1;
        let Some(data) = read(&chunk.path()) else {
            report.faults.push(Fault::Missing { sha256: chunk.sha256.clone() });
            continue;
        };
        report.bytes_checked += data.len() as u64;
        if data.len() as u64 != chunk.bytes {
            report.faults.push(Fault::WrongSize {
                sha256: chunk.sha256.clone(),
                expected: chunk.bytes,
                found: data.len() as u64,
            });
            continue;
        }
        let found = Chunk::of(&data).sha256;
        if found != chunk.sha256 {
            report.faults.push(Fault::WrongDigest { sha256: chunk.sha256.clone(), found });
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn store(parts: &[&[u8]]) -> HashMap<String, Vec<u8>> {
        parts.iter().map(|p| (Chunk::of(p).path(), p.to_vec())).collect()
    }

    fn manifest(kind: Kind, parent: Option<&str>, catalogue: &[&[u8]], ns: &[(&str, &[&[u8]])]) -> Manifest {
        Manifest {
            format: FORMAT,
            backup_id: "bk_1".into(),
            name: "nightly".into(),
            created_at_ms: 1,
            completed_at_ms: 2,
            kind,
            parent: parent.map(str::to_string),
            cluster_id: "c1".into(),
            compression: Default::default(),
            catalogue: catalogue.iter().map(|c| Chunk::of(c)).collect(),
            namespaces: ns
                .iter()
                .map(|(n, cs)| {
                    let part = NamespacePart {
                        point: 7,
                        epoch: 1,
                        records: cs.len() as u64,
                        entry: Chunk::of(b"entry"),
                        chunks: cs.iter().map(|c| Chunk::of(c)).collect(),
                    };
                    (n.to_string(), part)
                })
                .collect(),
        }
    }

    #[test]
    fn chunk_digest_is_sha256() {
        // echo -n abc | sha256sum
        assert_eq!(Chunk::of(b"abc").sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(Chunk::of(b"abc").bytes, 3);
    }

    #[test]
    fn a_sound_store_verifies_and_counts_shared_chunks_once() {
        let m = manifest(Kind::Full, None, &[b"cat"], &[("a", &[b"x", b"y"]), ("b", &[b"y"])]);
        let s = store(&[b"cat", b"x", b"y", b"entry"]);
        let r = verify(&m, |p| s.get(p).cloned());
        assert!(r.ok(), "{r:?}");
        assert_eq!(r.chunks_checked, 4);
        assert_eq!(r.bytes_checked, 10);
        assert_eq!(m.total_bytes(), 10);
    }

    #[test]
    fn verification_finds_a_missing_a_truncated_and_a_flipped_chunk() {
        let m = manifest(Kind::Full, None, &[b"catalogue"], &[("a", &[b"alpha", b"beta"])]);
        let mut s = store(&[b"catalogue", b"alpha", b"beta", b"entry"]);
        s.remove(&Chunk::of(b"catalogue").path());
        s.insert(Chunk::of(b"alpha").path(), b"alph".to_vec());
        s.insert(Chunk::of(b"beta").path(), b"bEta".to_vec());
        let r = verify(&m, |p| s.get(p).cloned());
        assert!(!r.ok());
        assert_eq!(r.faults.len(), 3, "{r:?}");
        assert!(r.faults.contains(&Fault::Missing { sha256: Chunk::of(b"catalogue").sha256 }));
        assert!(r.faults.contains(&Fault::WrongSize { sha256: Chunk::of(b"alpha").sha256, expected: 5, found: 4 }));
        assert!(
            r.faults
                .contains(&Fault::WrongDigest { sha256: Chunk::of(b"beta").sha256, found: Chunk::of(b"bEta").sha256 })
        );
    }

    #[test]
    fn an_incremental_backup_uploads_only_new_chunks() {
        let full = manifest(Kind::Full, None, &[b"cat1"], &[("a", &[b"x"]), ("b", &[b"y"])]);
        let present: BTreeSet<String> = full.chunks().iter().map(|c| c.sha256.clone()).collect();
        let inc = manifest(Kind::Incremental, Some("bk_0"), &[b"cat2"], &[("a", &[b"x", b"z"]), ("b", &[b"y"])]);
        let up: BTreeSet<String> = plan_upload(&inc, &present).iter().map(|c| c.sha256.clone()).collect();
        let want: BTreeSet<String> = [Chunk::of(b"cat2").sha256, Chunk::of(b"z").sha256].into();
        assert_eq!(up, want);
        assert_eq!(plan_upload(&full, &BTreeSet::new()).len(), 4);
    }

    #[test]
    fn manifests_round_trip_and_bad_ones_are_refused() {
        let m = manifest(Kind::Incremental, Some("bk_0"), &[b"c"], &[("a", &[b"x"])]);
        assert_eq!(Manifest::decode(&m.encode()).ok(), Some(m.clone()));

        let mut wrong_format = m.clone();
        wrong_format.format = 2;
        let mut orphan = m.clone();
        orphan.parent = None;
        let mut bad_digest = m.clone();
        bad_digest.catalogue[0].sha256 = "../../etc/passwd".into();
        for bad in [wrong_format.encode(), orphan.encode(), bad_digest.encode(), b"{".to_vec()] {
            let e = Manifest::decode(&bad).err().map(|e| (e.status, e.code.to_string()));
            assert_eq!(e, Some((StatusCode::UNPROCESSABLE_ENTITY, "BACKUP_CORRUPT".to_string())));
        }
    }
}
