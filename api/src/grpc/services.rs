//! The typed `loci.v1` services, each RPC written as the REST call it stands for.

use axum::http::Method;
use tonic::{Request, Response, Status};

use super::rest::Rest;
use crate::pb;

/// One service: a type over [`Rest`] and its trait implemented RPC by RPC as
/// `Rpc rpc(Request) -> Response = METHOD "/rest/{path}" [wrap "field"];` (the
/// proto name, the generated method, the messages, the REST call; `wrap` names the field an answer
/// that is a JSON array becomes).
macro_rules! rest_service {
    ($ty:ident: $module:ident::$trait_:ident, $svc:literal {
        $( $rpc:ident $fn:ident($req:ident) -> $resp:ident = $method:ident $path:literal $(wrap $wrap:literal)?; )*
    }) => {
        #[doc = concat!("`loci.v1.", $svc, "` over the REST router.")]
        #[derive(Clone)]
        pub struct $ty(pub Rest);

        impl $ty {
            /// (RPC, HTTP method, REST path template) of every RPC.
            pub const ROUTES: &'static [(&'static str, &'static str, &'static str)] =
                &[$( (concat!("/loci.v1.", $svc, "/", stringify!($rpc)), stringify!($method), $path) ),*];
        }

        #[tonic::async_trait]
        impl pb::$module::$trait_ for $ty {
            $(
                async fn $fn(&self, req: Request<pb::$req>) -> Result<Response<pb::$resp>, Status> {
                    let wrap: Option<&str> = None $(.or(Some($wrap)))?;
                    self.0
                        .unary(
                            req,
                            concat!("/loci.v1.", $svc, "/", stringify!($rpc)),
                            concat!("loci.v1.", stringify!($req)),
                            concat!("loci.v1.", stringify!($resp)),
                            Method::$method,
                            $path,
                            wrap,
                        )
                        .await
                }
            )*
        }
    };
}

rest_service!(MemoriesGrpc: memories_server::Memories, "Memories" {
    Store store(StoreMemoryRequest) -> StoreMemoryResponse = POST "/v1/memory/store";
    StoreBatch store_batch(StoreBatchRequest) -> StoreBatchResponse = POST "/v1/memories/store/batch";
    Get get(GetMemoryRequest) -> Memory = GET "/v1/memory/get/{id}";
    Update update(UpdateMemoryRequest) -> Memory = PUT "/v1/memory/update/{id}";
    SetImportance set_importance(SetImportanceRequest) -> SetImportanceResponse = POST "/v1/memory/importance";
    Forget forget(ForgetRequest) -> ForgetResponse = POST "/v1/memory/forget";
    ForgetBatch forget_batch(ForgetBatchRequest) -> ForgetResponse = POST "/v1/memories/forget/batch";
    List list(ListMemoriesRequest) -> ListMemoriesResponse = GET "/v1/agents/{agent_id}/memories" wrap "memories";
    Recall recall(RecallRequest) -> RecallResponse = POST "/v1/memory/recall";
    RecallBatch recall_batch(RecallBatchRequest) -> RecallBatchResponse = POST "/v1/memories/recall/batch";
    Search search(RecallRequest) -> SearchResponse = POST "/v1/memory/search";
    ImportStatus import_status(ImportStatusRequest) -> ImportJob = GET "/v1/import/{job_id}/status";
});

rest_service!(SessionsGrpc: sessions_server::Sessions, "Sessions" {
    Start start(StartSessionRequest) -> StartSessionResponse = POST "/v1/sessions/start";
    Get get(GetSessionRequest) -> Session = GET "/v1/sessions/{id}";
    List list(ListSessionsRequest) -> ListSessionsResponse = GET "/v1/sessions";
    End end(EndSessionRequest) -> EndSessionResponse = POST "/v1/sessions/{id}/end";
    Touch touch(TouchSessionRequest) -> TouchSessionResponse = POST "/v1/sessions/{id}/touch";
    Memories memories(SessionMemoriesRequest) -> SessionMemoriesResponse = GET "/v1/sessions/{id}/memories";
});

