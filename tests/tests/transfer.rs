//! Export and import per namespace (issue 17 item 2): `GET /v1/export` streams a namespace's
//! memories as JSON Lines (paged, resumable after an id), `POST /v1/import` stores them back,
//! idempotent on ids, validated line by line with a per-line report.

use std::collections::BTreeMap;

use loci_tests::{Client, TestNode, create_key};
use serde_json::{Value, json};

const N: usize = 1_234;

/// A vector the hash embedder would not produce: the import must keep it exactly.
fn vector(i: usize) -> Vec<f32> {
    let mut x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..384)
        .map(|_| {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            ((x >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect()
}

async fn fill(c: &Client, ns: &str) {
    for start in (0..N).step_by(100) {
        let memories: Vec<Value> = (start..(start + 100).min(N))
            .map(|i| {
                let kind = ["episodic", "semantic", "procedural"][i % 3];
                let period = ["quarterly", "weekly", "daily"][i % 3];
                json!({
                    "id": format!("m{i:05}"),
                    "content": format!("memory {i}: the {period} report"),
                    "memory_type": kind,
                    "importance": (i % 10) as f64 / 10.0,
                    "tags": [format!("t{}", i % 5)],
                    "metadata": {"n": i, "nested": {"ok": i % 2 == 0}},
                    "embedding": vector(i),
                })
            })
            .collect();
        // A batch is one agent's.
        let agent = if (start / 100) % 3 == 0 { "alice" } else { "bob" };
        let (s, v) = c
            .post("/v1/memories/store/batch", &json!({"namespace": ns, "agent_id": agent, "memories": memories}))
            .await;
        assert_eq!(s, 200, "{v}");
    }
}

async fn export_text(c: &Client, query: &str) -> (u16, String) {
    let resp = reqwest::Client::new()
        .get(format!("{}/v1/export?{query}", c.base))
        .bearer_auth(c.key.as_deref().unwrap_or(""))
        .send()
        .await
        .expect("sent");
    let s = resp.status().as_u16();
    (s, resp.text().await.expect("body"))
}

async fn import(c: &Client, query: &str, content_type: &str, body: Vec<u8>) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/import?{query}", c.base))
        .bearer_auth(c.key.as_deref().unwrap_or(""))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("sent");
    let s = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (s, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// Export lines by id, without what an import cannot keep (where it is, when it was last
/// changed or read).
fn comparable(text: &str) -> BTreeMap<String, Value> {
    text.lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).expect("a JSON line");
            let o = v.as_object_mut().expect("object");
            for k in ["namespace", "updated_at", "last_accessed_at", "access_count"] {
                o.remove(k);
            }
            (v["id"].as_str().expect("id").to_string(), v)
        })
        .collect()
}

async fn count(c: &Client, ns: &str) -> u64 {
    let (_, v) = c.get(&format!("/v1/namespaces/{ns}")).await;
    v["memory_count"].as_u64().unwrap_or(0)
}

#[tokio::test]
async fn export_then_import_round_trips_every_field_and_vector_and_is_idempotent() {
    let node = TestNode::start().await;
    let c = &node.client;
    fill(c, "source").await;
    let (s, text) = export_text(c, "namespace=source").await;
    assert_eq!(s, 200);
    assert_eq!(text.lines().count(), N, "every memory, over several pages of 500");
    let ids: Vec<&str> =
        text.lines().map(|l| l.split("\"id\":\"").nth(1).and_then(|x| x.get(..6)).unwrap_or("")).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "id order");
    let first: Value = serde_json::from_str(text.lines().next().expect("a line")).expect("json");
    assert_eq!(first["embedding"].as_array().map(Vec::len), Some(384));

    // Into another namespace, as the Python SDK uploads it (multipart, the first file field).
    let boundary = "loci-test-boundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"export.jsonl\"\r\nContent-Type: application/x-ndjson\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(text.as_bytes());
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let (s, v) = import(c, "namespace=copy", &format!("multipart/form-data; boundary={boundary}"), body).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!((v["imported_count"].as_u64(), v["skipped_count"].as_u64()), (Some(N as u64), Some(0)), "{v}");
    assert_eq!(v["complete"], true);
    let (_, copy) = export_text(c, "namespace=copy").await;
    let (a, b) = (comparable(&text), comparable(&copy));
    assert_eq!(a.len(), N);
    assert!(a == b, "the copy differs from the source");
    // The imported vectors are the exported ones: a vector query finds each memory first.
    let (s, v) = c.post("/v1/namespaces/copy/query", &json!({"vector": vector(777), "top_k": 1})).await;
    assert_eq!(s, 200, "{v}");
    assert!(v.to_string().contains("m00777"), "{v}");

    // Again (the go client's JSON body): nothing new, nothing lost.
    let (s, v) = c.post("/v1/import", &json!({"data": text, "format": "jsonl", "namespace": "copy"})).await;
    assert_eq!((s, v["imported_count"].as_u64()), (200, Some(N as u64)), "{v}");
    assert_eq!(count(c, "copy").await, N as u64);
    let (_, again) = export_text(c, "namespace=copy").await;
    assert!(comparable(&again) == a, "re-importing changed the copy");

    // Resuming after an id returns exactly the rest.
    let (_, rest) = export_text(c, "namespace=source&after=m00600").await;
    let rest_ids: Vec<String> = comparable(&rest).into_keys().collect();
    assert_eq!(rest_ids.len(), N - 601);
    assert_eq!(rest_ids.first().map(String::as_str), Some("m00601"));
    // One agent's memories only.
    let (_, alice) = export_text(c, "namespace=source&agent_id=alice").await;
    let expected = text.lines().filter(|l| l.contains("\"agent_id\":\"alice\"")).count();
    assert!(expected > 0 && expected < N);
    assert_eq!(alice.lines().count(), expected);
    assert!(alice.lines().all(|l| l.contains("\"agent_id\":\"alice\"")));
    // CSV: a header, a row a memory, cells that cannot start a formula.
    let (s, csv) = export_text(c, "namespace=source&format=csv").await;
    assert_eq!(s, 200);
    assert!(
        csv.starts_with("id,agent_id,content,memory_type,importance,tags,session_id,created_at,expires_at,metadata\n")
    );
    assert_eq!(csv.lines().count(), N + 1);
    for bad in ["namespace=source&format=xml", "namespace=source&colour=red", ""] {
        assert_eq!(export_text(c, bad).await.0, 400, "{bad}");
    }
}

