//! JWT bearer tokens next to API keys (seed 004: "OAuth 2.0 / JWT / API key"; issue 17 item 6).
//!
//! Tokens are signed here by local key pairs (RS256 with the test-only key of
//! `tests/fixtures/jwt/`, ES256 and EdDSA with keys generated per run) and verified by a real
//! node against a JWKS file or a JWKS served over HTTP. Every refusal is tried as an attack and
//! checked twice: the status and code, and that nothing was written.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use loci_tests::{Client, TestNode, eventually};
use parking_lot::Mutex;
use serde_json::{Value, json};

const ISSUER: &str = "https://idp.test";
const AUDIENCE: &str = "loci-test";

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// A signing key and its public JWK.
struct Signer {
    kid: String,
    alg: Algorithm,
    key: EncodingKey,
    jwk: Value,
}

impl Signer {
    fn rsa(kid: &str) -> Self {
        let pem = std::fs::read(fixture("rsa-test-key.pem")).expect("RSA fixture");
        let mut jwk: Value =
            serde_json::from_slice(&std::fs::read(fixture("rsa-test-key.public.json")).expect("RSA JWK"))
                .expect("JSON");
        jwk["kid"] = json!(kid);
        jwk["use"] = json!("sig");
        Signer { kid: kid.into(), alg: Algorithm::RS256, key: EncodingKey::from_rsa_pem(&pem).expect("RSA key"), jwk }
    }

    fn ec(kid: &str) -> Self {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("P-256 key");
        let raw = kp.public_key_raw();
        assert_eq!(raw.len(), 65, "uncompressed point");
        let jwk = json!({"kty": "EC", "crv": "P-256", "kid": kid, "x": b64(&raw[1..33]), "y": b64(&raw[33..65])});
        let key = EncodingKey::from_ec_pem(kp.serialize_pem().as_bytes()).expect("EC key");
        Signer { kid: kid.into(), alg: Algorithm::ES256, key, jwk }
    }

    fn ed(kid: &str) -> Self {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("Ed25519 key");
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64(kp.public_key_raw())});
        let key = EncodingKey::from_ed_pem(kp.serialize_pem().as_bytes()).expect("Ed25519 key");
        Signer { kid: kid.into(), alg: Algorithm::EdDSA, key, jwk }
    }

    fn sign(&self, claims: &Value) -> String {
        let mut h = Header::new(self.alg);
        h.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&h, claims, &self.key).expect("signed")
    }
}

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/jwt").join(name)
}

fn jwks(signers: &[&Signer]) -> Value {
    json!({"keys": signers.iter().map(|s| s.jwk.clone()).collect::<Vec<_>>()})
}

/// Claims for `sub` with these grants, valid for an hour.
fn claims(sub: &str, grants: Value) -> Value {
    json!({"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": now(), "exp": now() + 3600,
           "jti": format!("{sub}-{}", now()), "loci": {"grants": grants}})
}

fn alice_grants() -> Value {
    json!([{"namespace": "user-alice", "scope": "write"}, {"namespace": "shared-*", "scope": "read"}])
}

async fn node_with_jwks(jwks_source: String, tweak: impl FnOnce(&mut loci_node::config::JwtArgs)) -> TestNode {
    TestNode::start_with(|a| {
        a.jwt.jwt_issuer = Some(ISSUER.into());
        a.jwt.jwt_audience = AUDIENCE.into();
        a.jwt.jwt_jwks = Some(jwks_source);
        tweak(&mut a.jwt);
    })
    .await
}

fn write_jwks(dir: &std::path::Path, set: &Value) -> String {
    let path = dir.join("jwks.json");
    std::fs::write(&path, serde_json::to_vec(set).expect("json")).expect("write JWKS");
    path.display().to_string()
}

fn store_body(ns: &str, content: &str) -> Value {
    json!({"agent_id": "a", "namespace": ns, "content": content})
}

