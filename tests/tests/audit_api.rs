//! The audit trail as an API (issue 17 item 3): `GET /v1/audit` over every member's file, what a
//! tenant admin may see of it, paging, the exports, and `loci audit verify --url`.

use std::collections::BTreeSet;
use std::time::Duration;

use loci_tests::{Client, TestCluster, TestNode, create_key};
use serde_json::{Value, json};

fn with_audit(a: &mut loci_node::ServeArgs) {
    a.audit_enabled = true;
    a.audit_file = Some(a.data_dir.join("audit.log"));
}

fn store(ns: &str, content: &str) -> Value {
    json!({"agent_id": "a", "namespace": ns, "content": content})
}

/// Every record `c` may see matching `query`, page by page (`limit` a page).
async fn all_pages(c: &Client, query: &str, limit: usize) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    for _ in 0..1000 {
        let (s, v) = c.get(&format!("/v1/audit?limit={limit}{query}{cursor}")).await;
        assert_eq!(s, 200, "{v}");
        let events = v["events"].as_array().expect("events").clone();
        assert!(events.len() <= limit);
        out.extend(events);
        match v["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return out,
        }
    }
    panic!("paging did not end");
}

fn namespaces_of(e: &Value) -> Vec<String> {
    let d = &e["details"];
    let mut out: Vec<String> =
        d["namespaces"].as_array().into_iter().flatten().filter_map(|n| n.as_str().map(str::to_string)).collect();
    if let Some(n) = d["namespace"].as_str() {
        out.push(n.to_string());
    }
    out
}

#[tokio::test]
async fn tenant_admins_see_only_their_own_records_and_pages_cover_everything_once() {
    let node = TestNode::start_with(with_audit).await;
    let root = node.client.clone();
    let (_, acme_admin) =
        create_key(&root, "/admin/keys", &json!({"name": "acme", "scope": "admin", "namespaces": ["acme-*"]})).await;
    let (globex_id, globex_writer) =
        create_key(&root, "/admin/keys", &json!({"name": "globex-w", "scope": "write", "namespaces": ["globex"]}))
            .await;
    let acme = root.with_key(Some(&acme_admin));
    let globex = root.with_key(Some(&globex_writer));
    for i in 0..6 {
        assert_eq!(acme.post("/v1/memory/store", &store("acme-app", &format!("acme note {i}"))).await.0, 200);
        assert_eq!(globex.post("/v1/memory/store", &store("globex", &format!("globex note {i}"))).await.0, 200);
    }
    // Globex's key tries acme's namespace: refused, and recorded.
    assert_eq!(globex.post("/v1/memory/store", &store("acme-app", "intrusion")).await.0, 403);
    // An acme request that also names globex (a refused check): not acme's to see.
    let (s, _) = acme.post("/v1/memory/store", &store("globex", "acme pokes globex")).await;
    assert_eq!(s, 403);

    // The operator sees everything, including the intrusion attempt, by key and status.
    let everything = all_pages(&root, "", 1000).await;
    let intrusions = all_pages(&root, &format!("&key_id={globex_id}&status=403"), 1000).await;
    assert_eq!(intrusions.len(), 1, "{intrusions:?}");
    assert_eq!(intrusions[0]["namespace"], "acme-app");
    assert_eq!(intrusions[0]["event_type"], "request");
    assert!(everything.iter().any(|e| e["event_type"] == "key_created"));

    // The tenant admin sees its own requests only: never a globex record, never a node-wide one.
    let mine = all_pages(&acme, "", 1000).await;
    assert!(mine.len() >= 6, "{}", mine.len());
    for e in &mine {
        let names = namespaces_of(e);
        assert!(!names.is_empty() && names.iter().all(|n| n.starts_with("acme-")), "{e}");
        assert!(!e.to_string().contains("globex"), "a globex name leaked: {e}");
    }
    // Globex's attempt on acme's namespace is acme's to see, but not who made it.
    let attempt = mine.iter().find(|e| e["status"] == 403 && e["namespace"] == "acme-app").expect("the attempt");
    assert_eq!(
        (attempt["key_id"].is_null(), attempt["details"]["foreign_key"].as_bool()),
        (true, Some(true)),
        "{attempt}"
    );
    assert!(attempt["details"]["ip"].is_null() && attempt["details"]["key_name"].is_null());
    let own = mine.iter().find(|e| e["status"] == 200).expect("an own store");
    assert!(own["key_id"].is_string() && own["details"]["foreign_key"].is_null(), "{own}");
    // Asking for another tenant's namespace is refused, not answered empty.
    let (s, v) = acme.get("/v1/audit?namespace=globex").await;
    assert_eq!((s, v["code"].as_str()), (403, Some("NAMESPACE_ACCESS_DENIED")), "{v}");
    // Keys without admin anywhere are refused.
    let (s, _) = globex.get("/v1/audit").await;
    assert_eq!(s, 403);
    let (s, _) = acme.get("/v1/audit/export?format=chain").await;
    assert_eq!(s, 403, "the raw chain is the operator's");

    // Paging: small pages return every record exactly once, newest first.
    let paged = all_pages(&root, "", 7).await;
    let ids = |v: &[Value]| v.iter().map(|e| e["cursor"].as_str().expect("cursor").to_string()).collect::<Vec<_>>();
    let (paged_ids, all_ids) = (ids(&paged), ids(&everything));
    let unique: BTreeSet<&String> = paged_ids.iter().collect();
    assert_eq!(unique.len(), paged_ids.len(), "no record twice");
    // Records written after the first listing (the listings themselves) may lead the pages.
    let tail: Vec<&String> = paged_ids.iter().filter(|c| all_ids.contains(c)).collect();
    assert_eq!(tail, all_ids.iter().collect::<Vec<_>>(), "every record once, in order");
    let ts: Vec<i64> = paged.iter().map(|e| e["timestamp"].as_i64().expect("ms")).collect();
    assert!(ts.windows(2).all(|w| w[0] >= w[1]), "newest first");

    // Filters: event type, time range, agent.
    let (_, v) = root.get("/v1/audit?event_type=key_created").await;
    assert!(v["events"].as_array().expect("events").iter().all(|e| e["event_type"] == "key_created"));
    assert_eq!(v["count"], 2, "{v}");
    let oldest = *ts.last().expect("records");
    let (_, v) = root.get(&format!("/v1/audit?to={oldest}&limit=1000")).await;
    assert!(v["events"].as_array().expect("events").iter().all(|e| e["timestamp"].as_i64() <= Some(oldest)));
    for bad in ["status=4x", "from=10&to=5", "limit=0", "limit=1001", "cursor=nope", "colour=red", "format=csv"] {
        let (s, v) = root.get(&format!("/v1/audit?{bad}")).await;
        assert_eq!(s, 400, "{bad}: {v}");
    }

    // Exports: JSON and CSV pages with the next cursor in a header; CSV cells cannot start a formula.
    let (s, v) = root.get("/v1/audit/export?format=json&limit=3").await;
    assert_eq!((s, v["count"].as_u64()), (200, Some(3)), "{v}");
    let resp = reqwest::Client::new()
        .get(format!("{}/v1/audit/export?format=csv&limit=5", root.base))
        .bearer_auth(loci_tests::ROOT_KEY)
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.headers().get("x-loci-next-cursor").is_some());
    assert!(resp.headers()["content-type"].to_str().expect("ascii").starts_with("text/csv"));
    let text = resp.text().await.expect("body");
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("timestamp,node,id,event_type,key_id,namespace,agent_id,method,path,status,reason"));
    assert_eq!(lines.count(), 5);
}

