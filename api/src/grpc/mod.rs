//! The public gRPC front, package `loci.v1` (`proto/loci.proto`, `proto/loci/v1/*.proto`).
//!
//! `Loci.Health` answers without a key. Every RPC of the typed services (`Memories`, `Sessions`,
//! `Agents`, `Namespaces`, `Reembed`, `Keys`, `Quotas`, `Tokens`, `Audit`, `Vectors`, `Documents`, `Cluster`,
//! `Backups`, `Webhooks`, `Knowledge`, `Maintenance`) is
//! one REST call: its request message is transcoded into that call's JSON by the public
//! descriptors ([`transcode`]), the call runs through the REST router with the RPC's credentials
//! ([`rest`]), and the JSON answer is transcoded into the response message. Both fronts therefore
//! have the same authentication, scopes, validation, rate limits, audit records, service calls
//! and errors by construction; the route each RPC stands for is written next to it in
//! [`services`] and in the `.proto` files.

pub mod events;
pub mod reembed;
pub mod rest;
pub mod services;
pub mod transcode;

use crate::pb::loci_server::Loci;
use crate::pb::{HealthRequest, HealthResponse};
use crate::state::AppState;
use tonic::{Request, Response, Status};

pub use events::EventsGrpc;
pub use reembed::ReembedGrpc;
pub use rest::Rest;
pub use services::*;

/// The public gRPC services (`grpc.health.v1.Health` reports each of them).
pub const SERVICE_NAMES: &[&str] = &[
    "loci.v1.Loci",
    "loci.v1.Memories",
    "loci.v1.Sessions",
    "loci.v1.Agents",
    "loci.v1.Namespaces",
    "loci.v1.Reembed",
    "loci.v1.Keys",
    "loci.v1.Quotas",
    "loci.v1.Tokens",
    "loci.v1.Audit",
    "loci.v1.Vectors",
    "loci.v1.Documents",
    "loci.v1.Cluster",
    "loci.v1.Webhooks",
    "loci.v1.Events",
    "loci.v1.Backups",
    "loci.v1.Knowledge",
    "loci.v1.Maintenance",
    "dakera.v1.VectorService",
];

/// (RPC, HTTP method, REST path template) of every typed RPC.
pub fn typed_routes() -> Vec<(&'static str, &'static str, &'static str)> {
    [
        MemoriesGrpc::ROUTES,
        SessionsGrpc::ROUTES,
        AgentsGrpc::ROUTES,
        NamespacesGrpc::ROUTES,
        ReembedGrpc::ROUTES,
        KeysGrpc::ROUTES,
        QuotasGrpc::ROUTES,
        TokensGrpc::ROUTES,
        AuditGrpc::ROUTES,
        VectorsGrpc::ROUTES,
        DocumentsGrpc::ROUTES,
        ClusterGrpc::ROUTES,
        WebhooksGrpc::ROUTES,
        BackupsGrpc::ROUTES,
        KnowledgeGrpc::ROUTES,
        MaintenanceGrpc::ROUTES,
        EventsGrpc::ROUTES,
    ]
    .concat()
}

