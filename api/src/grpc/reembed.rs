//! `loci.v1.Reembed`: `Start` and `Get` are their REST calls; `Watch` streams the job.
//!
//! `Watch` answers first through the REST router, exactly as `Get` (so the key is authenticated,
//! rate-limited and audited once, and a refusal is the RPC's status). It then re-reads the local
//! catalogue every [`WATCH_EVERY`], re-authenticating the key each time (a key revoked, expired
//! or narrowed while watching ends the stream with that refusal), and sends the job whenever it
//! changed, until it is no longer running (or has not reported for the time after which a
//! running job counts as abandoned). Those re-reads are not separate REST requests: they
//! are neither audited nor counted against the key's rate limit.

use std::pin::Pin;
use std::time::Duration;

use axum::http::Method;
use futures::Stream;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use super::rest::Rest;
use super::transcode;
use crate::auth::{Scope, authenticate, presented_key};
use crate::error::ApiError;
use crate::pb;
use crate::state::AppState;

/// How often `Watch` looks at the job.
pub const WATCH_EVERY: Duration = Duration::from_millis(500);

const GET: &str = "/v1/namespaces/{ns}/reembed";

/// `loci.v1.Reembed` over the REST router and, for `Watch`'s re-reads, the service.
#[derive(Clone)]
pub struct ReembedGrpc {
    pub rest: Rest,
    pub state: AppState,
}

impl ReembedGrpc {
    /// (RPC, HTTP method, REST path template) of every RPC.
    pub const ROUTES: &'static [(&'static str, &'static str, &'static str)] = &[
        ("/loci.v1.Reembed/Start", "POST", GET),
        ("/loci.v1.Reembed/Get", "GET", GET),
        ("/loci.v1.Reembed/Watch", "GET", GET),
    ];

    /// The job as the service sees it now, for the key the RPC presented.
    fn current(state: &AppState, md: &MetadataMap, ns: &str) -> Result<pb::ReembedJob, Status> {
        let headers = md.clone().into_headers();
        let secret = presented_key(&headers).ok_or_else(|| {
            Status::from(ApiError::unauthenticated(
                "an API key is required (authorization: Bearer <key> or x-api-key metadata)",
            ))
        })?;
        let p = authenticate(&state.core, &secret).map_err(|e| Status::from(ApiError::from(e)))?;
        let entry = state.core.ns().visible(&p, ns, Scope::Read).map_err(|e| Status::from(ApiError::from(e)))?;
        transcode::from_json(crate::routes::namespaces::reembed_json(&entry), "loci.v1.ReembedJob")
    }
}

/// Still worth watching: running, and reported on within the time after which a running job
/// counts as abandoned (its node stopped; a new job may then start).
fn running(j: &pb::ReembedJob, now: u64) -> bool {
    j.job.as_ref().is_some_and(|s| {
        s.state == "running" && now.saturating_sub(s.updated_at) < loci_service::reembed::ABANDONED_AFTER_SECS
    })
}

#[tonic::async_trait]
impl pb::reembed_server::Reembed for ReembedGrpc {
    async fn start(&self, req: Request<pb::StartReembedRequest>) -> Result<Response<pb::StartReembedResponse>, Status> {
        self.rest
            .unary(
                req,
                "/loci.v1.Reembed/Start",
                "loci.v1.StartReembedRequest",
                "loci.v1.StartReembedResponse",
                Method::POST,
                GET,
                None,
            )
            .await
    }

    async fn get(&self, req: Request<pb::GetReembedRequest>) -> Result<Response<pb::ReembedJob>, Status> {
        self.rest
            .unary(
                req,
                "/loci.v1.Reembed/Get",
                "loci.v1.GetReembedRequest",
                "loci.v1.ReembedJob",
                Method::GET,
                GET,
                None,
            )
            .await
    }

    type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::ReembedJob, Status>> + Send + 'static>>;

    async fn watch(&self, req: Request<pb::WatchReembedRequest>) -> Result<Response<Self::WatchStream>, Status> {
        let md = req.metadata().clone();
        let ns = req.get_ref().ns.clone();
        // The same request (metadata, peer address) as a `Get`.
        let get = req.map(|w| pb::GetReembedRequest { ns: w.ns });
        let first = self
            .rest
            .unary::<_, pb::ReembedJob>(
                get,
                "/loci.v1.Reembed/Watch",
                "loci.v1.GetReembedRequest",
                "loci.v1.ReembedJob",
                Method::GET,
                GET,
                None,
            )
            .await?;
        let (metadata, first, _) = first.into_parts();
        let state = self.state.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let mut last = first.clone();
            if tx.send(Ok(first)).await.is_err() {
                return;
            }
            while running(&last, loci_storage::model::now_secs()) {
                tokio::select! {
                    _ = tx.closed() => return,
                    _ = tokio::time::sleep(WATCH_EVERY) => {}
                }
                match Self::current(&state, &md, &ns) {
                    Ok(job) if job == last => {}
                    Ok(job) => {
                        last = job.clone();
                        if tx.send(Ok(job)).await.is_err() {
                            return;
                        }
                    }
                    Err(st) => {
                        let _ = tx.send(Err(st)).await;
                        return;
                    }
                }
            }
        });
        let stream: Self::WatchStream = Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx));
        let mut resp = Response::new(stream);
        // The first answer's request id and rate-limit headers.
        *resp.metadata_mut() = metadata;
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(state: &str, updated_at: u64) -> pb::ReembedJob {
        pb::ReembedJob {
            job: Some(pb::ReembedJobStatus { state: state.into(), updated_at, ..Default::default() }),
            ..Default::default()
        }
    }

    #[test]
    fn a_watch_ends_with_the_job_or_when_it_stopped_reporting() {
        let now = 10_000;
        assert!(running(&job("running", now - 5), now));
        assert!(!running(&job("completed", now), now));
        assert!(!running(&job("failed", now), now));
        assert!(!running(&pb::ReembedJob::default(), now), "no job at all");
        let stale = now - loci_service::reembed::ABANDONED_AFTER_SECS;
        assert!(!running(&job("running", stale), now), "its node stopped: abandoned");
    }
}
