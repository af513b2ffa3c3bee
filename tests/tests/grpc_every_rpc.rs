//! Every typed `loci.v1` RPC through its generated tonic stub against a real node: each answers
//! (its REST answer decodes into its response message), and a tenant's key is refused by every
//! service for what is not its own, with nothing changed (`PERMISSION_DENIED`; `NOT_FOUND` for a
//! session or a key, which are looked up by id among what the key may see and so are invisible).

use std::collections::BTreeMap;

use loci_api::pb;
use loci_api::pb::agents_client::AgentsClient;
use loci_api::pb::cluster_client::ClusterClient;
use loci_api::pb::documents_client::DocumentsClient;
use loci_api::pb::keys_client::KeysClient;
use loci_api::pb::memories_client::MemoriesClient;
use loci_api::pb::namespaces_client::NamespacesClient;
use loci_api::pb::quotas_client::QuotasClient;
use loci_api::pb::reembed_client::ReembedClient;
use loci_api::pb::sessions_client::SessionsClient;
use loci_api::pb::vectors_client::VectorsClient;
use loci_tests::{ROOT_KEY, TestNode, create_key};
use prost_types::value::Kind;
use serde_json::json;
use tonic::Code;
use tonic::transport::Channel;

fn req<T>(msg: T, key: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert("x-api-key", key.parse().expect("ascii"));
    r
}

fn root<T>(msg: T) -> tonic::Request<T> {
    req(msg, ROOT_KEY)
}

fn strukt(pairs: &[(&str, &str)]) -> prost_types::Struct {
    prost_types::Struct {
        fields: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), prost_types::Value { kind: Some(Kind::StringValue(v.to_string())) }))
            .collect::<BTreeMap<_, _>>(),
    }
}

/// The call's answer, or a panic naming the RPC and its status.
macro_rules! ok {
    ($call:expr) => {
        match $call.await {
            Ok(r) => r.into_inner(),
            Err(e) => panic!("{}: {:?} {}", stringify!($call), e.code(), e.message()),
        }
    };
}

/// The call's refusal code (a panic if it was answered).
macro_rules! refused {
    ($call:expr) => {
        match $call.await {
            Ok(_) => panic!("{} was answered", stringify!($call)),
            Err(e) => e.code(),
        }
    };
}