#[tokio::test]
async fn each_line_is_validated_and_reported_and_nothing_invalid_is_written() {
    let node = TestNode::start().await;
    let c = &node.client;
    let long = "x".repeat(100_001);
    let lines = [
        json!({"id": "ok-1", "content": "first good line"}).to_string(),
        "{not json".to_string(),
        json!({"id": "no-content"}).to_string(),
        json!({"id": "ok-1", "content": "the same id again"}).to_string(),
        json!({"id": "too-long", "content": long}).to_string(),
        json!({"id": "bad-importance", "content": "x", "importance": 7}).to_string(),
        String::new(),
        json!({"id": "ok-2", "content": "second good line", "tags": ["a"]}).to_string(),
    ];
    let (s, v) = import(c, "namespace=checked", "application/x-ndjson", lines.join("\n").into_bytes()).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["imported_count"].as_u64(), v["skipped_count"].as_u64(), v["total"].as_u64()),
        (Some(2), Some(5), Some(7)),
        "{v}"
    );
    let errors: Vec<(u64, String)> = v["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| (e["line"].as_u64().expect("line"), e["code"].as_str().expect("code").to_string()))
        .collect();
    assert_eq!(errors.iter().map(|e| e.0).collect::<Vec<_>>(), vec![2, 3, 4, 5, 6], "{v}");
    assert_eq!(errors[0].1, "INVALID_JSON");
    assert_eq!(errors[2].1, "DUPLICATE_ID");
    assert_eq!(count(c, "checked").await, 2);
    let (_, text) = export_text(c, "namespace=checked").await;
    let got = comparable(&text);
    assert_eq!(got.keys().collect::<Vec<_>>(), vec!["ok-1", "ok-2"]);
    assert_eq!(got["ok-1"]["content"], "first good line", "the later duplicate did not overwrite it");
    // A body that is not UTF-8, an unknown format.
    assert_eq!(import(c, "namespace=checked", "application/x-ndjson", vec![0xff, 0xfe]).await.0, 400);
    assert_eq!(import(c, "namespace=checked&format=zep", "application/x-ndjson", b"{}".to_vec()).await.0, 400);
    assert_eq!(count(c, "checked").await, 2);
}

