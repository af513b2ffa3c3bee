"""The error contract: for every status the SDK raises its documented exception class with the
right ErrorCode (dakera/exceptions.py `error_from_response`)."""

import time

import pytest

from conftest import client_for
from lociproc import ROOT_KEY

from dakera import MemoryPolicy
from dakera.exceptions import (
    AuthenticationError,
    AuthorizationError,
    ConflictError,
    DakeraError,
    ErrorCode,
    FeatureNotAvailableError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitError,
    ValidationError,
)


def expect(exc_class, code, status, fn):
    with pytest.raises(exc_class) as e:
        fn()
    err = e.value
    assert type(err) is exc_class, f"{type(err).__name__}: {err}"
    assert err.status_code == status, err
    assert err.code == code, f"{err.code} (body {err.response_body})"
    assert isinstance(err.response_body, dict) and err.response_body["error"] == err.message
    return err


# --------------------------------------------------------------------------- 400


@pytest.mark.parametrize("call", [
    lambda c, a: c.store_memory(a, "x", importance=1.5),
    lambda c, a: c.store_memory(a, "x", memory_type="dream"),
    lambda c, a: c.store_memory(a, "x", tags=["dakera-curated"]),
    lambda c, a: c.store_memory(a, "x", metadata={"_dakera_secret": 1}),
    lambda c, a: c.store_memory(a, "x", lang="english!"),
    lambda c, a: c.store_memory(a, "x", event_time="not a time"),
    lambda c, a: c.store_memory(a, ""),
    lambda c, a: c.recall(a, "q", top_k=0),
    lambda c, a: c.recall(a, "q", routing="psychic"),
    lambda c, a: c.recall(a, "q", vector_weight=2.0),
    lambda c, a: c.start_session(a, idle_timeout_secs=10**9),
], ids=["importance", "memory_type", "reserved-tag", "reserved-metadata", "lang", "event_time", "empty-content",
        "top_k", "routing", "vector_weight", "idle_timeout"])
def test_400_validation_error(root, uid, call):
    err = expect(ValidationError, ErrorCode.INVALID_REQUEST, 400, lambda: call(root, f"v-{uid}"))
    assert err.response_body["status"] == 400


# --------------------------------------------------------------------------- 401


def test_401_no_key(node):
    expect(AuthenticationError, ErrorCode.AUTHENTICATION_REQUIRED, 401,
           lambda: client_for(node.url, None, retries=1).list_namespaces())


def test_401_invalid_key(node):
    expect(AuthenticationError, ErrorCode.INVALID_API_KEY, 401,
           lambda: client_for(node.url, "invalid-key-xxx", retries=1).list_namespaces())


def test_401_expired_key(root, node, uid):
    k = root.create_key(f"exp-{uid}", scope="read")
    root.rotate_key(k["key_id"])  # grace 0: the old secret expires at once
    expect(AuthenticationError, ErrorCode.API_KEY_EXPIRED, 401,
           lambda: client_for(node.url, k["key"], retries=1).recall("x", "y"))


def test_401_revoked_key(root, node, uid):
    k = root.create_key(f"rev-{uid}", scope="read")
    root.deactivate_key(k["key_id"])
    expect(AuthenticationError, ErrorCode.INVALID_API_KEY, 401,
           lambda: client_for(node.url, k["key"], retries=1).whoami())


# --------------------------------------------------------------------------- 403


def test_403_namespace_access_denied(root, node, uid):
    k = root.create_key(f"ns-only-{uid}", scope="write", namespaces=[f"mine-{uid}"])
    c = client_for(node.url, k["key"], retries=1)
    expect(AuthorizationError, ErrorCode.NAMESPACE_ACCESS_DENIED, 403,
           lambda: c.recall(f"theirs-{uid}", "anything"))
    expect(AuthorizationError, ErrorCode.NAMESPACE_ACCESS_DENIED, 403,
           lambda: c.get_namespace(f"theirs-{uid}"))


def test_403_insufficient_scope(root, node, uid):
    k = root.create_key(f"ro-{uid}", scope="read", namespaces=[f"ro-{uid}"])
    c = client_for(node.url, k["key"], retries=1)
    expect(AuthorizationError, ErrorCode.INSUFFICIENT_SCOPE, 403, lambda: c.store_memory(f"ro-{uid}", "x"))
    expect(AuthorizationError, ErrorCode.INSUFFICIENT_SCOPE, 403, lambda: c.cluster_status())


# --------------------------------------------------------------------------- 404


def test_404_namespace(root, uid):
    e = expect(NotFoundError, ErrorCode.NAMESPACE_NOT_FOUND, 404, lambda: root.get_namespace(f"nope-{uid}"))
    assert e.resource == "namespace"


def test_404_memory(root, uid):
    root.store_memory(f"m404-{uid}", "exists")
    e = expect(NotFoundError, ErrorCode.VECTOR_NOT_FOUND, 404, lambda: root.get_memory(f"m404-{uid}", "mem_absent"))
    assert e.resource == "memory"


def test_404_key(root):
    e = expect(NotFoundError, ErrorCode.API_KEY_NOT_FOUND, 404, lambda: root.get_key("dk_key_0000000000000000"))
    assert e.resource == "api_key"