/// Memories of `ns` as the root key sees them (0 when it does not exist).
async fn count(root: &Client, ns: &str) -> u64 {
    let (_, v) = root.get(&format!("/v1/namespaces/{ns}")).await;
    v["memory_count"].as_u64().unwrap_or(0)
}

#[tokio::test]
async fn tokens_of_every_algorithm_reach_their_grants_and_nothing_else() {
    let keys_dir = tempfile::tempdir().expect("tempdir");
    let (rsa, ec, ed) = (Signer::rsa("rsa1"), Signer::ec("ec1"), Signer::ed("ed1"));
    let node = node_with_jwks(write_jwks(keys_dir.path(), &jwks(&[&rsa, &ec, &ed])), |_| {}).await;
    let root = &node.client;
    // Another tenant's data, written with the root key.
    let (s, _) = root.post("/v1/memory/store", &store_body("user-bob", "bob's secret plan")).await;
    assert_eq!(s, 200);
    let (s, _) = root.post("/v1/memory/store", &store_body("shared-docs", "the shared handbook")).await;
    assert_eq!(s, 200);

    for signer in [&rsa, &ec, &ed] {
        let token = signer.sign(&claims("alice", alice_grants()));
        let alice = root.with_key(Some(&token));
        let (s, v) =
            alice.post("/v1/memory/store", &store_body("user-alice", &format!("alice {:?}", signer.alg))).await;
        assert_eq!(s, 200, "{:?}: {v}", signer.alg);
        let (s, v) = alice
            .post("/v1/memory/recall", &json!({"agent_id": "a", "namespace": "shared-docs", "query": "handbook"}))
            .await;
        assert_eq!(s, 200, "read grant on the prefix: {v}");
        assert!(v.to_string().contains("shared handbook"));

        // The attacks: another tenant's namespace, a write under a read grant, node-wide calls.
        let (s, v) = alice.post("/v1/memory/store", &store_body("user-bob", "overwrite")).await;
        assert_eq!((s, v["code"].as_str()), (403, Some("NAMESPACE_ACCESS_DENIED")), "{v}");
        let (s, v) =
            alice.post("/v1/memory/recall", &json!({"agent_id": "a", "namespace": "user-bob", "query": "plan"})).await;
        assert_eq!(s, 403);
        assert!(!v.to_string().contains("secret plan"), "{v}");
        let (s, v) = alice.post("/v1/memory/store", &store_body("shared-docs", "vandalism")).await;
        assert_eq!((s, v["code"].as_str()), (403, Some("INSUFFICIENT_SCOPE")), "{v}");
        for path in ["/admin/keys", "/admin/quotas", "/admin/tokens/denials", "/v1/admin/cluster/status"] {
            let (s, _) = alice.get(path).await;
            assert_eq!(s, 403, "{path}");
        }
        let (s, v) = alice.get("/v1/namespaces").await;
        assert_eq!(s, 200);
        assert!(!v.to_string().contains("user-bob"), "other tenants are invisible: {v}");
    }
    assert_eq!(count(root, "user-alice").await, 3);
    assert_eq!(count(root, "user-bob").await, 1, "bob's namespace unchanged");
    assert_eq!(count(root, "shared-docs").await, 1, "read grant wrote nothing");

    // The same token works over gRPC (authorization metadata), with the same refusals.
    let token = ed.sign(&claims("alice", alice_grants()));
    let addr = node.handle.as_ref().expect("running").grpc_addr;
    let ch = tonic::transport::Channel::from_shared(format!("http://{addr}")).expect("uri").connect().await.expect("c");
    let mut mem = loci_api::pb::memories_client::MemoriesClient::new(ch);
    let req = |ns: &str| {
        let mut r = tonic::Request::new(loci_api::pb::StoreMemoryRequest {
            agent_id: "a".into(),
            namespace: ns.into(),
            content: "over grpc".into(),
            ..Default::default()
        });
        r.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("ascii"));
        r
    };
    assert!(mem.store(req("user-alice")).await.is_ok());
    assert_eq!(mem.store(req("user-bob")).await.expect_err("refused").code(), tonic::Code::PermissionDenied);
    assert_eq!(count(root, "user-bob").await, 1);
}

