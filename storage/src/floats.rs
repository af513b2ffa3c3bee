//! Vectors in replication entries as little-endian `f32` bytes: 4 bytes a dimension in CBOR
//! (the log on disk and the wire), instead of a decimal number per dimension. Human-readable
//! formats (JSON) keep a sequence of numbers. Reading takes either form, so log entries written
//! before (JSON) stay readable.

use serde::de::{Error, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

fn to_bytes(v: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() * 4);
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

struct Floats;

impl<'de> Visitor<'de> for Floats {
    type Value = Vec<f32>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("little-endian f32 bytes or a sequence of numbers")
    }

    fn visit_bytes<E: Error>(self, b: &[u8]) -> Result<Vec<f32>, E> {
        if b.len() % 4 != 0 {
            return Err(E::custom(format!("{} vector bytes is not a whole number of f32", b.len())));
        }
        Ok(b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    }

    fn visit_byte_buf<E: Error>(self, b: Vec<u8>) -> Result<Vec<f32>, E> {
        self.visit_bytes(&b)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<f32>, A::Error> {
        // Bounded by what the decoder holds already; the hint is not trusted beyond that.
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(65_536));
        while let Some(x) = seq.next_element::<f32>()? {
            out.push(x);
        }
        Ok(out)
    }
}

/// A vector (`#[serde(with = "crate::floats::vec")]`).
pub mod vec {
    use super::*;

    pub fn serialize<S: Serializer>(v: &[f32], s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() { s.collect_seq(v) } else { s.serialize_bytes(&to_bytes(v)) }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f32>, D::Error> {
        d.deserialize_any(Floats)
    }
}

/// An optional vector (`#[serde(with = "crate::floats::opt")]`).
pub mod opt {
    use super::*;

    #[derive(Serialize, Deserialize)]
    struct Wrap(#[serde(with = "super::vec")] Vec<f32>);

    pub fn serialize<S: Serializer>(v: &Option<Vec<f32>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_some(&Wrap(v.clone())),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<f32>>, D::Error> {
        Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
    }
}

/// Staged vectors `(id, version, vector)` (`#[serde(with = "crate::floats::staged")]`).
pub mod staged {
    use super::*;

    #[derive(Serialize)]
    struct Item<'a>(&'a str, u64, #[serde(with = "super::vec")] &'a [f32]);

    #[derive(Deserialize)]
    struct Owned(String, u64, #[serde(with = "super::vec")] Vec<f32>);

    pub fn serialize<S: Serializer>(items: &[(String, u64, Vec<f32>)], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(items.iter().map(|(id, v, x)| Item(id, *v, x)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, u64, Vec<f32>)>, D::Error> {
        Ok(Vec::<Owned>::deserialize(d)?.into_iter().map(|o| (o.0, o.1, o.2)).collect())
    }
}

#[cfg(test)]
mod tests {
    use crate::model::{MemoryRecord, Mutation, ReplEntry};

    fn entry(vector: Option<Vec<f32>>) -> ReplEntry {
        let record: MemoryRecord = serde_json::from_value(serde_json::json!({
            "id": "m1", "namespace": "ns", "agent_id": "a", "content": "hello", "memory_type": "episodic",
            "importance": 0.5, "tags": [], "metadata": null, "session_id": null, "created_at": 1,
            "updated_at": 1, "last_accessed_at": 1, "access_count": 0, "expires_at": null, "version": 1
        }))
        .expect("record");
        ReplEntry {
            seq: 7,
            epoch: 2,
            generation: 1,
            mutations: vec![
                Mutation::PutMemory { record, vector },
                Mutation::StageVectors {
                    generation: 2,
                    items: vec![("m1".into(), 1, vec![0.25, -1.5, f32::MIN_POSITIVE])],
                },
            ],
        }
    }

    fn cbor<T: serde::Serialize>(v: &T) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::into_writer(v, &mut out).expect("encode");
        out
    }

    #[test]
    fn vectors_round_trip_bit_for_bit_in_cbor_and_json() {
        for vector in [None, Some(vec![]), Some(vec![0.1, -0.0, 3.5e-20, f32::MAX, 1.0 / 3.0])] {
            let e = entry(vector);
            let back: ReplEntry = ciborium::from_reader(&cbor(&e)[..]).expect("cbor");
            assert_eq!(back, e);
            let back: ReplEntry = serde_json::from_slice(&serde_json::to_vec(&e).expect("json")).expect("json");
            assert_eq!(back, e);
        }
    }

    #[test]
    fn a_vector_costs_four_bytes_a_dimension() {
        let small = cbor(&entry(Some(vec![0.0; 1])));
        let big = cbor(&entry(Some(vec![0.123_456_79; 1025])));
        let per_dimension = (big.len() - small.len()) as f64 / 1024.0;
        assert!((4.0..4.01).contains(&per_dimension), "{per_dimension} bytes a dimension");
    }

    #[test]
    fn entries_written_with_number_sequences_still_read() {
        // The form written before: every float a JSON number.
        let mut old = serde_json::to_value(entry(None)).expect("json");
        old["mutations"][0]["PutMemory"]["vector"] = serde_json::json!([0.5, -2.0]);
        old["mutations"][1]["StageVectors"]["items"] = serde_json::json!([["m1", 1, [1.0, 2.0]]]);
        let back: ReplEntry = serde_json::from_value(old).expect("old form");
        let Mutation::PutMemory { vector, .. } = &back.mutations[0] else { panic!("put") };
        assert_eq!(vector.as_deref(), Some(&[0.5f32, -2.0][..]));
        let Mutation::StageVectors { items, .. } = &back.mutations[1] else { panic!("stage") };
        assert_eq!(items[0].2, vec![1.0, 2.0]);
    }

    #[test]
    fn a_ragged_byte_vector_is_refused() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct V(#[serde(with = "super::vec")] Vec<f32>);
        let mut bytes = Vec::new();
        ciborium::into_writer(&serde_bytes_like(&[1, 2, 3, 4, 5]), &mut bytes).expect("encode");
        assert!(ciborium::from_reader::<V, _>(&bytes[..]).is_err());
    }

    fn serde_bytes_like(b: &[u8]) -> ciborium::Value {
        ciborium::Value::Array(vec![ciborium::Value::Bytes(b.to_vec())])
    }
}