rest_service!(AgentsGrpc: agents_server::Agents, "Agents" {
    List list(ListAgentsRequest) -> ListAgentsResponse = GET "/v1/agents" wrap "agents";
    Create create(CreateAgentRequest) -> CreateAgentResponse = POST "/v1/agents";
    Stats stats(AgentStatsRequest) -> AgentStats = GET "/v1/agents/{id}/stats";
    Memories memories(AgentMemoriesRequest) -> AgentMemoriesResponse = GET "/v1/agents/{id}/memories" wrap "memories";
    Sessions sessions(AgentSessionsRequest) -> AgentSessionsResponse = GET "/v1/agents/{id}/sessions" wrap "sessions";
});

rest_service!(NamespacesGrpc: namespaces_server::Namespaces, "Namespaces" {
    List list(ListNamespacesRequest) -> ListNamespacesResponse = GET "/v1/namespaces";
    Create create(CreateNamespaceRequest) -> NamespaceCreated = POST "/v1/namespaces";
    Get get(GetNamespaceRequest) -> NamespaceInfo = GET "/v1/namespaces/{ns}";
    Configure configure(ConfigureNamespaceRequest) -> NamespaceCreated = PUT "/v1/namespaces/{ns}";
    Delete delete(DeleteNamespaceRequest) -> DeletionReceipt = DELETE "/v1/namespaces/{ns}";
    GetPolicy get_policy(GetMemoryPolicyRequest) -> MemoryPolicy = GET "/v1/namespaces/{ns}/memory_policy";
    SetPolicy set_policy(SetMemoryPolicyRequest) -> MemoryPolicy = PUT "/v1/namespaces/{ns}/memory_policy";
    AdminList admin_list(AdminListNamespacesRequest) -> AdminListNamespacesResponse = GET "/v1/admin/namespaces";
    AdminCreate admin_create(AdminCreateNamespaceRequest) -> NamespaceCreated = POST "/v1/admin/namespaces";
});

rest_service!(KeysGrpc: keys_server::Keys, "Keys" {
    Create create(KeysCreateRequest) -> ApiKey = POST "/admin/keys";
    List list(KeysListRequest) -> KeysListResponse = GET "/admin/keys";
    Get get(KeysGetRequest) -> ApiKey = GET "/admin/keys/{id}";
    Update update(KeysUpdateRequest) -> ApiKey = PATCH "/admin/keys/{id}";
    Delete delete(KeysDeleteRequest) -> KeysRevokeResponse = DELETE "/admin/keys/{id}";
    Deactivate deactivate(KeysDeactivateRequest) -> KeysRevokeResponse = POST "/admin/keys/{id}/deactivate";
    Rotate rotate(KeysRotateRequest) -> KeysRotateResponse = POST "/admin/keys/{id}/rotate";
    Usage usage(KeysUsageRequest) -> KeysUsageResponse = GET "/admin/keys/{id}/usage";
    NamespaceList namespace_list(KeysNamespaceListRequest) -> KeysNamespaceListResponse = GET "/v1/namespaces/{ns}/keys";
    NamespaceCreate namespace_create(KeysNamespaceCreateRequest) -> ApiKey = POST "/v1/namespaces/{ns}/keys";
    NamespaceUpdate namespace_update(KeysNamespaceUpdateRequest) -> ApiKey = PATCH "/v1/namespaces/{ns}/keys/{id}";
    NamespaceDelete namespace_delete(KeysNamespaceDeleteRequest) -> KeysRevokeResponse = DELETE "/v1/namespaces/{ns}/keys/{id}";
    NamespaceUsage namespace_usage(KeysNamespaceUsageRequest) -> KeysNamespaceUsageResponse = GET "/v1/namespaces/{ns}/keys/{id}/usage";
    RotateEncryption rotate_encryption(KeysRotateEncryptionRequest) -> KeysRotateEncryptionResponse = POST "/admin/encryption/rotate";
});

