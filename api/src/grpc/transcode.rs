//! Typed messages ⇄ the REST API's JSON, driven by the public descriptors (proto3's JSON mapping
//! through `prost-reflect`): field names as written in the `.proto` files, which are the REST
//! keys; fields at their default value left out (an unset field is an absent key); 64-bit integers
//! as JSON numbers; 32-bit floats in their shortest form (`0.1`, not `0.10000000149011612`);
//! `google.protobuf.Struct` / `Value` as plain JSON. Decoding ignores keys the message does not
//! name and takes `null` as the default.

use std::sync::OnceLock;

use prost::Message as _;
use prost_reflect::{
    DescriptorPool, DeserializeOptions, DynamicMessage, MessageDescriptor, ReflectMessage, SerializeOptions,
};
use serde_json::Value;
use tonic::Status;

fn pool() -> Result<&'static DescriptorPool, Status> {
    static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();
    POOL.get_or_init(|| DescriptorPool::decode(crate::PUBLIC_FILE_DESCRIPTOR_SET).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| Status::internal(format!("the public descriptors do not decode: {e}")))
}

/// The descriptor of a public message, by full name (`loci.v1.Memory`).
pub fn descriptor(full_name: &str) -> Result<MessageDescriptor, Status> {
    pool()?.get_message_by_name(full_name).ok_or_else(|| Status::internal(format!("no descriptor for {full_name}")))
}

/// A typed message as a dynamic one (to take its path parameters out before it is written).
pub fn dynamic<M: prost::Message>(msg: &M, full_name: &str) -> Result<DynamicMessage, Status> {
    DynamicMessage::decode(descriptor(full_name)?, msg.encode_to_vec().as_slice())
        .map_err(|e| Status::internal(format!("{full_name} does not re-decode: {e}")))
}

fn call_options() -> SerializeOptions {
    SerializeOptions::new().use_proto_field_name(true).stringify_64_bit_integers(false).skip_default_fields(true)
}

/// A message as the JSON text of its REST call's body: 32-bit floats in their shortest form (a
/// JSON value would widen them to f64 and keep every digit of the widening, five times the bytes
/// of a vector, against the same body limit as REST). A value JSON cannot hold (a non-finite
/// number in a `Struct`) is the caller's error.
pub fn body(msg: &DynamicMessage) -> Result<Vec<u8>, Status> {
    let mut text = Vec::with_capacity(msg.encoded_len() * 3 + 16);
    msg.serialize_with_options(&mut serde_json::Serializer::new(&mut text), &call_options()).map_err(|e| {
        Status::invalid_argument(format!("{} cannot be sent as JSON: {e}", msg.descriptor().full_name()))
    })?;
    Ok(text)
}

/// A (small) message as a JSON value, for a query string.
pub fn to_json_value(msg: &DynamicMessage) -> Result<Value, Status> {
    msg.serialize_with_options(serde_json::value::Serializer, &call_options())
        .map_err(|e| Status::invalid_argument(format!("{} cannot be sent: {e}", msg.descriptor().full_name())))
}

/// A message as the JSON object of its REST call.
pub fn to_json<M: prost::Message>(msg: &M, full_name: &str) -> Result<Value, Status> {
    let text = body(&dynamic(msg, full_name)?)?;
    serde_json::from_slice(&text).map_err(|e| Status::internal(format!("{full_name} as JSON: {e}")))
}

/// A REST answer's JSON text as a message.
pub fn from_json_text<M: prost::Message + Default>(text: &[u8], full_name: &str) -> Result<M, Status> {
    let desc = descriptor(full_name)?;
    let bad = |e: &dyn std::fmt::Display| Status::internal(format!("the REST answer does not fit {full_name}: {e}"));
    let mut de = serde_json::Deserializer::from_slice(text);
    let opts = DeserializeOptions::new().deny_unknown_fields(false);
    let dynamic = DynamicMessage::deserialize_with_options(desc, &mut de, &opts).map_err(|e| bad(&e))?;
    de.end().map_err(|e| bad(&e))?;
    dynamic.transcode_to::<M>().map_err(|e| Status::internal(format!("{full_name} does not decode: {e}")))
}