#[tokio::test]
async fn every_typed_rpc_answers_through_its_generated_stub() {
    let node = TestNode::start().await;
    let addr = node.handle.as_ref().expect("running").grpc_addr;
    let ch = Channel::from_shared(format!("http://{addr}")).expect("uri").connect().await.expect("connect");
    let mut ns = NamespacesClient::new(ch.clone());
    let mut mem = MemoriesClient::new(ch.clone());
    let mut ses = SessionsClient::new(ch.clone());
    let mut ag = AgentsClient::new(ch.clone());
    let mut re = ReembedClient::new(ch.clone());
    let mut keys = KeysClient::new(ch.clone());
    let mut quo = QuotasClient::new(ch.clone());
    let mut vec = VectorsClient::new(ch.clone());
    let mut doc = DocumentsClient::new(ch.clone());
    let mut cl = ClusterClient::new(ch.clone());
    let hash = |d| Some(pb::EmbeddingChoice { provider: "hash".into(), dimension: Some(d) });

    // Namespaces.
    let c = ok!(ns.create(root(pb::CreateNamespaceRequest {
        name: "every".into(),
        embedding: hash(16),
        ..Default::default()
    })));
    assert!(c.created);
    let c = ok!(ns.configure(root(pb::ConfigureNamespaceRequest {
        ns: "every".into(),
        embedding: hash(16),
        ..Default::default()
    })));
    assert!(!c.created, "already there");
    let c = ok!(ns.admin_create(root(pb::AdminCreateNamespaceRequest {
        name: "every-admin".into(),
        embedding: hash(8),
        ..Default::default()
    })));
    assert!(c.created);
    assert!(ok!(ns.list(root(pb::ListNamespacesRequest {}))).namespaces.iter().any(|n| n == "every"));
    assert_eq!(ok!(ns.get(root(pb::GetNamespaceRequest { ns: "every".into() }))).dimension, 16);
    let p = ok!(ns.set_policy(root(pb::SetMemoryPolicyRequest {
        ns: "every".into(),
        max_agents: Some(10),
        ..Default::default()
    })));
    assert_eq!(p.max_agents, Some(10));
    assert_eq!(ok!(ns.get_policy(root(pb::GetMemoryPolicyRequest { ns: "every".into() }))).max_agents, Some(10));
    assert!(ok!(ns.admin_list(root(pb::AdminListNamespacesRequest {}))).namespaces.iter().any(|n| n.name == "every"));

    // Memories.
    let m = ok!(mem.store(root(pb::StoreMemoryRequest {
        namespace: "every".into(),
        agent_id: "every-agent".into(),
        content: "the first memory".into(),
        tags: vec!["t".into()],
        ..Default::default()
    })))
    .memory
    .expect("memory");
    let b = ok!(mem.store_batch(root(pb::StoreBatchRequest {
        namespace: "every".into(),
        agent_id: "every-agent".into(),
        memories: vec![pb::MemoryInput { content: "a second memory".into(), ..Default::default() }],
        ..Default::default()
    })));
    assert_eq!(b.stored_count, 1);
    let in_ns = |id: &str| pb::GetMemoryRequest { id: id.into(), namespace: "every".into(), ..Default::default() };
    assert_eq!(ok!(mem.get(root(in_ns(&m.id)))).content, "the first memory");
    let u = ok!(mem.update(root(pb::UpdateMemoryRequest {
        id: m.id.clone(),
        namespace: "every".into(),
        tags: vec!["u".into()],
        ..Default::default()
    })));
    assert_eq!(u.tags, vec!["u".to_string()]);
    let i = ok!(mem.set_importance(root(pb::SetImportanceRequest {
        namespace: "every".into(),
        memory_id: m.id.clone(),
        importance: Some(0.7),
        ..Default::default()
    })));
    assert_eq!(i.updated_count, 1);
    assert_eq!(
        ok!(mem.recall(root(pb::RecallRequest {
            namespace: "every".into(),
            query: "memory".into(),
            ..Default::default()
        })))
        .memories
        .len(),
        2
    );
    assert_eq!(
        ok!(mem.search(root(pb::RecallRequest {
            namespace: "every".into(),
            query: "second".into(),
            ..Default::default()
        })))
        .memories
        .len() as u64,
        2
    );
    assert_eq!(
        ok!(mem.recall_batch(root(pb::RecallBatchRequest { namespace: "every".into(), ..Default::default() }))).total,
        2
    );
    let _listed = ok!(mem.list(root(pb::ListMemoriesRequest { agent_id: "every-agent".into(), ..Default::default() })));

    // Sessions and agents.
    let s = ok!(ses.start(root(pb::StartSessionRequest { agent_id: "every-agent".into(), ..Default::default() })))
        .session
        .expect("session");
    assert_eq!(ok!(ses.get(root(pb::GetSessionRequest { id: s.id.clone() }))).id, s.id);
    assert!(ok!(ses.touch(root(pb::TouchSessionRequest { id: s.id.clone() }))).session.is_some());
    let _ = ok!(ses.list(root(pb::ListSessionsRequest { agent_id: "every-agent".into(), ..Default::default() })));
    let _ = ok!(ses.memories(root(pb::SessionMemoriesRequest { id: s.id.clone(), ..Default::default() })));
    assert!(
        ok!(ses.end(root(pb::EndSessionRequest { id: s.id.clone(), summary: Some("done".into()) }))).session.is_some()
    );
    let a = ok!(ag.create(root(pb::CreateAgentRequest { agent_id: "every-other-agent".into() })));
    assert_eq!(a.agent_id, "every-other-agent");
    let _ = ok!(ag.list(root(pb::ListAgentsRequest {})));
    let _ = ok!(ag.stats(root(pb::AgentStatsRequest { id: "every-agent".into() })));
    let _ = ok!(ag.memories(root(pb::AgentMemoriesRequest { id: "every-agent".into(), ..Default::default() })));
    let _ = ok!(ag.sessions(root(pb::AgentSessionsRequest { id: "every-agent".into(), ..Default::default() })));

    // Raw vectors.
    let item = |id: &str, v: [f32; 3], c: &str| pb::VectorUpsertItem {
        id: id.into(),
        values: v.to_vec(),
        metadata: Some(strukt(&[("c", c)])),
    };
    let up = ok!(vec.upsert(root(pb::VectorsUpsertRequest {
        ns: "every-raw".into(),
        vectors: vec![
            item("a", [1.0, 0.0, 0.0], "red"),
            item("b", [0.0, 1.0, 0.0], "blue"),
            item("c", [0.0, 0.0, 1.0], "red")
        ]
    })));
    assert_eq!(up.upserted_count, 3);
    let q = ok!(vec.query(root(pb::VectorsQueryRequest {
        ns: "every-raw".into(),
        vector: vec![1.0, 0.0, 0.0],
        top_k: Some(2),
        ..Default::default()
    })));
    assert_eq!(q.results[0].id, "a");
    let bq = ok!(vec.batch_query(root(pb::VectorsBatchQueryRequest {
        ns: "every-raw".into(),
        queries: vec![pb::VectorQuerySpec { vector: vec![0.0, 1.0, 0.0], top_k: Some(1), ..Default::default() }]
    })));
    assert_eq!(bq.results.len(), 1);
    let red = Some(strukt(&[("c", "red")]));
    assert_eq!(ok!(vec.count(root(pb::VectorsCountRequest { ns: "every-raw".into(), filter: red.clone() }))).count, 2);
    let ex = ok!(vec.export(root(pb::VectorsExportRequest { ns: "every-raw".into(), ..Default::default() })));
    assert_eq!(ex.vectors.len(), 3);
    let _ = ok!(vec.warm_cache(root(pb::VectorsWarmCacheRequest { ns: "every-raw".into(), ..Default::default() })));
    let bu = ok!(vec.bulk_update(root(pb::VectorsBulkUpdateRequest {
        ns: "every-raw".into(),
        filter: red.clone(),
        update: Some(strukt(&[("seen", "yes")]))
    })));
    assert_eq!(bu.updated, 2);
    assert_eq!(
        ok!(vec.delete(root(pb::VectorsDeleteRequest { ns: "every-raw".into(), ids: vec!["b".into()] }))).deleted_count,
        1
    );
    assert_eq!(
        ok!(vec.bulk_delete(root(pb::VectorsBulkDeleteRequest { ns: "every-raw".into(), filter: red }))).deleted,
        2
    );

    // Documents (in a namespace with the hash embedder: no model needed).
    let _ = ok!(ns.create(root(pb::CreateNamespaceRequest {
        name: "every-docs".into(),
        embedding: hash(16),
        ..Default::default()
    })));
    let d = |id: &str, t: &str| pb::DocumentItem { id: id.into(), text: t.into(), ..Default::default() };
    let ut = ok!(doc.upsert_text(root(pb::DocumentsUpsertTextRequest {
        ns: "every-docs".into(),
        documents: vec![d("d1", "granite quarry tools"), d("d2", "marble statues")]
    })));
    assert_eq!(ut.upserted_count, 2);
    let _ = ok!(doc.index(root(pb::DocumentsIndexRequest {
        ns: "every-docs".into(),
        documents: vec![d("d3", "granite counters")]
    })));
    assert!(
        !ok!(doc.query_text(root(pb::DocumentsQueryTextRequest {
            ns: "every-docs".into(),
            text: "granite".into(),
            ..Default::default()
        })))
        .results
        .is_empty()
    );
    assert_eq!(
        ok!(doc.batch_query_text(root(pb::DocumentsBatchQueryTextRequest {
            ns: "every-docs".into(),
            queries: vec!["granite".into(), "marble".into()],
            ..Default::default()
        })))
        .results
        .len(),
        2
    );
    assert!(
        !ok!(doc.search(root(pb::DocumentsSearchRequest {
            ns: "every-docs".into(),
            query: "granite".into(),
            ..Default::default()
        })))
        .results
        .is_empty()
    );
    assert!(
        !ok!(doc.hybrid(root(pb::DocumentsHybridRequest {
            ns: "every-docs".into(),
            text: "granite".into(),
            ..Default::default()
        })))
        .results
        .is_empty()
    );
    let _ = ok!(doc.stats(root(pb::DocumentsStatsRequest { ns: "every-docs".into() })));
    assert_eq!(
        ok!(doc.delete(root(pb::DocumentsDeleteRequest { ns: "every-docs".into(), ids: vec!["d2".into()] })))
            .deleted_count,
        1
    );

    // Re-embedding.
    let st = ok!(re.start(root(pb::StartReembedRequest { ns: "every-admin".into(), embedding: hash(12) })));
    assert!(st.job.is_some());
    let _ = ok!(re.get(root(pb::GetReembedRequest { ns: "every-admin".into() })));

    // Keys.
    let k = ok!(keys.create(root(pb::KeysCreateRequest {
        name: "every-key".into(),
        scope: "read".into(),
        namespaces: vec!["every".into()],
        ..Default::default()
    })));
    assert!(!k.key.is_empty());
    assert!(ok!(keys.list(root(pb::KeysListRequest {}))).keys.iter().any(|x| x.key_id == k.key_id));
    assert_eq!(ok!(keys.get(root(pb::KeysGetRequest { id: k.key_id.clone() }))).name, "every-key");
    assert_eq!(
        ok!(keys.update(root(pb::KeysUpdateRequest {
            id: k.key_id.clone(),
            name: "renamed".into(),
            ..Default::default()
        })))
        .name,
        "renamed"
    );
    let _ = ok!(keys.usage(root(pb::KeysUsageRequest { id: k.key_id.clone() })));
    let r = ok!(keys.rotate(root(pb::KeysRotateRequest { id: k.key_id.clone(), grace_secs: Some(0) })));
    assert!(!r.new_key.is_empty());
    let _ = ok!(keys.deactivate(root(pb::KeysDeactivateRequest { id: r.key_id.clone() })));
    let _ = ok!(keys.delete(root(pb::KeysDeleteRequest { id: r.key_id.clone() })));
    let nk = ok!(keys.namespace_create(root(pb::KeysNamespaceCreateRequest {
        ns: "every".into(),
        name: "ns-key".into(),
        scope: "read".into(),
        ..Default::default()
    })));
    assert!(
        ok!(keys.namespace_list(root(pb::KeysNamespaceListRequest { ns: "every".into() })))
            .keys
            .iter()
            .any(|x| x.key_id == nk.key_id)
    );
    let _ = ok!(keys.namespace_update(root(pb::KeysNamespaceUpdateRequest {
        ns: "every".into(),
        id: nk.key_id.clone(),
        name: "ns-key-2".into(),
        ..Default::default()
    })));
    let _ =
        ok!(keys.namespace_usage(root(pb::KeysNamespaceUsageRequest { ns: "every".into(), id: nk.key_id.clone() })));
    let _ =
        ok!(keys.namespace_delete(root(pb::KeysNamespaceDeleteRequest { ns: "every".into(), id: nk.key_id.clone() })));
    let rot = ok!(keys.rotate_encryption(root(pb::KeysRotateEncryptionRequest {
        new_key: "a long enough new master passphrase".into(),
        ..Default::default()
    })));
    assert!(rot.rotated >= 1);

    // Quotas.
    let q = ok!(quo.set(root(pb::QuotasSetRequest {
        pattern: "every-q*".into(),
        max_memories: Some(5),
        ..Default::default()
    })));
    assert_eq!(q.max_memories, Some(5));
    assert!(ok!(quo.list(root(pb::QuotasListRequest {}))).quotas.iter().any(|x| x.pattern == "every-q*"));
    assert_eq!(ok!(quo.get(root(pb::QuotasGetRequest { pattern: "every-q*".into() }))).max_memories, Some(5));
    let _ = ok!(quo.delete(root(pb::QuotasDeleteRequest { pattern: "every-q*".into() })));
    assert_eq!(refused!(quo.get(root(pb::QuotasGetRequest { pattern: "every-q*".into() }))), Code::NotFound);

    // Cluster read-outs and actions (on a one-node cluster, the actions that would change its
    // membership are refused, and say why).
    let status = ok!(cl.status(root(pb::ClusterStatusRequest {})));
    let me: u64 = status.members[0].node_id.parse().expect("a numeric node id");
    assert_eq!(ok!(cl.nodes(root(pb::ClusterNodesRequest {}))).nodes.len(), 1);
    let _ = ok!(cl.shards(root(pb::ClusterShardsRequest {})));
    let _ = ok!(cl.replication(root(pb::ClusterReplicationRequest {})));
    let _ = ok!(cl.rebalance(root(pb::ClusterRebalanceRequest { dry_run: true })));
    assert!(!ok!(cl.placement(root(pb::ClusterPlacementRequest { ns: "every".into() }))).replicas.is_empty());
    let _ = ok!(cl.drain(root(pb::ClusterDrainRequest { node: me })));
    let _ = ok!(cl.undrain(root(pb::ClusterUndrainRequest { node: me })));
    for code in [
        refused!(cl.remove(root(pb::ClusterRemoveRequest { node: 999 }))),
        refused!(cl.init(root(pb::ClusterInitRequest {}))),
        refused!(cl.join(root(pb::ClusterJoinRequest { seed: "".into() }))),
    ] {
        assert_ne!(code, Code::Internal, "a refusal of its class, not a transcoding failure");
    }

    // Forget and erase last.
    assert_eq!(
        ok!(mem.forget(root(pb::ForgetRequest {
            namespace: "every".into(),
            memory_ids: vec![m.id.clone()],
            ..Default::default()
        })))
        .deleted_count,
        1
    );
    let fb = ok!(mem.forget_batch(root(pb::ForgetBatchRequest {
        namespace: "every".into(),
        filter: Some(pb::MemoryFilter { min_importance: Some(0.0), ..Default::default() }),
        ..Default::default()
    })));
    assert_eq!(fb.deleted_count, 1);
    assert!(ok!(ns.delete(root(pb::DeleteNamespaceRequest { ns: "every".into() }))).data_key_destroyed);
}