rest_service!(QuotasGrpc: quotas_server::Quotas, "Quotas" {
    Set set(QuotasSetRequest) -> Quota = PUT "/admin/quotas";
    List list(QuotasListRequest) -> QuotasListResponse = GET "/admin/quotas";
    Get get(QuotasGetRequest) -> Quota = GET "/admin/quotas/{pattern}";
    Delete delete(QuotasDeleteRequest) -> QuotasDeleteResponse = DELETE "/admin/quotas/{pattern}";
});

rest_service!(TokensGrpc: tokens_server::Tokens, "Tokens" {
    Deny deny(TokensDenyRequest) -> TokenDenial = POST "/admin/tokens/denials";
    ListDenials list_denials(TokensListDenialsRequest) -> TokensListDenialsResponse = GET "/admin/tokens/denials";
    RemoveDenial remove_denial(TokensRemoveDenialRequest) -> TokensRemoveDenialResponse = DELETE "/admin/tokens/denials/{id}";
});

rest_service!(AuditGrpc: audit_server::Audit, "Audit" {
    List list(AuditListRequest) -> AuditListResponse = GET "/v1/audit";
});

rest_service!(ClusterGrpc: cluster_server::Cluster, "Cluster" {
    Status status(ClusterStatusRequest) -> ClusterStatusResponse = GET "/v1/admin/cluster/status";
    Nodes nodes(ClusterNodesRequest) -> ClusterNodesResponse = GET "/v1/admin/cluster/nodes";
    Shards shards(ClusterShardsRequest) -> ClusterShardsResponse = GET "/v1/admin/cluster/shards";
    Replication replication(ClusterReplicationRequest) -> ClusterReplicationResponse = GET "/v1/admin/cluster/replication";
    Rebalance rebalance(ClusterRebalanceRequest) -> ClusterRebalanceResponse = POST "/v1/admin/cluster/shards/rebalance";
    Drain drain(ClusterDrainRequest) -> ClusterDrainResponse = POST "/v1/admin/cluster/nodes/{node}/drain";
    Undrain undrain(ClusterUndrainRequest) -> ClusterDrainResponse = POST "/v1/admin/cluster/nodes/{node}/undrain";
    Remove remove(ClusterRemoveRequest) -> ClusterRemoveResponse = DELETE "/v1/admin/cluster/nodes/{node}";
    Init init(ClusterInitRequest) -> ClusterInitResponse = POST "/v1/admin/cluster/init";
    Join join(ClusterJoinRequest) -> ClusterJoinResponse = POST "/v1/admin/cluster/join";
    Leave leave(ClusterLeaveRequest) -> ClusterLeaveResponse = POST "/v1/admin/cluster/leave";
    Placement placement(ClusterPlacementRequest) -> ClusterPlacementResponse = GET "/v1/namespaces/{ns}/placement";
});

rest_service!(VectorsGrpc: vectors_server::Vectors, "Vectors" {
    Upsert upsert(VectorsUpsertRequest) -> VectorsUpsertResponse = POST "/v1/namespaces/{ns}/vectors";
    Query query(VectorsQueryRequest) -> VectorsQueryResponse = POST "/v1/namespaces/{ns}/query";
    BatchQuery batch_query(VectorsBatchQueryRequest) -> VectorsBatchQueryResponse = POST "/v1/namespaces/{ns}/batch-query";
    Delete delete(VectorsDeleteRequest) -> VectorsDeleteResponse = POST "/v1/namespaces/{ns}/vectors/delete";
    BulkDelete bulk_delete(VectorsBulkDeleteRequest) -> VectorsBulkDeleteResponse = POST "/v1/namespaces/{ns}/vectors/bulk-delete";
    BulkUpdate bulk_update(VectorsBulkUpdateRequest) -> VectorsBulkUpdateResponse = POST "/v1/namespaces/{ns}/vectors/bulk-update";
    Count count(VectorsCountRequest) -> VectorsCountResponse = POST "/v1/namespaces/{ns}/vectors/count";
    Export export(VectorsExportRequest) -> VectorsExportResponse = POST "/v1/namespaces/{ns}/export";
    WarmCache warm_cache(VectorsWarmCacheRequest) -> VectorsWarmCacheResponse = POST "/v1/namespaces/{ns}/cache/warm";
});