/// A message as JSON for people (the operator CLI's `--json` and tables): every field, set or not
/// (unset `optional` fields are left out).
pub fn to_display_json<M: prost::Message>(msg: &M, full_name: &str) -> Result<Value, Status> {
    let desc = descriptor(full_name)?;
    let dynamic = DynamicMessage::decode(desc, msg.encode_to_vec().as_slice())
        .map_err(|e| Status::internal(format!("{full_name} does not re-decode: {e}")))?;
    let opts =
        SerializeOptions::new().use_proto_field_name(true).stringify_64_bit_integers(false).skip_default_fields(false);
    dynamic
        .serialize_with_options(serde_json::value::Serializer, &opts)
        .map_err(|e| Status::internal(format!("{full_name} as JSON: {e}")))
}

/// A REST answer as a message.
pub fn from_json<M: prost::Message + Default>(v: Value, full_name: &str) -> Result<M, Status> {
    let desc = descriptor(full_name)?;
    let opts = DeserializeOptions::new().deny_unknown_fields(false);
    let dynamic = DynamicMessage::deserialize_with_options(desc, v, &opts)
        .map_err(|e| Status::internal(format!("the REST answer does not fit {full_name}: {e}")))?;
    M::decode(prost::Message::encode_to_vec(&dynamic).as_slice())
        .map_err(|e| Status::internal(format!("{full_name} does not decode: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb;
    use serde_json::json;

    #[test]
    fn unset_fields_are_absent_and_optional_ones_are_sent_when_set() {
        let req = pb::StoreMemoryRequest {
            content: "hello".into(),
            importance: Some(0.0),
            tags: vec!["a".into()],
            ..Default::default()
        };
        let v = to_json(&req, "loci.v1.StoreMemoryRequest").unwrap();
        assert_eq!(v, json!({"content": "hello", "importance": 0.0, "tags": ["a"]}));
    }

    #[test]
    fn floats_are_written_short_and_read_back_exactly() {
        let req = pb::StoreMemoryRequest { embedding: vec![0.1, 0.0123, -3.5, f32::MAX], ..Default::default() };
        let v = to_json(&req, "loci.v1.StoreMemoryRequest").unwrap();
        assert_eq!(v.to_string(), r#"{"embedding":[0.1,0.0123,-3.5,3.4028235e+38]}"#);
        let back: Vec<f32> = serde_json::from_value(v["embedding"].clone()).unwrap();
        assert_eq!(back, req.embedding);
    }

    #[test]
    fn a_value_json_cannot_hold_is_the_callers_error() {
        use prost_types::value::Kind;
        let mut fields = std::collections::BTreeMap::new();
        fields.insert("x".to_string(), prost_types::Value { kind: Some(Kind::NumberValue(f64::NAN)) });
        let req = pb::StoreMemoryRequest { metadata: Some(prost_types::Struct { fields }), ..Default::default() };
        assert_eq!(to_json(&req, "loci.v1.StoreMemoryRequest").unwrap_err().code(), tonic::Code::InvalidArgument);
    }

    #[test]
    fn structs_are_plain_json_and_64_bit_integers_numbers() {
        let v = json!({
            "id": "m1", "namespace": "ns", "agent_id": "a", "content": "c", "memory_type": "episodic",
            "importance": 0.5, "tags": [], "metadata": {"k": [1, "x", null, {"n": true}]},
            "session_id": null, "created_at": 1_700_000_000u64, "updated_at": 1, "last_accessed_at": 2,
            "access_count": 3, "expires_at": null, "unknown_key": {"ignored": 1}
        });
        let m: pb::Memory = from_json(v, "loci.v1.Memory").unwrap();
        assert_eq!(m.created_at, 1_700_000_000);
        assert_eq!(m.session_id, None);
        let back = to_json(&m, "loci.v1.Memory").unwrap();
        assert_eq!(back["metadata"], json!({"k": [1.0, "x", null, {"n": true}]}));
        assert_eq!(back["created_at"], json!(1_700_000_000u64));
    }

    #[test]
    fn an_answer_of_the_wrong_shape_is_an_internal_error_not_a_wrong_message() {
        let e = from_json::<pb::Memory>(json!({"created_at": "yesterday"}), "loci.v1.Memory").unwrap_err();
        assert_eq!(e.code(), tonic::Code::Internal);
    }
}