#[tokio::test]
async fn a_tenant_key_is_refused_by_every_service_for_what_is_not_its_own() {
    let node = TestNode::start().await;
    let c = &node.client;
    for ns in ["victim", "mine"] {
        let (s, v) =
            c.post("/v1/namespaces", &json!({"name": ns, "embedding": {"provider": "hash", "dimension": 3}})).await;
        assert_eq!(s, 201, "{v}");
    }
    let (s, v) = c
        .post("/v1/memory/store", &json!({"namespace": "victim", "agent_id": "v", "content": "victim's memory"}))
        .await;
    assert_eq!(s, 200, "{v}");
    let victim_memory = v["memory"]["id"].as_str().expect("id").to_string();
    let (s, v) = c.post("/v1/sessions/start", &json!({"agent_id": "v", "namespace": "victim"})).await;
    assert_eq!(s, 200, "{v}");
    let victim_session = v["session"]["id"].as_str().expect("id").to_string();
    let (s, _) = c.post("/v1/namespaces/victim/vectors", &json!({"vectors": [{"id": "x", "values": [1, 0, 0]}]})).await;
    assert_eq!(s, 200);
    let (victim_key, _) =
        create_key(c, "/admin/keys", &json!({"name": "victim-key", "scope": "read", "namespaces": ["victim"]})).await;
    let (_, attacker) =
        create_key(c, "/admin/keys", &json!({"name": "attacker", "scope": "admin", "namespaces": ["mine"]})).await;
    let reader = node.client.clone();
    let before = |path: &'static str| {
        let reader = reader.clone();
        async move { reader.get(path).await.1 }
    };
    let snapshot = (
        before("/v1/namespaces/victim").await,
        before("/v1/namespaces/victim/memory_policy").await,
        before("/admin/keys").await,
    );
    let records = c.post("/v1/namespaces/victim/vectors/count", &json!({})).await.1["count"].clone();
    assert!(records.as_u64().is_some_and(|n| n >= 1), "{records}");

    let addr = node.handle.as_ref().expect("running").grpc_addr;
    let ch = Channel::from_shared(format!("http://{addr}")).expect("uri").connect().await.expect("connect");
    let k = attacker.as_str();
    let codes = vec![
        (
            "Memories.Get",
            refused!(MemoriesClient::new(ch.clone()).get(req(
                pb::GetMemoryRequest { id: victim_memory.clone(), namespace: "victim".into(), ..Default::default() },
                k
            ))),
        ),
        (
            "Memories.Store",
            refused!(MemoriesClient::new(ch.clone()).store(req(
                pb::StoreMemoryRequest { namespace: "victim".into(), content: "planted".into(), ..Default::default() },
                k
            ))),
        ),
        (
            "Memories.Forget",
            refused!(MemoriesClient::new(ch.clone()).forget(req(
                pb::ForgetRequest {
                    namespace: "victim".into(),
                    memory_ids: vec![victim_memory.clone()],
                    ..Default::default()
                },
                k
            ))),
        ),
        (
            "Sessions.End",
            refused!(
                SessionsClient::new(ch.clone())
                    .end(req(pb::EndSessionRequest { id: victim_session.clone(), ..Default::default() }, k))
            ),
        ),
        (
            "Agents.Stats",
            refused!(AgentsClient::new(ch.clone()).stats(req(pb::AgentStatsRequest { id: "v".into() }, k))),
        ),
        (
            "Namespaces.Delete",
            refused!(
                NamespacesClient::new(ch.clone()).delete(req(pb::DeleteNamespaceRequest { ns: "victim".into() }, k))
            ),
        ),
        (
            "Namespaces.SetPolicy",
            refused!(NamespacesClient::new(ch.clone()).set_policy(req(
                pb::SetMemoryPolicyRequest { ns: "victim".into(), max_memories: Some(1), ..Default::default() },
                k
            ))),
        ),
        (
            "Reembed.Start",
            refused!(ReembedClient::new(ch.clone()).start(req(
                pb::StartReembedRequest {
                    ns: "victim".into(),
                    embedding: Some(pb::EmbeddingChoice { provider: "hash".into(), dimension: Some(8) })
                },
                k
            ))),
        ),
        (
            "Keys.Deactivate",
            refused!(
                KeysClient::new(ch.clone()).deactivate(req(pb::KeysDeactivateRequest { id: victim_key.clone() }, k))
            ),
        ),
        (
            "Keys.NamespaceList",
            refused!(
                KeysClient::new(ch.clone())
                    .namespace_list(req(pb::KeysNamespaceListRequest { ns: "victim".into() }, k))
            ),
        ),
        (
            "Quotas.Set",
            refused!(QuotasClient::new(ch.clone()).set(req(
                pb::QuotasSetRequest { pattern: "victim".into(), max_memories: Some(0), ..Default::default() },
                k
            ))),
        ),
        (
            "Vectors.Query",
            refused!(VectorsClient::new(ch.clone()).query(req(
                pb::VectorsQueryRequest { ns: "victim".into(), vector: vec![1.0, 0.0, 0.0], ..Default::default() },
                k
            ))),
        ),
        (
            "Vectors.Delete",
            refused!(
                VectorsClient::new(ch.clone())
                    .delete(req(pb::VectorsDeleteRequest { ns: "victim".into(), ids: vec!["x".into()] }, k))
            ),
        ),
        (
            "Documents.Search",
            refused!(DocumentsClient::new(ch.clone()).search(req(
                pb::DocumentsSearchRequest { ns: "victim".into(), query: "memory".into(), ..Default::default() },
                k
            ))),
        ),
        ("Cluster.Drain", refused!(ClusterClient::new(ch.clone()).drain(req(pb::ClusterDrainRequest { node: 1 }, k)))),
        (
            "Cluster.Placement",
            refused!(
                ClusterClient::new(ch.clone()).placement(req(pb::ClusterPlacementRequest { ns: "victim".into() }, k))
            ),
        ),
    ];
    // A session and a key are found by id among what the key may see, so another tenant's are
    // invisible (404, as over REST); everything named by namespace, and every operator call, is
    // refused (403).
    let wrong: Vec<_> = codes
        .iter()
        .filter(|(rpc, code)| {
            let by_id = *rpc == "Sessions.End" || *rpc == "Keys.Deactivate";
            *code != if by_id { Code::NotFound } else { Code::PermissionDenied }
        })
        .collect();
    assert!(wrong.is_empty(), "{wrong:?}");
    // Nothing changed: the memory, the session, the vector, the key, the namespace and its policy.
    let (s, v) = c.get(&format!("/v1/memory/get/{victim_memory}?namespace=victim")).await;
    assert_eq!((s, v["content"].as_str()), (200, Some("victim's memory")));
    let (s, v) = c.get(&format!("/v1/sessions/{victim_session}")).await;
    assert!(s == 200 && v.get("ended_at").is_none(), "{v}");
    let (_, v) = c.post("/v1/namespaces/victim/vectors/count", &json!({})).await;
    assert_eq!(v["count"], records);
    let (_, v) = c.post("/v1/namespaces/victim/query", &json!({"vector": [1, 0, 0], "top_k": 5})).await;
    assert!(
        v["results"].as_array().is_some_and(|r| r.iter().any(|m| m["id"] == "x")),
        "the vector is still there: {v}"
    );
    let (_, v) = c.get(&format!("/admin/keys/{victim_key}")).await;
    assert_eq!(v["active"], true);
    let (_, v) = c.get("/admin/quotas").await;
    assert_eq!(v["total"], 0, "{v}");
    let after = (
        before("/v1/namespaces/victim").await,
        before("/v1/namespaces/victim/memory_policy").await,
        before("/admin/keys").await,
    );
    assert_eq!(snapshot.0["memory_count"], after.0["memory_count"]);
    assert_eq!(snapshot.1, after.1);
    assert_eq!(snapshot.2["total"], after.2["total"]);
}