#[tokio::test]
async fn a_tenant_cannot_export_or_import_another_tenants_namespace() {
    let node = TestNode::start().await;
    let root = &node.client;
    let (s, _) = root
        .post("/v1/memory/store", &json!({"namespace": "victim", "agent_id": "v", "content": "victim's secret"}))
        .await;
    assert_eq!(s, 200);
    let (_, key) =
        create_key(root, "/admin/keys", &json!({"name": "attacker", "scope": "write", "namespaces": ["attacker"]}))
            .await;
    let attacker = root.with_key(Some(&key));
    let (s, text) = export_text(&attacker, "namespace=victim").await;
    assert_eq!(s, 403);
    assert!(!text.contains("secret"));
    let line = json!({"id": "planted", "namespace": "victim", "content": "planted by the attacker"}).to_string();
    let (s, _) = import(&attacker, "namespace=victim", "application/x-ndjson", line.clone().into_bytes()).await;
    assert_eq!(s, 403);
    // A line naming the victim's namespace, imported into its own: it lands in its own.
    let (s, v) = import(&attacker, "namespace=attacker", "application/x-ndjson", line.into_bytes()).await;
    assert_eq!((s, v["imported_count"].as_u64()), (200, Some(1)), "{v}");
    assert_eq!(count(root, "victim").await, 1, "the victim's namespace is unchanged");
    let (_, victim) = export_text(root, "namespace=victim").await;
    assert!(!victim.contains("planted"));
    // A read key exports but does not import.
    let (_, reader) =
        create_key(root, "/admin/keys", &json!({"name": "reader", "scope": "read", "namespaces": ["attacker"]})).await;
    let reader = root.with_key(Some(&reader));
    assert_eq!(export_text(&reader, "namespace=attacker").await.0, 200);
    let (s, _) = import(&reader, "namespace=attacker", "application/x-ndjson", b"{\"content\":\"x\"}".to_vec()).await;
    assert_eq!(s, 403);
    assert_eq!(count(root, "attacker").await, 1);
}