#[tokio::test]
async fn forged_expired_and_misdirected_tokens_are_refused_and_write_nothing() {
    let keys_dir = tempfile::tempdir().expect("tempdir");
    let (rsa, ec) = (Signer::rsa("rsa1"), Signer::ec("ec1"));
    let node = node_with_jwks(write_jwks(keys_dir.path(), &jwks(&[&rsa, &ec])), |j| {
        j.jwt_allowed_namespaces = "user-*,shared-*".into();
        j.jwt_max_scope = "write".into();
    })
    .await;
    let root = &node.client;
    let good = claims("alice", alice_grants());
    let with = |patch: Value| {
        let mut c = good.clone();
        for (k, v) in patch.as_object().expect("object") {
            c[k] = v.clone();
        }
        c
    };
    // Same kid as a key of the set, another private key.
    let impostor = Signer::ec("ec1");
    // HMAC over the public key's text: the algorithm-confusion forgery.
    let hmac = {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("rsa1".into());
        let secret = serde_json::to_vec(&rsa.jwk).expect("json");
        jsonwebtoken::encode(&h, &good, &EncodingKey::from_secret(&secret)).expect("signed")
    };
    let unknown_kid = Signer::ec("ec-unknown").sign(&good);
    let tampered = {
        let t = ec.sign(&good);
        let parts: Vec<&str> = t.split('.').collect();
        let mut payload: Value =
            serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(parts[1]).expect("b64"))
                .expect("json");
        payload["loci"]["grants"] = json!([{"namespace": "user-bob", "scope": "write"}]);
        format!("{}.{}.{}", parts[0], b64(&serde_json::to_vec(&payload).expect("json")), parts[2])
    };
    let cases: Vec<(&str, String, &str)> = vec![
        ("expired", ec.sign(&with(json!({"exp": now() - 120}))), "TOKEN_EXPIRED"),
        ("not yet valid", ec.sign(&with(json!({"nbf": now() + 600}))), "INVALID_TOKEN"),
        ("another audience", ec.sign(&with(json!({"aud": "some-other-api"}))), "INVALID_TOKEN"),
        ("another issuer", ec.sign(&with(json!({"iss": "https://evil.test"}))), "INVALID_TOKEN"),
        (
            "no exp",
            ec.sign(&json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "loci": {"grants": alice_grants()}})),
            "INVALID_TOKEN",
        ),
        ("signed by another key", impostor.sign(&good), "INVALID_TOKEN"),
        ("payload edited", tampered, "INVALID_TOKEN"),
        ("HMAC with the public key", hmac, "INVALID_TOKEN"),
        ("unknown kid", unknown_kid, "INVALID_TOKEN"),
        (
            "super_admin",
            ec.sign(&claims("alice", json!([{"namespace": "user-alice", "scope": "super_admin"}]))),
            "INVALID_TOKEN",
        ),
        (
            "above the max scope",
            ec.sign(&claims("alice", json!([{"namespace": "user-alice", "scope": "admin"}]))),
            "INVALID_TOKEN",
        ),
        (
            "outside the allowed namespaces",
            ec.sign(&claims(
                "alice",
                json!([{"namespace": "billing", "scope": "read"}, {"namespace": "user-alice", "scope": "write"}]),
            )),
            "INVALID_TOKEN",
        ),
        (
            "a prefix wider than allowed",
            ec.sign(&claims("alice", json!([{"namespace": "*", "scope": "read"}]))),
            "INVALID_TOKEN",
        ),
        ("no grants", ec.sign(&with(json!({"loci": null}))), "INVALID_TOKEN"),
    ];
    for (what, token, code) in &cases {
        let c = root.with_key(Some(token));
        let (s, v) = c.post("/v1/memory/store", &store_body("user-alice", what)).await;
        assert_eq!((s, v["code"].as_str()), (401, Some(*code)), "{what}: {v}");
        let (s, _) = c.get("/v1/namespaces").await;
        assert_eq!(s, 401, "{what}");
    }
    assert_eq!(count(root, "user-alice").await, 0, "no refused token wrote anything");
    // Tokens are off for a bearer credential that is not a JWT: it is an API key (and invalid).
    let (s, v) = root.with_key(Some("dk_key_notatoken")).get("/v1/namespaces").await;
    assert_eq!((s, v["code"].as_str()), (401, Some("INVALID_API_KEY")));
    // And the good token still works, so every refusal above was the token's fault.
    let (s, v) = root.with_key(Some(&ec.sign(&good))).post("/v1/memory/store", &store_body("user-alice", "ok")).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(count(root, "user-alice").await, 1);
}