#[tokio::test]
async fn the_chain_verifies_over_the_api_and_a_tampered_file_does_not() {
    let node = TestNode::start_with(with_audit).await;
    let root = node.client.clone();
    for i in 0..5 {
        assert_eq!(root.post("/v1/memory/store", &store("chain", &format!("n{i}"))).await.0, 200);
    }
    let url = node.client.base.clone();
    let verify = |url: String, key: Option<String>| {
        tokio::task::spawn_blocking(move || loci_node::cli::verify_audit_url(&url, key.as_deref(), None))
    };
    let verdict = verify(url.clone(), Some(loci_tests::ROOT_KEY.into())).await.expect("joined").expect("read");
    assert!(matches!(verdict, loci_service::audit::Verdict::Intact { lines } if lines >= 6), "{verdict:?}");
    assert!(verify(url.clone(), Some("wrong-key-0123456789".into())).await.expect("joined").is_err());

    // Edit one record on disk (what someone with shell access could do): the API's chain breaks.
    let path = node.path().join("audit.log");
    let text = std::fs::read_to_string(&path).expect("audit file");
    let edited = text.replacen("\"status\":200", "\"status\":201", 1);
    assert_ne!(edited, text);
    std::fs::write(&path, edited).expect("write");
    let verdict = verify(url, Some(loci_tests::ROOT_KEY.into())).await.expect("joined").expect("read");
    assert!(matches!(verdict, loci_service::audit::Verdict::Broken { .. }), "{verdict:?}");
}