#[tokio::test]
async fn a_background_import_reports_progress_to_its_key_from_any_node() {
    let c = loci_tests::TestCluster::start(3).await;
    c.wait_ready(std::time::Duration::from_secs(60)).await;
    let root = c.client(1).clone();
    let (_, writer) =
        create_key(&root, "/admin/keys", &json!({"name": "w", "scope": "write", "namespaces": ["acme-*"]})).await;
    let (_, other) =
        create_key(&root, "/admin/keys", &json!({"name": "o", "scope": "admin", "namespaces": ["globex"]})).await;
    let mut lines: Vec<String> = (0..250)
        .map(|i| json!({"id": format!("b{i:04}"), "content": format!("background line {i}")}).to_string())
        .collect();
    lines.insert(7, "{not json".into());
    let (s, v) = root
        .with_key(Some(&writer))
        .raw(
            reqwest::Method::POST,
            "/v1/import?namespace=acme-bg&background=true",
            Some("application/x-ndjson"),
            lines.join("\n").into_bytes(),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["status"], "running");
    assert_eq!(v["total"], 251);
    let id = v["job_id"].as_str().expect("job id").to_string();
    assert!(id.starts_with(&format!("imp_{}_", c.node_id(1))), "{id}");

    // Readable from another node by its key; finished with every line accounted for.
    let w0 = c.client(0).with_key(Some(&writer));
    let mut job = Value::Null;
    for _ in 0..200 {
        let (s, v) = w0.get(&format!("/v1/import/{id}/status")).await;
        assert_eq!(s, 200, "{v}");
        if v["status"] != "running" {
            job = v;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(job["status"], "done", "{job}");
    assert_eq!((job["imported"].as_u64(), job["skipped"].as_u64()), (Some(250), Some(1)));
    assert_eq!(job["errors"][0]["line"], 8);
    assert_eq!(job["errors"][0]["code"], "INVALID_JSON");
    assert!(job["finished_at"].as_u64().is_some());
    let (s, n) = root.post("/v1/namespaces/acme-bg/vectors/count", &json!({})).await;
    assert_eq!(s, 200, "{n}");
    assert_eq!(n["count"], 250);

    // Another tenant's key, or an unknown job: 404 alike.
    assert_eq!(c.client(2).with_key(Some(&other)).get(&format!("/v1/import/{id}/status")).await.0, 404);
    assert_eq!(w0.get("/v1/import/imp_1_999999/status").await.0, 404);
    assert_eq!(w0.get("/v1/import/nonsense/status").await.0, 404);
    // The operator (admin of the namespace) may read it.
    assert_eq!(c.client(2).get(&format!("/v1/import/{id}/status")).await.0, 200);
    // And over typed gRPC.
    let addr = c.handle(2).grpc_addr;
    let ch = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut req = tonic::Request::new(loci_api::pb::ImportStatusRequest { job_id: id.clone() });
    req.metadata_mut().insert("x-api-key", writer.parse().expect("ascii"));
    let job = loci_api::pb::memories_client::MemoriesClient::new(ch.clone())
        .import_status(req)
        .await
        .expect("grpc")
        .into_inner();
    assert_eq!((job.status.as_str(), job.imported, job.errors.len()), ("done", 250, 1));
    let mut req = tonic::Request::new(loci_api::pb::ImportStatusRequest { job_id: id.clone() });
    req.metadata_mut().insert("x-api-key", other.parse().expect("ascii"));
    let refused =
        loci_api::pb::memories_client::MemoriesClient::new(ch).import_status(req).await.expect_err("another tenant");
    assert_eq!(refused.code(), tonic::Code::NotFound);

    // An import answered when done carries its job too.
    let (s, v) = root
        .with_key(Some(&writer))
        .raw(
            reqwest::Method::POST,
            "/v1/import?namespace=acme-bg",
            Some("application/x-ndjson"),
            lines[..3].join("\n").into_bytes(),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!((v["status"].as_str(), v["imported_count"].as_u64()), (Some("done"), Some(3)));
    assert!(v["job_id"].as_str().is_some());
}

#[tokio::test]
async fn csv_mem0_and_zep_round_trip_what_each_format_holds() {
    let node = TestNode::start().await;
    let c = &node.client;
    for (i, content) in ["=SUM(A1) is not a formula", "line one\nline two, with \"quotes\"", "plain"].iter().enumerate()
    {
        let (s, v) = c
            .post(
                "/v1/memory/store",
                &json!({"namespace": "fmt-src", "agent_id": format!("agent{i}"), "id": format!("f{i}"), "content": content,
                        "tags": ["t1", "t2"], "importance": 0.25 * i as f64, "metadata": {"role": "assistant", "n": i},
                        "memory_type": "semantic"}),
            )
            .await;
        assert_eq!(s, 200, "{v}");
    }
    let (_, src) = export_text(c, "namespace=fmt-src").await;
    let want = comparable(&src);
    for (format, ct) in [("csv", "text/csv"), ("mem0", "application/json"), ("zep", "application/json")] {
        let (s, text) = export_text(c, &format!("namespace=fmt-src&format={format}")).await;
        assert_eq!(s, 200, "{text}");
        if format != "csv" {
            let doc: Value = serde_json::from_str(&text).expect("a JSON document");
            let key = if format == "zep" { "messages" } else { "memories" };
            assert_eq!(doc[key].as_array().map(Vec::len), Some(3), "{text}");
        }
        let dst = format!("fmt-{format}");
        let (s, v) = import(c, &format!("namespace={dst}&format={format}"), ct, text.into_bytes()).await;
        assert_eq!(s, 200, "{format}: {v}");
        assert_eq!((v["imported_count"].as_u64(), v["skipped_count"].as_u64()), (Some(3), Some(0)), "{format}: {v}");
        let (_, back) = export_text(c, &format!("namespace={dst}")).await;
        let got = comparable(&back);
        assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>(), "{format}: ids kept");
        for (id, w) in &want {
            let g = &got[id];
            assert_eq!(g["content"], w["content"], "{format} {id}: content, formula guard and newlines");
            assert_eq!(g["agent_id"], w["agent_id"], "{format} {id}");
            assert_eq!(g["created_at"], w["created_at"], "{format} {id}");
            assert_eq!(g["metadata"]["n"], w["metadata"]["n"], "{format} {id}: metadata");
            if format != "zep" {
                assert_eq!(g["tags"], w["tags"], "{format} {id}: tags");
                assert_eq!(g["importance"], w["importance"], "{format} {id}");
            }
        }
    }
    // A document that cannot be read is refused whole; an item that cannot is reported alone.
    let (s, _) = import(c, "namespace=fmt-bad&format=mem0", "application/json", b"{\"memories\": 5}".to_vec()).await;
    assert_eq!(s, 400);
    let (s, _) = import(c, "namespace=fmt-bad&format=csv", "text/csv", b"id,colour\n1,red\n".to_vec()).await;
    assert_eq!(s, 400);
    let doc = json!({"memories": [{"id": "ok1", "memory": "fine", "user_id": "u"}, {"id": "bad", "hash": "no text"}]});
    let (s, v) = import(c, "namespace=fmt-bad&format=mem0", "application/json", doc.to_string().into_bytes()).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!((v["imported_count"].as_u64(), v["errors"][0]["line"].as_u64()), (Some(1), Some(2)), "{v}");
    assert_eq!(count(c, "fmt-bad").await, 1);
}
