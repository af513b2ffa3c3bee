//! What a backup chunk holds and how it is cut, compressed and sealed, with no IO.
//!
//! A namespace's snapshot (its rows, sealed as on disk) is cut into chunks at content-defined
//! boundaries: after a row whose key hashes to a boundary value once the chunk holds at least
//! [`MIN_CHUNK`] bytes, or at [`MAX_CHUNK`] whatever the keys. A change to a few rows then
//! changes the chunks that hold them and leaves the others byte for byte the same, so the next
//! (incremental) backup finds most of its chunks already stored. A chunk is the rows' encoding,
//! compressed, then sealed deterministically (equal chunks seal to equal bytes, so the store's
//! content addressing still deduplicates them) under a key derived from the namespace's data
//! key: erase the data key and the chunk is unreadable.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::ServiceError;
use loci_storage::crypto::SecretKey;

/// A chunk is not cut before it holds this many bytes of rows.
pub const MIN_CHUNK: usize = 256 * 1024;
/// ... and always cut at this many.
pub const MAX_CHUNK: usize = 4 * 1024 * 1024;
/// Boundary rows: one key in this many, past the minimum.
const BOUNDARY_ONE_IN: u16 = 64;
/// The most a chunk may decode to (a bound on memory when reading a store one does not trust).
pub const MAX_DECODED: usize = 64 * 1024 * 1024;

/// One row of a snapshot: column family, key, value.
pub type Row = (String, Vec<u8>, Vec<u8>);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    #[default]
    Zstd,
    Lz4,
}

impl Compression {
    pub fn parse(s: &str) -> Option<Compression> {
        match s {
            "none" => Some(Compression::None),
            "zstd" => Some(Compression::Zstd),
            "lz4" => Some(Compression::Lz4),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Zstd => "zstd",
            Compression::Lz4 => "lz4",
        }
    }

    fn tag(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Zstd => 1,
            Compression::Lz4 => 2,
        }
    }
}

pub fn corrupt(message: impl Into<String>) -> ServiceError {
    ServiceError::new(http::StatusCode::UNPROCESSABLE_ENTITY, "BACKUP_CORRUPT", message)
}

/// Cuts a stream of rows into chunks at content-defined boundaries.
#[derive(Default)]
pub struct Chunker {
    rows: Vec<Row>,
    bytes: usize,
}

impl Chunker {
    /// Add a row; returns the chunk it completes, if it completes one.
    pub fn push(&mut self, row: Row) -> Option<Vec<Row>> {
        self.bytes += row.0.len() + row.1.len() + row.2.len() + 9;
        let boundary = is_boundary(&row.0, &row.1);
        self.rows.push(row);
        if self.bytes >= MAX_CHUNK || (self.bytes >= MIN_CHUNK && boundary) {
            self.bytes = 0;
            return Some(std::mem::take(&mut self.rows));
        }
        None
    }

    /// The last, partial chunk.
    pub fn finish(self) -> Option<Vec<Row>> {
        (!self.rows.is_empty()).then_some(self.rows)
    }
}

fn is_boundary(cf: &str, key: &[u8]) -> bool {
    let mut h = Sha256::new();
    h.update(cf.as_bytes());
    h.update([0]);
    h.update(key);
    let d = h.finalize();
    u16::from_be_bytes([d[0], d[1]]) % BOUNDARY_ONE_IN == 0
}

/// `[u8 cf len][cf][u32 key len][key][u32 value len][value]` per row.
pub fn encode_rows(rows: &[Row]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows.iter().map(|r| r.0.len() + r.1.len() + r.2.len() + 9).sum());
    for (cf, k, v) in rows {
        out.push(cf.len().min(255) as u8);
        out.extend_from_slice(&cf.as_bytes()[..cf.len().min(255)]);
        out.extend_from_slice(&(k.len() as u32).to_be_bytes());
        out.extend_from_slice(k);
        out.extend_from_slice(&(v.len() as u32).to_be_bytes());
        out.extend_from_slice(v);
    }
    out
}

pub fn decode_rows(mut b: &[u8]) -> Result<Vec<Row>, ServiceError> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], ServiceError> {
        if b.len() < n {
            return Err(corrupt("a chunk's rows end early"));
        }
        let (head, tail) = b.split_at(n);
        *b = tail;
        Ok(head)
    }
    fn len32(b: &mut &[u8]) -> Result<usize, ServiceError> {
        let h = take(b, 4)?;
        Ok(u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize)
    }
    let mut rows = Vec::new();
    while !b.is_empty() {
        let n = take(&mut b, 1)?[0] as usize;
        let cf = std::str::from_utf8(take(&mut b, n)?).map_err(|_| corrupt("a row's column family is not text"))?;
        let kn = len32(&mut b)?;
        let k = take(&mut b, kn)?.to_vec();
        let vn = len32(&mut b)?;
        let v = take(&mut b, vn)?.to_vec();
        rows.push((cf.to_string(), k, v));
    }
    Ok(rows)
}

/// `[tag][compressed]`.
pub fn compress(c: Compression, data: &[u8]) -> Vec<u8> {
    let mut out = vec![c.tag()];
    match c {
        Compression::None => out.extend_from_slice(data),
        // Compressing an in-memory buffer cannot fail.
        Compression::Zstd => out.extend_from_slice(&zstd::bulk::compress(data, 3).unwrap_or_default()),
        Compression::Lz4 => out.extend_from_slice(&lz4_flex::compress_prepend_size(data)),
    }
    out
}