#[tokio::test]
async fn the_deny_list_revokes_tokens_by_jti_kid_and_subject() {
    let keys_dir = tempfile::tempdir().expect("tempdir");
    let (ec, ed) = (Signer::ec("ec1"), Signer::ed("ed1"));
    let node = node_with_jwks(write_jwks(keys_dir.path(), &jwks(&[&ec, &ed])), |_| {}).await;
    let root = &node.client;
    let mut c1 = claims("alice", alice_grants());
    c1["jti"] = json!("token-1");
    let mut c2 = c1.clone();
    c2["jti"] = json!("token-2");
    let (t1, t2, t_ed) = (ec.sign(&c1), ec.sign(&c2), ed.sign(&c2));
    let works = |t: &str| {
        let c = root.with_key(Some(t));
        async move { c.get("/v1/namespaces").await.0 }
    };
    assert_eq!(works(&t1).await, 200);

    // A tenant admin cannot touch the deny list, and its attempt leaves it empty.
    let (_, tenant_admin) = loci_tests::create_key(
        root,
        "/admin/keys",
        &json!({"name": "acme-admin", "scope": "admin", "namespaces": ["user-*"]}),
    )
    .await;
    let (s, _) = root.with_key(Some(&tenant_admin)).post("/admin/tokens/denials", &json!({"sub": "alice"})).await;
    assert_eq!(s, 403);
    // Nor can a token, even an admin one.
    let admin_token = ec.sign(&claims("ops", json!([{"namespace": "user-*", "scope": "admin"}])));
    let (s, _) = root.with_key(Some(&admin_token)).post("/admin/tokens/denials", &json!({"sub": "alice"})).await;
    assert_eq!(s, 403);
    let (_, v) = root.get("/admin/tokens/denials").await;
    assert_eq!(v["total"], 0, "{v}");

    // Bad requests change nothing.
    for bad in
        [json!({}), json!({"jti": "a", "sub": "b"}), json!({"jti": "a", "until": 5}), json!({"jti": "a", "x": 1})]
    {
        let (s, v) = root.post("/admin/tokens/denials", &bad).await;
        assert_eq!(s, 400, "{bad}: {v}");
    }

    let (s, v) = root.post("/admin/tokens/denials", &json!({"jti": "token-1", "reason": "laptop stolen"})).await;
    assert_eq!((s, v["id"].as_str()), (201, Some("jti:token-1")), "{v}");
    let (s, v) = root.with_key(Some(&t1)).post("/v1/memory/store", &store_body("user-alice", "after revocation")).await;
    assert_eq!((s, v["code"].as_str()), (401, Some("TOKEN_REVOKED")), "{v}");
    assert_eq!(works(&t2).await, 200, "another token of the same subject still works");

    let (s, _) = root.post("/admin/tokens/denials", &json!({"kid": "ec1"})).await;
    assert_eq!(s, 201);
    assert_eq!(works(&t2).await, 401, "every token of the key is refused");
    assert_eq!(works(&t_ed).await, 200, "a token of another key is not");

    let (s, _) = root.post("/admin/tokens/denials", &json!({"sub": "alice", "until": now() + 3600})).await;
    assert_eq!(s, 201);
    assert_eq!(works(&t_ed).await, 401, "every token of the subject is refused");

    let (_, v) = root.get("/admin/tokens/denials").await;
    assert_eq!(v["total"], 3, "{v}");
    for id in ["sub:alice", "kid:ec1"] {
        let (s, _) = root.delete(&format!("/admin/tokens/denials/{id}")).await;
        assert_eq!(s, 200);
    }
    let (s, _) = root.delete("/admin/tokens/denials/sub:alice").await;
    assert_eq!(s, 404);
    assert_eq!(works(&t2).await, 200, "lifted");
    assert_eq!(works(&t1).await, 401, "the jti denial stays");
    assert_eq!(count(root, "user-alice").await, 0, "no revoked token wrote anything");

    // The same list over gRPC.
    let addr = node.handle.as_ref().expect("running").grpc_addr;
    let ch = tonic::transport::Channel::from_shared(format!("http://{addr}")).expect("uri").connect().await.expect("c");
    let mut tok = loci_api::pb::tokens_client::TokensClient::new(ch);
    fn auth<T>(mut r: tonic::Request<T>) -> tonic::Request<T> {
        r.metadata_mut().insert("x-api-key", loci_tests::ROOT_KEY.parse().expect("ascii"));
        r
    }
    let d = tok
        .deny(auth(tonic::Request::new(loci_api::pb::TokensDenyRequest {
            sub: Some("bob".into()),
            ..Default::default()
        })))
        .await
        .expect("deny")
        .into_inner();
    assert_eq!((d.id.as_str(), d.kind.as_str(), d.created_by.as_str()), ("sub:bob", "sub", "root"));
    let list =
        tok.list_denials(auth(tonic::Request::new(loci_api::pb::TokensListDenialsRequest {}))).await.expect("list");
    assert_eq!(list.into_inner().total, 2);
    let gone = tok
        .remove_denial(auth(tonic::Request::new(loci_api::pb::TokensRemoveDenialRequest { id: "sub:bob".into() })))
        .await
        .expect("remove");
    assert!(gone.into_inner().success);
}