#[tokio::test]
async fn a_listing_covers_every_member_and_says_which_did_not_answer() {
    let mut c = TestCluster::start_with(3, with_audit).await;
    c.wait_ready(Duration::from_secs(60)).await;
    for i in 0..3 {
        let (s, v) = c.client(i).post_retrying("/v1/memory/store", &store("spread", &format!("from node {i}"))).await;
        assert_eq!(s, 200, "{v}");
    }
    let (s, v) = c.client(0).get("/v1/audit?path_prefix=/v1/memory/store&limit=1000").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["complete"], true, "{v}");
    let nodes: BTreeSet<u64> =
        v["events"].as_array().expect("events").iter().filter_map(|e| e["node"].as_u64()).collect();
    let ids: BTreeSet<u64> = (0..3).map(|i| c.node_id(i)).collect();
    assert!(ids.is_subset(&nodes), "each node's own request record: {nodes:?} of {ids:?}");
    assert_eq!(v["nodes"]["answered"].as_array().map(Vec::len), Some(3));
    // One node's records only.
    let n2 = c.node_id(2);
    let (_, v) = c.client(0).get(&format!("/v1/audit?node={n2}&limit=1000")).await;
    assert!(v["events"].as_array().expect("events").iter().all(|e| e["node"].as_u64() == Some(n2)));
    let (s, _) = c.client(0).get("/v1/audit?node=424242").await;
    assert_eq!(s, 404);

    // A member down: the page says so instead of quietly missing its records.
    c.stop(2).await;
    let (s, v) = c.client(0).get("/v1/audit?limit=10").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["complete"], false, "{v}");
    assert_eq!(v["nodes"]["unavailable"][0]["node"].as_u64(), Some(n2), "{v}");
}

#[tokio::test]
async fn without_an_audit_file_the_listing_says_so() {
    let node = TestNode::start().await;
    let (s, v) = node.client.get("/v1/audit").await;
    assert_eq!((s, v["code"].as_str()), (409, Some("AUDIT_LOG_UNAVAILABLE")), "{v}");
}

#[tokio::test]
async fn rotated_audit_files_are_listed_exported_and_verified_as_one_chain() {
    let node = TestNode::start_with(|a| {
        with_audit(a);
        a.audit_max_file_bytes = 4_000;
        a.audit_retain_files = 3;
    })
    .await;
    let root = node.client.clone();
    let log = node.path().join("audit.log");
    for i in 0..60 {
        assert_eq!(root.post("/v1/memory/store", &store("rot", &format!("note {i}"))).await.0, 200);
    }
    let files = loci_service::audit::rotate::files_newest_first(&log);
    assert_eq!(files.len(), 4, "the current file and three rotated ones: {files:?}");
    assert!(!loci_service::audit::rotate::rotated(&log, 4).exists(), "older ones were deleted");
    for f in &files {
        assert!(std::fs::metadata(f).map(|m| m.len()).unwrap_or(0) < 8_000, "{f:?} stays near the limit");
    }
    // The oldest kept file starts at an audit_rotated record; the chain is intact across files.
    assert_eq!(
        loci_service::audit::verify(&log).ok(),
        Some(loci_service::audit::Verdict::Intact {
            lines: files.iter().map(|f| std::fs::read_to_string(f).unwrap_or_default().lines().count() as u64).sum(),
        })
    );
    // The listing reads the rotated files too: the stores in them are found.
    let (s, v) = root.get("/v1/audit?path_prefix=/v1/memory/store&limit=1000").await;
    assert_eq!(s, 200, "{v}");
    let in_files: usize = files
        .iter()
        .map(|f| {
            std::fs::read_to_string(f)
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains("\"/v1/memory/store\""))
                .count()
        })
        .sum();
    assert_eq!(v["count"].as_u64(), Some(in_files as u64));
    assert!(in_files > 10, "{in_files}");
    // format=chain serves every kept file, oldest first, as one verifiable chain.
    let resp = reqwest::Client::new()
        .get(format!("{}/v1/audit/export?format=chain", root.base))
        .bearer_auth(loci_tests::ROOT_KEY)
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 200);
    let body = resp.bytes().await.expect("body");
    assert!(matches!(
        loci_service::audit::verify_reader(std::io::BufReader::new(&body[..])),
        Ok(loci_service::audit::Verdict::Intact { .. })
    ));

    // Removing a file from the middle breaks the chain; so does cutting the head of the oldest.
    let node_dir = node.stop().await;
    let log = node_dir.path().join("audit.log");
    let middle = loci_service::audit::rotate::rotated(&log, 2);
    let saved = std::fs::read(&middle).expect("middle file");
    std::fs::remove_file(&middle).expect("remove");
    std::fs::rename(loci_service::audit::rotate::rotated(&log, 3), &middle).expect("close the gap");
    assert!(matches!(loci_service::audit::verify(&log), Ok(loci_service::audit::Verdict::Broken { .. })));
    std::fs::write(&middle, &saved).expect("restore");
    let oldest = loci_service::audit::rotate::rotated(&log, 2);
    let text = std::fs::read_to_string(&oldest).expect("oldest");
    let cut: String = text.lines().skip(1).map(|l| format!("{l}\n")).collect();
    std::fs::write(&oldest, cut).expect("cut");
    assert!(
        matches!(loci_service::audit::verify(&log), Ok(loci_service::audit::Verdict::Broken { .. })),
        "a head cut off is not a rotation"
    );
}