pub fn decompress(data: &[u8]) -> Result<Vec<u8>, ServiceError> {
    let (&tag, body) = data.split_first().ok_or_else(|| corrupt("an empty chunk"))?;
    let out = match tag {
        0 => body.to_vec(),
        1 => zstd::bulk::decompress(body, MAX_DECODED).map_err(|e| corrupt(format!("zstd: {e}")))?,
        2 => {
            let n = body.get(..4).map(|h| u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize).unwrap_or(usize::MAX);
            if n > MAX_DECODED {
                return Err(corrupt("a chunk decodes past the limit"));
            }
            lz4_flex::decompress_size_prepended(body).map_err(|e| corrupt(format!("lz4: {e}")))?
        }
        t => return Err(corrupt(format!("unknown compression {t}"))),
    };
    if out.len() > MAX_DECODED {
        return Err(corrupt("a chunk decodes past the limit"));
    }
    Ok(out)
}

/// Seal a chunk's plaintext (already compressed) under `key`, bound to `aad`.
pub fn seal(key: &SecretKey, aad: &[u8], compressed: &[u8]) -> Vec<u8> {
    key.seal_deterministic(aad, compressed)
}

pub fn open(key: &SecretKey, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, ServiceError> {
    let compressed = key
        .open_deterministic(aad, sealed)
        .map_err(|_| corrupt("a chunk does not open under its key (wrong key or altered)"))?;
    decompress(&compressed)
}

/// The AAD of a namespace's chunks: the namespace id (a chunk cannot be passed off as another
/// namespace's).
pub fn namespace_aad(ns_id: u64) -> Vec<u8> {
    let mut aad = b"loci/backup/ns/".to_vec();
    aad.extend_from_slice(&ns_id.to_be_bytes());
    aad
}

/// The key a namespace's chunks are sealed with, from its data key.
pub fn namespace_chunk_key(dek: &SecretKey) -> SecretKey {
    dek.derive(b"loci/backup/chunk/v1")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(i: u32, vlen: usize) -> Row {
        ("mem".to_string(), format!("key-{i:08}").into_bytes(), vec![(i % 251) as u8; vlen])
    }

    fn cut(rows: impl IntoIterator<Item = Row>) -> Vec<Vec<Row>> {
        let mut c = Chunker::default();
        let mut out: Vec<Vec<Row>> = rows.into_iter().filter_map(|r| c.push(r)).collect();
        out.extend(c.finish());
        out
    }

    #[test]
    fn rows_round_trip_and_truncated_encodings_are_refused() {
        let rows = vec![row(1, 10), ("vec".into(), vec![], vec![]), row(2, 0)];
        let enc = encode_rows(&rows);
        assert_eq!(decode_rows(&enc).unwrap(), rows);
        for n in 1..enc.len() {
            if let Ok(r) = decode_rows(&enc[..n]) {
                // A prefix that ends on a row boundary decodes to fewer rows, never to others.
                assert!(r.len() < rows.len() && rows.starts_with(&r));
            }
        }
    }

    #[test]
    fn every_compression_round_trips_and_garbage_is_refused() {
        let data = encode_rows(&(0..500).map(|i| row(i, 100)).collect::<Vec<_>>());
        for c in [Compression::None, Compression::Zstd, Compression::Lz4] {
            let z = compress(c, &data);
            assert_eq!(decompress(&z).unwrap(), data, "{c:?}");
            if c != Compression::None {
                assert!(z.len() < data.len() / 2, "{c:?} does not compress repetitive rows");
            }
        }
        assert!(decompress(&[]).is_err());
        assert!(decompress(&[9, 1, 2]).is_err());
        assert!(decompress(&[1, 1, 2, 3]).is_err());
        assert!(decompress(&[2, 255, 255, 255, 255, 0]).is_err());
    }

    #[test]
    fn chunks_are_bounded_and_a_changed_row_changes_few_chunks() {
        let rows: Vec<Row> = (0..20_000).map(|i| row(i, 200)).collect();
        let a = cut(rows.clone());
        assert!(a.len() > 4, "{} chunks", a.len());
        let total: usize = a.iter().map(Vec::len).sum();
        assert_eq!(total, rows.len());
        for c in &a {
            let bytes: usize = c.iter().map(|r| r.0.len() + r.1.len() + r.2.len() + 9).sum();
            assert!(bytes <= MAX_CHUNK + 300);
        }
        // Change one row's value and insert one row in the middle: the other chunks are equal.
        let mut changed = rows.clone();
        changed[10_000].2 = vec![7; 200];
        changed.insert(5_000, ("mem".into(), b"key-00004999-new".to_vec(), vec![1; 200]));
        let b = cut(changed);
        let digests = |cs: &[Vec<Row>]| -> std::collections::BTreeSet<String> {
            cs.iter().map(|c| hex::encode(Sha256::digest(encode_rows(c)))).collect()
        };
        let (da, db) = (digests(&a), digests(&b));
        let new = db.difference(&da).count();
        assert!(new <= 4, "{new} of {} chunks changed", b.len());
    }

    #[test]
    fn sealed_chunks_are_stable_and_bound_to_their_namespace_and_key() {
        let dek = SecretKey::random();
        let key = namespace_chunk_key(&dek);
        let data = compress(Compression::Zstd, &encode_rows(&[row(1, 50)]));
        let s1 = seal(&key, &namespace_aad(1), &data);
        assert_eq!(s1, seal(&key, &namespace_aad(1), &data));
        assert_eq!(decode_rows(&open(&key, &namespace_aad(1), &s1).unwrap()).unwrap(), vec![row(1, 50)]);
        assert!(open(&key, &namespace_aad(2), &s1).is_err());
        assert!(open(&namespace_chunk_key(&SecretKey::random()), &namespace_aad(1), &s1).is_err());
        // The plaintext rows do not appear in the sealed chunk.
        let marker = b"key-00000001";
        assert!(!s1.windows(marker.len()).any(|w| w == marker));
    }
}
