//! One gRPC call answered as the REST call it stands for: the RPC's credentials (`x-api-key` or
//! `authorization` metadata) and user agent become the request's headers, its peer address the
//! connection's, and the RPC's name is attached for the audit record. The REST router then runs
//! the same layers and handler as for a REST client (authentication, rate limits, audit, metrics,
//! validation, the service call). A 2xx answer's JSON is returned with the headers worth passing
//! on as response metadata (request id, node, rate-limit headers); any other answer becomes the
//! gRPC status of its class with the REST error's code in a `google.rpc.ErrorInfo`, and the same
//! headers as the status's metadata.

use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method};
use prost_reflect::DynamicMessage;
use serde_json::{Map, Value};
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Request, Response, Status};
use tower::ServiceExt;

use super::transcode;
use crate::error::ApiError;
use loci_service::ServiceError;

/// The gRPC method a REST request stands for (`/loci.v1.Memories/Store`): a request extension,
/// which a REST client cannot set, read by the audit layer.
#[derive(Clone, Copy, Debug)]
pub struct GrpcMethod(pub &'static str);

/// Metadata passed on to the REST request.
const FORWARDED: [&str; 3] = ["x-api-key", "authorization", "user-agent"];

/// REST answer headers passed back as response metadata.
fn passed_back(name: &str) -> bool {
    matches!(name, "x-request-id" | "x-loci-node" | "retry-after" | "x-loci-namespaces-truncated")
        || name.starts_with("ratelimit-")
        || name.starts_with("x-ratelimit-")
}

/// Largest REST answer read back (the gRPC encoder has its own limit).
const MAX_ANSWER_BYTES: usize = 256 * 1024 * 1024;

/// A path segment: unreserved characters as they are, everything else percent-encoded.
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The REST path for a template (`/v1/sessions/{id}/end`): each `{name}` is the request's field of
/// that name, as `take` takes it out of the request (a missing or empty one is
/// `INVALID_ARGUMENT`).
pub fn fill_path(template: &str, mut take: impl FnMut(&str) -> Option<String>) -> Result<String, Status> {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}') else {
            return Err(Status::internal(format!("bad path template {template}")));
        };
        let name = &rest[open + 1..open + close];
        let value = take(name).filter(|s| !s.is_empty());
        let value = value.ok_or_else(|| Status::invalid_argument(format!("{name} is required")))?;
        out.push_str(&segment(&value));
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Takes a scalar field out of a request message, as text.
fn take_field(msg: &mut DynamicMessage, name: &str) -> Option<String> {
    use prost_reflect::Value as V;
    let v = msg.get_field_by_name(name)?.into_owned();
    msg.clear_field_by_name(name);
    match v {
        V::String(s) => Some(s),
        V::U64(n) => Some(n.to_string()),
        V::I64(n) => Some(n.to_string()),
        V::U32(n) => Some(n.to_string()),
        V::I32(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `fields` as a query string (scalars only; lists repeat the key).
pub fn query_string(fields: &Map<String, Value>) -> Result<String, Status> {
    let mut parts = Vec::new();
    for (k, v) in fields {
        let values: Vec<&Value> = match v {
            Value::Array(a) => a.iter().collect(),
            other => vec![other],
        };
        for v in values {
            let s = scalar(v).ok_or_else(|| Status::internal(format!("{k} cannot be a query parameter")))?;
            parts.push(format!("{}={}", segment(k), segment(&s)));
        }
    }
    Ok(parts.join("&"))
}

/// A non-2xx REST answer as a gRPC status (the REST error's `code`, message and details).
fn status_of(http: u16, headers: &HeaderMap, v: &Value) -> Status {
    let text = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    let code = text("code").unwrap_or_else(|| "INTERNAL_ERROR".into());
    // A 429 carries its text in `message` (`error` is the label `rate_limited`).
    let message =
        text("message").filter(|_| http == 429).or_else(|| text("error")).unwrap_or_else(|| format!("HTTP {http}"));
    let mut e = ServiceError::from_wire(http, code, message);
    if let Some(d) = text("details") {
        e = e.with_details(d);
    }
    if let Some(r) = text("resource") {
        e = e.with_resource(r);
    }
    let retry = headers.get("retry-after").and_then(|h| h.to_str().ok()).and_then(|s| s.parse::<u64>().ok());
    if let Some(s) = retry {
        e = e.with_retry_after(s);
    }
    ApiError(e).into()
}

/// Calls the REST router on behalf of gRPC callers.
#[derive(Clone)]
pub struct Rest {
    router: axum::Router,
}

impl Rest {
    pub fn new(router: axum::Router) -> Self {
        Rest { router }
    }

    /// One REST call with the RPC's credentials: the 2xx answer's JSON and headers, else the
    /// status of the REST error.
    pub async fn call(
        &self,
        md: &MetadataMap,
        peer: Option<SocketAddr>,
        rpc: &'static str,
        method: Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(axum::body::Bytes, HeaderMap), Status> {
        let resp = self.send(md, peer, rpc, method, path_and_query, body).await?;
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), MAX_ANSWER_BYTES)
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok((bytes, headers))
    }

    /// One REST call with the RPC's credentials: the 2xx answer as it streams, else the status
    /// of the REST error.
    pub async fn send(
        &self,
        md: &MetadataMap,
        peer: Option<SocketAddr>,
        rpc: &'static str,
        method: Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
    ) -> Result<axum::response::Response, Status> {
        let mut builder = axum::http::Request::builder().method(method).uri(path_and_query);
        for name in FORWARDED {
            if let Some(v) = md.get(name).and_then(|v| v.to_str().ok()) {
                builder = builder.header(name, v);
            }
        }
        if md.get("user-agent").is_none() {
            builder = builder.header("user-agent", "grpc");
        }
        let body = match body {
            Some(b) => {
                builder = builder.header("content-type", "application/json");
                axum::body::Body::from(b)
            }
            None => axum::body::Body::empty(),
        };
        let mut req = builder.body(body).map_err(|e| Status::invalid_argument(e.to_string()))?;
        req.extensions_mut().insert(GrpcMethod(rpc));
        if let Some(addr) = peer {
            req.extensions_mut().insert(ConnectInfo(addr));
        }
        let resp = self.router.clone().oneshot(req).await.map_err(|e| Status::internal(e.to_string()))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), MAX_ANSWER_BYTES)
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let mut st = status_of(status.as_u16(), &headers, &v);
        pass_back(&headers, st.metadata_mut());
        Err(st)
    }

    /// A typed unary RPC: the request message (`req_name`) as the REST call `method template`
    /// (path parameters from its fields; the other fields the query of a GET or DELETE, else the
    /// JSON body), the answer as the response message (`resp_name`); an answer that is a JSON
    /// array is first wrapped as `{wrap: [...]}`.
    #[allow(clippy::too_many_arguments)]
    pub async fn unary<Req, Resp>(
        &self,
        req: Request<Req>,
        rpc: &'static str,
        req_name: &str,
        resp_name: &str,
        method: Method,
        template: &str,
        wrap: Option<&str>,
    ) -> Result<Response<Resp>, Status>
    where
        Req: prost::Message,
        Resp: prost::Message + Default,
    {
        let peer = req.remote_addr();
        let (path, body) = request_of(req.get_ref(), req_name, &method, template)?;
        let (text, headers) = self.call(req.metadata(), peer, rpc, method, &path, body).await?;
        // An answer that is a JSON array becomes the message's list field.
        let wrapped;
        let text: &[u8] = match wrap {
            Some(field) if text.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') => {
                wrapped = [format!("{{\"{field}\":").as_bytes(), &text[..], b"}"].concat();
                &wrapped
            }
            _ if text.is_empty() => b"{}",
            _ => &text[..],
        };
        let mut resp = Response::new(transcode::from_json_text::<Resp>(text, resp_name)?);
        pass_back(&headers, resp.metadata_mut());
        Ok(resp)
    }
}

