//! `loci.v1.Events`: each event stream as a server-streaming RPC over the REST SSE route it
//! stands for (same authentication, scoping, audit and resumption): the route's SSE frames
//! become `StreamEvent` messages as they arrive.

use std::pin::Pin;

use axum::http::Method;
use futures::{Stream, StreamExt};
use serde_json::{Value, json};
use tonic::{Request, Response, Status};

use super::rest::{Rest, pass_back, request_of};
use super::transcode;
use crate::pb;

/// A stream of events for one RPC.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<pb::StreamEvent, Status>> + Send>>;

/// The most one SSE frame may hold before the stream is refused as malformed.
const MAX_FRAME: usize = 4 * 1024 * 1024;

#[derive(Clone)]
pub struct EventsGrpc(pub Rest);

impl EventsGrpc {
    pub const ROUTES: &'static [(&'static str, &'static str, &'static str)] = &[
        ("/loci.v1.Events/Memory", "GET", "/v1/events/stream"),
        ("/loci.v1.Events/Namespace", "GET", "/v1/namespaces/{namespace}/events"),
        ("/loci.v1.Events/Ops", "GET", "/ops/events"),
        ("/loci.v1.Events/Audit", "GET", "/v1/audit/stream"),
    ];

    async fn open<Req: prost::Message>(
        &self,
        req: Request<Req>,
        rpc: &'static str,
        req_name: &str,
        template: &str,
    ) -> Result<Response<EventStream>, Status> {
        let peer = req.remote_addr();
        let (path, _) = request_of(req.get_ref(), req_name, &Method::GET, template)?;
        let resp = self.0.send(req.metadata(), peer, rpc, Method::GET, &path, None).await?;
        let headers = resp.headers().clone();
        let body = resp.into_body().into_data_stream();
        let frames = futures::stream::unfold((body, Vec::<u8>::new()), |(mut body, mut buf)| async move {
            loop {
                if let Some(end) = find_frame_end(&buf) {
                    let frame: Vec<u8> = buf.drain(..end.1).collect();
                    match parse_frame(&frame[..end.0]) {
                        Some(Ok(ev)) => return Some((Ok(ev), (body, buf))),
                        Some(Err(st)) => return Some((Err(st), (body, buf))),
                        None => continue,
                    }
                }
                if buf.len() > MAX_FRAME {
                    return Some((Err(Status::internal("an event is larger than 4 MiB")), (body, Vec::new())));
                }
                match body.next().await {
                    Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                    Some(Err(e)) => return Some((Err(Status::unavailable(e.to_string())), (body, Vec::new()))),
                    None => return None,
                }
            }
        });
        let mut out = Response::new(Box::pin(frames) as EventStream);
        pass_back(&headers, out.metadata_mut());
        Ok(out)
    }
}

/// (end of the frame's text, end including its blank line) of the first complete frame.
fn find_frame_end(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| (i, i + 2));
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, i + 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 < b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// One SSE frame as a message; None for a frame with no data (a keep-alive comment).
fn parse_frame(frame: &[u8]) -> Option<Result<pb::StreamEvent, Status>> {
    let text = String::from_utf8_lossy(frame);
    let (mut event, mut id, mut data) = (String::new(), String::new(), Vec::<&str>::new());
    for line in text.lines() {
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').map_or((line, ""), |(f, v)| (f, v.strip_prefix(' ').unwrap_or(v)));
        match field {
            "event" => event = value.to_string(),
            "id" => id = value.to_string(),
            "data" => data.push(value),
            _ => {}
        }
    }
    if data.is_empty() {
        return None;
    }
    let data: Value = match serde_json::from_str(&data.join("\n")) {
        Ok(v @ Value::Object(_)) => v,
        Ok(other) => json!({"value": other}),
        Err(e) => return Some(Err(Status::internal(format!("an event's data is not JSON: {e}")))),
    };
    let msg = json!({"id": id, "event_type": event, "data": data});
    Some(transcode::from_json_text::<pb::StreamEvent>(msg.to_string().as_bytes(), "loci.v1.StreamEvent"))
}

#[tonic::async_trait]
impl pb::events_server::Events for EventsGrpc {
    type MemoryStream = EventStream;
    type NamespaceStream = EventStream;
    type OpsStream = EventStream;
    type AuditStream = EventStream;

    async fn memory(&self, req: Request<pb::EventsSubscribeRequest>) -> Result<Response<EventStream>, Status> {
        self.open(req, "/loci.v1.Events/Memory", "loci.v1.EventsSubscribeRequest", Self::ROUTES[0].2).await
    }

    async fn namespace(&self, req: Request<pb::NamespaceEventsRequest>) -> Result<Response<EventStream>, Status> {
        self.open(req, "/loci.v1.Events/Namespace", "loci.v1.NamespaceEventsRequest", Self::ROUTES[1].2).await
    }

    async fn ops(&self, req: Request<pb::EventsSubscribeRequest>) -> Result<Response<EventStream>, Status> {
        self.open(req, "/loci.v1.Events/Ops", "loci.v1.EventsSubscribeRequest", Self::ROUTES[2].2).await
    }

    async fn audit(&self, req: Request<pb::EventsSubscribeRequest>) -> Result<Response<EventStream>, Status> {
        self.open(req, "/loci.v1.Events/Audit", "loci.v1.EventsSubscribeRequest", Self::ROUTES[3].2).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_become_messages_and_comments_nothing() {
        let buf = b": keep-alive\n\nevent: stored\nid: 1:5\ndata: {\"memory_id\":\"m1\"}\n\nevent: x";
        let (end, next) = find_frame_end(buf).unwrap_or_else(|| panic!("a frame"));
        assert!(parse_frame(&buf[..end]).is_none(), "a comment is no event");
        let rest = &buf[next..];
        let (end, _) = find_frame_end(rest).unwrap_or_else(|| panic!("a second frame"));
        let ev = parse_frame(&rest[..end]).and_then(Result::ok).unwrap_or_else(|| panic!("an event"));
        assert_eq!((ev.id.as_str(), ev.event_type.as_str()), ("1:5", "stored"));
        let data = ev.data.unwrap_or_default();
        assert!(data.fields.contains_key("memory_id"));
        assert!(find_frame_end(b"event: x\ndata: {}").is_none(), "an unfinished frame waits");
    }
}