def test_404_route_for_a_feature_loci_does_not_offer(root, uid):
    e = expect(NotFoundError, ErrorCode.ROUTE_NOT_FOUND, 404, lambda: root.wake_up(f"a-{uid}"))
    assert e.resource == "route"


# --------------------------------------------------------------------------- 409


def test_409_conflict(root, uid):
    ns = f"c409-{uid}"
    root.create_namespace(ns, dimensions=8)
    expect(ConflictError, ErrorCode.CONFLICT, 409, lambda: root.create_namespace(ns, dimensions=16))


def test_409_inactive_key_update(root, uid):
    k = root.create_key(f"upd409-{uid}", scope="read")
    root.deactivate_key(k["key_id"])
    expect(ConflictError, ErrorCode.CONFLICT, 409, lambda: root.update_key(k["key_id"], name="renamed"))


# --------------------------------------------------------------------------- 413


def test_413_content_too_large(root, uid):
    e = expect(PayloadTooLargeError, ErrorCode.PAYLOAD_TOO_LARGE, 413,
               lambda: root.store_memory(f"big-{uid}", "x" * 100_001))
    assert e.is_oversize


def test_413_quota_exceeded(root, raw, uid):
    """A hard namespace quota is 413 QUOTA_EXCEEDED (PayloadTooLargeError.is_quota) for the SDK."""
    agent = f"quota-{uid}"
    root.store_memory(agent, "first")
    # `max_memories` is a Loci policy field the SDK's MemoryPolicy does not carry: set it over plain HTTP.
    r = raw.put(f"{raw.base}/v1/namespaces/{agent}/memory_policy", json={"max_memories": 1})
    assert r.status_code == 200, r.text
    e = expect(PayloadTooLargeError, ErrorCode.QUOTA_EXCEEDED, 413, lambda: root.store_memory(agent, "second"))
    assert e.is_quota


# --------------------------------------------------------------------------- 422 / 501


def test_422_unprocessable(root, raw, uid):
    # A namespace whose content screening blocks injection-looking content refuses it with 422.
    ns = f"nd-{uid}"
    r = raw.put(f"{raw.base}/v1/namespaces/{ns}/memory_policy", json={"content_screening": "block"})
    if r.status_code == 404:
        root.store_memory(ns, "harmless first memory")
        r = raw.put(f"{raw.base}/v1/namespaces/{ns}/memory_policy", json={"content_screening": "block"})
    assert r.status_code == 200, r.text
    expect(DakeraError, ErrorCode.UNPROCESSABLE_CONTENT, 422,
           lambda: root.store_memory(ns, "x'; DROP TABLE users; --"))


def test_501_feature_disabled(root, uid):
    e = expect(FeatureNotAvailableError, ErrorCode.FEATURE_DISABLED, 501,
               lambda: root.store_memory(f"f-{uid}", "x", attachment_ref="sha256:" + "ab" * 32))
    assert e.is_feature_disabled


# --------------------------------------------------------------------------- 429


def test_429_namespace_store_limit(root, node, uid):
    agent = f"rl-{uid}"
    root.store_memory(agent, "creates the namespace")
    root.set_memory_policy(agent, MemoryPolicy(rate_limit_enabled=True, rate_limit_stores_per_minute=1,
                                               rate_limit_recalls_per_minute=1))
    once = client_for(node.url, ROOT_KEY, retries=1)  # one attempt: no automatic retry on 429
    once.store_memory(agent, "within the budget")
    e = expect(RateLimitError, ErrorCode.RATE_LIMIT_EXCEEDED, 429, lambda: once.store_memory(agent, "over it"))
    assert e.retry_after is not None and e.retry_after >= 1
    once.recall(agent, "budget")
    e = expect(RateLimitError, ErrorCode.RATE_LIMIT_EXCEEDED, 429, lambda: once.recall(agent, "budget"))
    assert e.retry_after is not None and e.retry_after >= 1
    # a ranked search draws on the same recall budget
    expect(RateLimitError, ErrorCode.RATE_LIMIT_EXCEEDED, 429, lambda: once.search_memories(agent, "budget"))


def test_429_per_key_limit(limited_node):
    c = client_for(limited_node.url, ROOT_KEY, retries=1)
    seen = None
    for _ in range(10):
        try:
            c.whoami()
        except RateLimitError as err:
            seen = err
            break
    assert seen is not None, "no 429 within 10 requests at burst 3"
    assert seen.status_code == 429 and seen.code == ErrorCode.RATE_LIMIT_EXCEEDED
    assert seen.retry_after is not None and seen.retry_after >= 1


def test_429_is_retried_by_the_sdk(limited_node):
    """With retries on, the SDK waits Retry-After and succeeds once the per-key budget refills."""
    c = client_for(limited_node.url, ROOT_KEY, retries=1)
    for _ in range(10):
        try:
            c.whoami()
        except RateLimitError:
            break
    patient = client_for(limited_node.url, ROOT_KEY, retries=3)
    t0 = time.monotonic()
    assert patient.whoami().key_id == "root"
    assert time.monotonic() - t0 >= 0.5
