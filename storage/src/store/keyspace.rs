//! Keyspace: the column families, the row-key encodings (every key starts with the 8-byte
//! big-endian namespace id), and the byte encodings of vectors and staged vectors.

use serde::{Deserialize, Serialize};

use crate::error::{Result, StorageError};

pub const CF_MEM: &str = "mem";
pub const CF_VEC: &str = "vec";
pub const CF_IDX: &str = "idx";
pub const CF_REPL: &str = "repl";
pub const CF_NSMETA: &str = "nsmeta";
/// Rows of a full copy being received, kept apart from the replica's own rows until the copy
/// is complete (`stage_key`).
pub const CF_STAGE: &str = "stage";
pub(super) const ALL_CFS: [&str; 6] = [CF_MEM, CF_VEC, CF_IDX, CF_REPL, CF_NSMETA, CF_STAGE];
/// The column families a full copy carries, with their tag in a staged row's key.
pub(super) const COPY_CFS: [(&str, u8); 4] = [(CF_MEM, 0), (CF_VEC, 1), (CF_IDX, 2), (CF_REPL, 3)];

pub(super) const KIND_MEMORY: u8 = b'm';
pub(super) const KIND_SESSION: u8 = b's';
/// A link between two memories; the id part is the digest of its key ([`link_id`]).
pub(super) const KIND_LINK: u8 = b'l';
/// A memory in the trash (deduplicated or consolidated), by its id.
pub(super) const KIND_TRASH: u8 = b'x';
/// A memory's feedback history, by its id.
pub(super) const KIND_FEEDBACK: u8 = b'f';
pub(super) const IDX_EXPIRY: u8 = b'e';
pub(super) const IDX_ACCESS: u8 = b'a';
/// A vector computed by a re-embedding job for the next embedder generation (not yet live).
pub(super) const IDX_STAGED: u8 = b'v';
/// The embedder generation the live vectors were made with (one row per namespace, id "").
pub(super) const IDX_GENERATION: u8 = b'g';

#[derive(Serialize, Deserialize, Default)]
pub(super) struct AccessStats {
    pub(super) count: u64,
    pub(super) last: u64,
}

pub(super) fn prefix(ns: u64) -> [u8; 8] {
    ns.to_be_bytes()
}

pub(super) fn row_key(ns: u64, kind: u8, id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + id.len());
    k.extend_from_slice(&prefix(ns));
    k.push(kind);
    k.extend_from_slice(id.as_bytes());
    k
}

/// The row id of a link: a digest of (from, to, type), so any id is safe in a key.
pub(super) fn link_id(key: &crate::graph::LinkKey) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update((key.0.len() as u64).to_be_bytes());
    h.update(key.0.as_bytes());
    h.update((key.1.len() as u64).to_be_bytes());
    h.update(key.1.as_bytes());
    h.update(key.2.as_str().as_bytes());
    hex::encode(&h.finalize()[..16])
}

pub(super) fn vec_key(ns: u64, id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + id.len());
    k.extend_from_slice(&prefix(ns));
    k.extend_from_slice(id.as_bytes());
    k
}

pub(super) fn expiry_key(ns: u64, at: u64, id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(17 + id.len());
    k.extend_from_slice(&prefix(ns));
    k.push(IDX_EXPIRY);
    k.extend_from_slice(&at.to_be_bytes());
    k.extend_from_slice(id.as_bytes());
    k
}

/// The placement epoch a replica was fenced at (nsmeta), kept across restarts.
pub(super) fn fence_key(ns: u64) -> Vec<u8> {
    let mut k = prefix(ns).to_vec();
    k.push(b'f');
    k
}

/// The copy being received for a namespace (nsmeta): `StagedCopy`.
pub(super) fn stage_meta_key(ns: u64) -> Vec<u8> {
    let mut k = prefix(ns).to_vec();
    k.push(b'c');
    k
}

/// A staged row: the namespace prefix, the tag of its column family, the rest of its key.
pub(super) fn stage_key(tag: u8, key: &[u8]) -> Option<Vec<u8>> {
    let (ns, rest) = (key.get(..8)?, key.get(8..)?);
    Some([ns, &[tag], rest].concat())
}

/// The column family and key a staged row goes back to.
pub(super) fn unstage_key(staged: &[u8]) -> Option<(&'static str, Vec<u8>)> {
    let (ns, tag, rest) = (staged.get(..8)?, *staged.get(8)?, staged.get(9..)?);
    let cf = COPY_CFS.iter().find(|(_, t)| *t == tag)?.0;
    Some((cf, [ns, rest].concat()))
}

pub(super) fn repl_key(ns: u64, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(16);
    k.extend_from_slice(&prefix(ns));
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

pub(super) fn staged_aad(id: &str) -> Vec<u8> {
    [b"staged/".as_slice(), id.as_bytes()].concat()
}

/// A staged vector: generation, the memory version it was computed from, the vector.
pub(super) fn encode_staged(generation: u64, version: u64, v: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + 4 * v.len());
    out.extend_from_slice(&generation.to_be_bytes());
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&encode_vector(v));
    out
}

pub(super) fn decode_staged(b: &[u8]) -> Result<(u64, u64, Vec<f32>)> {
    if b.len() < 16 {
        return Err(StorageError::Encoding("staged vector".into()));
    }
    let g = u64::from_be_bytes(b[0..8].try_into().map_err(|_| StorageError::Encoding("staged".into()))?);
    let v = u64::from_be_bytes(b[8..16].try_into().map_err(|_| StorageError::Encoding("staged".into()))?);
    Ok((g, v, decode_vector(&b[16..])?))
}

pub(super) fn encode_vector(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub(super) fn decode_vector(b: &[u8]) -> Result<Vec<f32>> {
    if b.len() % 4 != 0 {
        return Err(StorageError::Encoding("vector length".into()));
    }
    Ok(b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}