#[tokio::test]
async fn the_subject_template_gives_each_user_their_own_namespace() {
    let keys_dir = tempfile::tempdir().expect("tempdir");
    let ec = Signer::ec("ec1");
    let node = node_with_jwks(write_jwks(keys_dir.path(), &jwks(&[&ec])), |j| {
        j.jwt_subject_namespace = Some("user-{sub}".into());
    })
    .await;
    let root = &node.client;
    let plain = |sub: &str| json!({"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "exp": now() + 600});
    let carol = root.with_key(Some(&ec.sign(&plain("carol"))));
    let (s, v) = carol.post("/v1/memory/store", &store_body("user-carol", "carol's note")).await;
    assert_eq!(s, 200, "{v}");
    let (s, _) = carol.post("/v1/memory/store", &store_body("user-dave", "not carol's")).await;
    assert_eq!(s, 403);
    // A subject shaped like a pattern does not widen the template.
    let (s, v) =
        root.with_key(Some(&ec.sign(&plain("*")))).post("/v1/memory/store", &store_body("user-carol", "x")).await;
    assert_eq!((s, v["code"].as_str()), (401, Some("INVALID_TOKEN")), "{v}");
    assert_eq!(count(root, "user-carol").await, 1);
    assert_eq!(count(root, "user-dave").await, 0);
}

#[tokio::test]
async fn a_jwks_url_is_fetched_and_a_rotated_key_is_picked_up() {
    // The identity provider: a JWKS served over HTTP on loopback, changed by the test.
    let (k1, k2) = (Signer::ec("k1"), Signer::ed("k2"));
    let served = Arc::new(Mutex::new(jwks(&[&k1])));
    let fetches = Arc::new(Mutex::new(0u32));
    let app = {
        let (served, fetches) = (served.clone(), fetches.clone());
        axum::Router::new().route(
            "/.well-known/jwks.json",
            axum::routing::get(move || {
                let (served, fetches) = (served.clone(), fetches.clone());
                async move {
                    *fetches.lock() += 1;
                    axum::Json(served.lock().clone())
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/.well-known/jwks.json", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let node = node_with_jwks(url, |_| {}).await;
    let root = &node.client;
    let get = |t: String| {
        let c = root.with_key(Some(&t));
        async move { c.get("/v1/namespaces").await }
    };
    assert_eq!(get(k1.sign(&claims("alice", alice_grants()))).await.0, 200);
    // The issuer rotates to a new key: until the set is reloaded its tokens are refused, and
    // the refusal makes the node look again (the refresh interval is 300 s).
    let t2 = k2.sign(&claims("alice", alice_grants()));
    let (s, v) = get(t2.clone()).await;
    assert_eq!((s, v["code"].as_str()), (401, Some("INVALID_TOKEN")), "{v}");
    *served.lock() = jwks(&[&k1, &k2]);
    let picked_up = eventually(Duration::from_secs(30), || {
        let t2 = t2.clone();
        let c = root.with_key(Some(&t2));
        async move {
            let _ = c.get("/v1/namespaces").await;
            c.get("/v1/namespaces").await.0 == 200
        }
    })
    .await;
    assert!(picked_up, "the new key was fetched after an unknown kid");
    assert!(*fetches.lock() >= 2);
    // Fetches are rate-limited: a flood of unknown kids does not become a flood of fetches.
    let before = *fetches.lock();
    let unknown = Signer::ec("k3").sign(&claims("alice", alice_grants()));
    for _ in 0..50 {
        assert_eq!(get(unknown.clone()).await.0, 401);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(*fetches.lock() <= before + 1, "at most one fetch within the refetch interval");
}

#[tokio::test]
async fn a_node_refuses_to_start_with_a_broken_token_setup() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ec = Signer::ec("ec1");
    let good = write_jwks(dir.path(), &jwks(&[&ec]));
    let oct = dir.path().join("oct.json");
    std::fs::write(&oct, br#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#).expect("write");
    let cases: Vec<(&str, Box<dyn Fn(&mut loci_node::config::JwtArgs)>)> = vec![
        ("no audience", Box::new(|j| j.jwt_audience = String::new())),
        ("no JWKS", Box::new(|j| j.jwt_jwks = None)),
        ("missing file", Box::new(|j| j.jwt_jwks = Some("/nonexistent/jwks.json".into()))),
        ("only a symmetric key", Box::new(move |j| j.jwt_jwks = Some(oct.display().to_string()))),
        ("plain http to another host", Box::new(|j| j.jwt_jwks = Some("http://idp.example/jwks".into()))),
        ("HMAC allowed", Box::new(|j| j.jwt_algorithms = "RS256,HS256".into())),
        ("super_admin ceiling", Box::new(|j| j.jwt_max_scope = "super_admin".into())),
        ("template without {sub}", Box::new(|j| j.jwt_subject_namespace = Some("everyone".into()))),
    ];
    for (what, tweak) in cases {
        let d = tempfile::tempdir().expect("tempdir");
        let mut args = loci_tests::serve_args(d.path());
        args.jwt.jwt_issuer = Some(ISSUER.into());
        args.jwt.jwt_audience = AUDIENCE.into();
        args.jwt.jwt_jwks = Some(good.clone());
        tweak(&mut args.jwt);
        let started = loci_node::start(args).await;
        assert!(started.is_err(), "{what}: the node started");
        if let Ok(h) = started {
            let _ = h.shutdown().await;
        }
    }
}