/// The REST path (with the query of a GET or DELETE) and body of a request message.
pub fn request_of<Req: prost::Message>(
    req: &Req,
    req_name: &str,
    method: &Method,
    template: &str,
) -> Result<(String, Option<Vec<u8>>), Status> {
    let mut msg = transcode::dynamic(req, req_name)?;
    let mut path = fill_path(template, |name| take_field(&mut msg, name))?;
    if method == Method::GET || method == Method::DELETE {
        let Value::Object(fields) = transcode::to_json_value(&msg)? else {
            return Err(Status::internal(format!("{req_name} is not a JSON object")));
        };
        let q = query_string(&fields)?;
        if !q.is_empty() {
            path.push(if path.contains('?') { '&' } else { '?' });
            path.push_str(&q);
        }
        Ok((path, None))
    } else {
        Ok((path, Some(transcode::body(&msg)?)))
    }
}

/// Copies the REST answer's headers worth keeping into gRPC response metadata.
pub fn pass_back(headers: &HeaderMap, md: &mut MetadataMap) {
    for (name, value) in headers {
        if !passed_back(name.as_str()) {
            continue;
        }
        if let (Ok(key), Ok(v)) = (
            tonic::metadata::MetadataKey::from_bytes(name.as_str().as_bytes()),
            MetadataValue::try_from(value.as_bytes()),
        ) {
            md.insert(key, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn path_parameters_are_one_segment_each_and_required() {
        let mut f = json!({"ns": "a/b?c", "id": 7, "keep": "x"}).as_object().cloned().unwrap();
        let take = |f: &mut Map<String, Value>, n: &str| f.remove(n).as_ref().and_then(scalar);
        assert_eq!(
            fill_path("/v1/namespaces/{ns}/keys/{id}", |n| take(&mut f, n)).unwrap(),
            "/v1/namespaces/a%2Fb%3Fc/keys/7"
        );
        assert_eq!(f.len(), 1, "path parameters leave the body");
        let mut empty = json!({"ns": ""}).as_object().cloned().unwrap();
        let e = fill_path("/v1/namespaces/{ns}", |n| take(&mut empty, n)).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert_eq!(fill_path("/v1/namespaces/{ns}", |_| None).unwrap_err().code(), tonic::Code::InvalidArgument);
    }

    #[test]
    fn query_strings_encode_scalars_and_refuse_objects() {
        let f = json!({"limit": 5, "agent_id": "a b&c", "active_only": true}).as_object().cloned().unwrap();
        assert_eq!(query_string(&f).unwrap(), "active_only=true&agent_id=a%20b%26c&limit=5");
        let bad = json!({"filter": {"a": 1}}).as_object().cloned().unwrap();
        assert!(query_string(&bad).is_err());
    }

    #[test]
    fn a_rest_error_keeps_its_code_class_and_retry_hint() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", "7".parse().unwrap());
        let st = status_of(429, &h, &json!({"error": "rate_limited", "message": "slow down", "code": "RATE_LIMITED"}));
        assert_eq!(st.code(), tonic::Code::ResourceExhausted);
        assert_eq!(st.message(), "slow down");
        assert_eq!(st.metadata().get("x-loci-code").unwrap(), "RATE_LIMITED");
        let st = status_of(403, &HeaderMap::new(), &json!({"error": "no", "code": "NAMESPACE_FORBIDDEN"}));
        assert_eq!(st.code(), tonic::Code::PermissionDenied);
    }
}