/// Every public gRPC service of a node over its REST `router`, each decoding messages of up to
/// `max_message` bytes.
pub fn public_routes(state: AppState, router: axum::Router, max_message: usize) -> tonic::service::Routes {
    use crate::pb::*;
    let rest = Rest::new(router.clone());
    let version = state.core.config.version.clone();
    let node_id = state.core.config.node_id;
    let mut b = tonic::service::RoutesBuilder::default();
    b.add_service(loci_server::LociServer::new(LociService { node_id, version: version.clone() }));
    b.add_service(
        memories_server::MemoriesServer::new(MemoriesGrpc(rest.clone())).max_decoding_message_size(max_message),
    );
    b.add_service(
        sessions_server::SessionsServer::new(SessionsGrpc(rest.clone())).max_decoding_message_size(max_message),
    );
    b.add_service(agents_server::AgentsServer::new(AgentsGrpc(rest.clone())).max_decoding_message_size(max_message));
    b.add_service(
        namespaces_server::NamespacesServer::new(NamespacesGrpc(rest.clone())).max_decoding_message_size(max_message),
    );
    b.add_service(
        reembed_server::ReembedServer::new(ReembedGrpc { rest: rest.clone(), state })
            .max_decoding_message_size(max_message),
    );
    b.add_service(keys_server::KeysServer::new(KeysGrpc(rest.clone())).max_decoding_message_size(max_message));
    b.add_service(quotas_server::QuotasServer::new(QuotasGrpc(rest.clone())).max_decoding_message_size(max_message));
    b.add_service(tokens_server::TokensServer::new(TokensGrpc(rest.clone())).max_decoding_message_size(max_message));
    b.add_service(audit_server::AuditServer::new(AuditGrpc(rest.clone())).max_decoding_message_size(max_message));
    b.add_service(vectors_server::VectorsServer::new(VectorsGrpc(rest.clone())).max_decoding_message_size(max_message));
    b.add_service(
        documents_server::DocumentsServer::new(DocumentsGrpc(rest.clone())).max_decoding_message_size(max_message),
    );
    b.add_service(
        webhooks_server::WebhooksServer::new(WebhooksGrpc(rest.clone())).max_decoding_message_size(max_message),
    );
    b.add_service(events_server::EventsServer::new(EventsGrpc(rest.clone())).max_decoding_message_size(max_message));
    b.add_service(backups_server::BackupsServer::new(BackupsGrpc(rest.clone())).max_decoding_message_size(max_message));
    b.add_service(
        knowledge_server::KnowledgeServer::new(KnowledgeGrpc(rest.clone())).max_decoding_message_size(max_message),
    );
    b.add_service(
        maintenance_server::MaintenanceServer::new(MaintenanceGrpc(rest.clone()))
            .max_decoding_message_size(max_message),
    );
    b.add_service(cluster_server::ClusterServer::new(ClusterGrpc(rest)).max_decoding_message_size(max_message));
    b.add_service(
        crate::pb_dakera::vector_service_server::VectorServiceServer::new(crate::grpc_vectors::VectorGrpc {
            router,
            version,
        })
        .max_decoding_message_size(max_message),
    );
    b.routes()
}

/// `loci.v1.Loci`: the node's health and version, without a key.
pub struct LociService {
    pub node_id: u64,
    pub version: String,
}

#[tonic::async_trait]
impl Loci for LociService {
    async fn health(&self, _req: Request<HealthRequest>) -> Result<Response<HealthResponse>, Status> {
        Ok(Response::new(HealthResponse {
            status: "healthy".into(),
            version: self.version.clone(),
            node_id: self.node_id,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_typed_method_of_the_descriptors_has_a_rest_route_and_a_health_name() {
        let pool = prost_reflect::DescriptorPool::decode(crate::PUBLIC_FILE_DESCRIPTOR_SET).unwrap();
        let mut declared: Vec<String> = pool
            .services()
            .filter(|s| s.package_name() == "loci.v1" && s.name() != "Loci")
            .flat_map(|s| {
                s.methods().map(|m| format!("/{}/{}", m.parent_service().full_name(), m.name())).collect::<Vec<_>>()
            })
            .collect();
        declared.sort();
        let mut routed: Vec<String> = typed_routes().iter().map(|r| r.0.to_string()).collect();
        routed.sort();
        assert_eq!(declared, routed);
        let mut services: Vec<String> = pool.services().map(|s| s.full_name().to_string()).collect();
        services.sort();
        let mut named: Vec<String> = SERVICE_NAMES.iter().map(|s| s.to_string()).collect();
        named.sort();
        assert_eq!(services, named, "health reports every public service");
        for (rpc, method, path) in typed_routes() {
            assert!(["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&method), "{rpc}");
            assert!(path.starts_with('/'), "{rpc}");
        }
    }
}