rest_service!(DocumentsGrpc: documents_server::Documents, "Documents" {
    UpsertText upsert_text(DocumentsUpsertTextRequest) -> DocumentsUpsertTextResponse = POST "/v1/namespaces/{ns}/upsert-text";
    QueryText query_text(DocumentsQueryTextRequest) -> DocumentsQueryTextResponse = POST "/v1/namespaces/{ns}/query-text";
    BatchQueryText batch_query_text(DocumentsBatchQueryTextRequest) -> DocumentsBatchQueryTextResponse = POST "/v1/namespaces/{ns}/batch-query-text";
    Index index(DocumentsIndexRequest) -> DocumentsIndexResponse = POST "/v1/namespaces/{ns}/fulltext/index";
    Search search(DocumentsSearchRequest) -> DocumentsSearchResponse = POST "/v1/namespaces/{ns}/fulltext/search";
    Delete delete(DocumentsDeleteRequest) -> VectorsDeleteResponse = POST "/v1/namespaces/{ns}/fulltext/delete";
    Stats stats(DocumentsStatsRequest) -> DocumentsStatsResponse = GET "/v1/namespaces/{ns}/fulltext/stats";
    Hybrid hybrid(DocumentsHybridRequest) -> DocumentsHybridResponse = POST "/v1/namespaces/{ns}/hybrid";
});

rest_service!(BackupsGrpc: backups_server::Backups, "Backups" {
    Create create(BackupsCreateRequest) -> BackupsCreateResponse = POST "/v1/admin/backups";
    List list(BackupsListRequest) -> BackupsListResponse = GET "/v1/admin/backups";
    Get get(BackupsGetRequest) -> BackupInfo = GET "/v1/admin/backups/{id}";
    Delete delete(BackupsDeleteRequest) -> BackupsDeleteResponse = DELETE "/v1/admin/backups/{id}";
    Verify verify(BackupsVerifyRequest) -> BackupsVerifyResponse = POST "/v1/admin/backups/{id}/verify";
    Restore restore(BackupsRestoreRequest) -> RestoreInfo = POST "/v1/admin/backups/restore";
    RestoreStatus restore_status(BackupsRestoreStatusRequest) -> RestoreInfo = GET "/v1/admin/backups/restore/{id}";
    GetSchedule get_schedule(BackupsGetScheduleRequest) -> BackupSchedule = GET "/v1/admin/backups/schedule";
    SetSchedule set_schedule(BackupsSetScheduleRequest) -> BackupSchedule = POST "/v1/admin/backups/schedule";
});

rest_service!(WebhooksGrpc: webhooks_server::Webhooks, "Webhooks" {
    Create create(WebhooksCreateRequest) -> Webhook = POST "/v1/webhooks";
    List list(WebhooksListRequest) -> WebhooksListResponse = GET "/v1/webhooks";
    Get get(WebhooksGetRequest) -> Webhook = GET "/v1/webhooks/{id}";
    Delete delete(WebhooksDeleteRequest) -> WebhooksDeleteResponse = DELETE "/v1/webhooks/{id}";
    ListDeliveries list_deliveries(WebhooksDeliveriesRequest) -> WebhooksDeliveriesResponse = GET "/v1/webhooks/{id}/deliveries";
    Replay replay(WebhooksReplayRequest) -> WebhooksReplayResponse = POST "/v1/webhooks/{id}/deliveries/{delivery}/replay";
});

