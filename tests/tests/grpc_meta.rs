//! The standard gRPC services on the public port of a real node: `grpc.health.v1.Health`
//! follows the node's readiness, and server reflection lists and describes every public
//! service (what `grpcurl list` and `grpcurl describe` use).

use loci_tests::TestNode;
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

async fn channel(node: &TestNode) -> Channel {
    let addr = node.handle.as_ref().expect("running").grpc_addr;
    Channel::from_shared(format!("http://{addr}")).expect("uri").connect().await.expect("connect")
}

async fn reflect(ch: Channel, req: MessageRequest) -> MessageResponse {
    let mut client = ServerReflectionClient::new(ch);
    let outbound =
        tokio_stream::iter(vec![ServerReflectionRequest { host: String::new(), message_request: Some(req) }]);
    let mut answers = client.server_reflection_info(outbound).await.expect("reflection call").into_inner();
    answers.next().await.expect("an answer").expect("no error").message_response.expect("a response")
}

#[tokio::test]
async fn health_reports_a_ready_node_serving_and_reflection_lists_every_public_service() {
    let node = TestNode::start().await;
    let ch = channel(&node).await;
    let mut health = HealthClient::new(ch.clone());
    // Serving once ready (the status is refreshed every second).
    let mut status = ServingStatus::Unknown;
    for _ in 0..50 {
        let r = health.check(HealthCheckRequest { service: String::new() }).await;
        if let Ok(r) = r {
            status = r.into_inner().status();
            if status == ServingStatus::Serving {
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status, ServingStatus::Serving);
    for service in ["loci.v1.Loci", "loci.v1.Memories", "loci.v1.Cluster", "dakera.v1.VectorService"] {
        let r = health.check(HealthCheckRequest { service: service.into() }).await.expect("check");
        assert_eq!(r.into_inner().status(), ServingStatus::Serving, "{service}");
    }
    // An unknown service is NOT_FOUND, as the health protocol says.
    let missing = health.check(HealthCheckRequest { service: "no.such.Service".into() }).await;
    assert_eq!(missing.expect_err("unknown service").code(), tonic::Code::NotFound);

    let MessageResponse::ListServicesResponse(list) =
        reflect(ch.clone(), MessageRequest::ListServices(String::new())).await
    else {
        panic!("not a service list")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for want in
        ["loci.v1.Loci", "loci.v1.Memories", "loci.v1.Reembed", "dakera.v1.VectorService", "grpc.health.v1.Health"]
    {
        assert!(names.iter().any(|n| n == want), "{want} missing from {names:?}");
    }
    assert!(
        !names.iter().any(|n| n.contains("internal") || n.contains("raft")),
        "node-to-node services are not public: {names:?}"
    );
    // A service's file descriptor is served (what `describe` reads).
    let MessageResponse::FileDescriptorResponse(fd) =
        reflect(ch, MessageRequest::FileContainingSymbol("dakera.v1.VectorService".into())).await
    else {
        panic!("no file descriptor")
    };
    assert!(!fd.file_descriptor_proto.is_empty());
    let raw = fd.file_descriptor_proto.concat();
    assert!(raw.windows(5).any(|w| w == b"Query"), "the descriptor names the Query RPC");
}
