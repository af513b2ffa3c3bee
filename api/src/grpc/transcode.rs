//! Typed messages ⇄ the REST API's JSON, driven by the public descriptors (proto3's JSON mapping
//! through `prost-reflect`): field names as written in the `.proto` files, which are the REST
//! keys; fields at their default value left out (an unset field is an absent key); 64-bit integers
//! as JSON numbers; `google.protobuf.Struct` / `Value` as plain JSON. Decoding ignores keys the
//! message does not name and takes `null` as the default.

use std::sync::OnceLock;

use prost_reflect::{DescriptorPool, DeserializeOptions, DynamicMessage, MessageDescriptor, SerializeOptions};
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

/// A message as the JSON object of its REST call.
pub fn to_json<M: prost::Message>(msg: &M, full_name: &str) -> Result<Value, Status> {
    let desc = descriptor(full_name)?;
    let dynamic = DynamicMessage::decode(desc, msg.encode_to_vec().as_slice())
        .map_err(|e| Status::internal(format!("{full_name} does not re-decode: {e}")))?;
    let opts =
        SerializeOptions::new().use_proto_field_name(true).stringify_64_bit_integers(false).skip_default_fields(true);
    dynamic
        .serialize_with_options(serde_json::value::Serializer, &opts)
        .map_err(|e| Status::internal(format!("{full_name} as JSON: {e}")))
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