rest_service!(KnowledgeGrpc: knowledge_server::Knowledge, "Knowledge" {
    Link link(LinkRequest) -> LinkResponse = POST "/v1/memories/{id}/links";
    Unlink unlink(UnlinkRequest) -> UnlinkResponse = DELETE "/v1/memories/{id}/links";
    MemoryGraph memory_graph(MemoryGraphRequest) -> MemoryGraphResponse = GET "/v1/memories/{id}/graph";
    MemoryPath memory_path(MemoryPathRequest) -> MemoryPathResponse = GET "/v1/memories/{id}/path";
    AgentGraphExport agent_graph_export(AgentGraphExportRequest) -> AgentGraphExportResponse = GET "/v1/agents/{id}/graph/export";
    Query query(KnowledgeQueryRequest) -> KnowledgeQueryResponse = GET "/v1/knowledge/query";
    Path path(KnowledgePathRequest) -> KnowledgePathResponse = GET "/v1/knowledge/path";
    Export export(KnowledgeExportRequest) -> KnowledgeExportResponse = GET "/v1/knowledge/export";
    Graph graph(KnowledgeGraphRequest) -> KnowledgeGraphResponse = POST "/v1/knowledge/graph";
    FullGraph full_graph(FullGraphRequest) -> FullGraphResponse = POST "/v1/knowledge/graph/full";
    Extract extract(ExtractRequest) -> ExtractResponse = POST "/v1/memories/extract";
    MemoryEntities memory_entities(MemoryEntitiesRequest) -> MemoryEntitiesResponse = GET "/v1/memory/entities/{id}";
    GetEntityConfig get_entity_config(GetEntityConfigRequest) -> EntityConfig = GET "/v1/namespaces/{ns}/config";
    SetEntityConfig set_entity_config(SetEntityConfigRequest) -> EntityConfig = PATCH "/v1/namespaces/{ns}/config";
});

rest_service!(MaintenanceGrpc: maintenance_server::Maintenance, "Maintenance" {
    Deduplicate deduplicate(DeduplicateRequest) -> DeduplicateResponse = POST "/v1/knowledge/deduplicate";
    Consolidate consolidate(ConsolidateRequest) -> ConsolidateResponse = POST "/v1/memory/consolidate";
    Summarize summarize(SummarizeRequest) -> SummarizeResponse = POST "/v1/knowledge/summarize";
    ListTrash list_trash(ListTrashRequest) -> ListTrashResponse = GET "/v1/memory/deduplicated";
    RestoreTrash restore_trash(RestoreTrashRequest) -> Memory = POST "/v1/memory/deduplicated/{id}/restore";
    Feedback feedback(FeedbackRequest) -> FeedbackResponse = POST "/v1/memories/{id}/feedback";
    FeedbackHistory feedback_history(FeedbackHistoryRequest) -> FeedbackHistoryResponse = GET "/v1/memories/{id}/feedback";
    FeedbackSummary feedback_summary(FeedbackSummaryRequest) -> FeedbackSummaryResponse = GET "/v1/agents/{id}/feedback/summary";
    FeedbackHealth feedback_health(FeedbackHealthRequest) -> FeedbackHealthResponse = GET "/v1/feedback/health";
    AutopilotStatus autopilot_status(AutopilotStatusRequest) -> AutopilotStatusResponse = GET "/v1/admin/autopilot/status";
    SetAutopilotConfig set_autopilot_config(SetAutopilotConfigRequest) -> SetAutopilotConfigResponse = PUT "/v1/admin/autopilot/config";
    AutopilotTrigger autopilot_trigger(AutopilotTriggerRequest) -> AutopilotTriggerResponse = POST "/v1/admin/autopilot/trigger";
    GetDecayConfig get_decay_config(GetDecayConfigRequest) -> DecayConfig = GET "/v1/admin/decay/config";
    SetDecayConfig set_decay_config(SetDecayConfigRequest) -> SetDecayConfigResponse = PUT "/v1/admin/decay/config";
    DecayStats decay_stats(DecayStatsRequest) -> DecayStatsResponse = GET "/v1/admin/decay/stats";
});
