"""Request ids, the access log and the request metrics (opencues.web.observe, GET /metrics)."""

from __future__ import annotations

import logging

from prometheus_client import REGISTRY

from opencues.web.app import create_app
from tests.conftest import AccountClient
from tests.in_process_client import InProcessClient


def sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_request_id_is_made_and_echoed(client):
    first = client.get("/healthz").headers["x-request-id"]
    second = client.get("/healthz").headers["x-request-id"]
    assert len(first) == 32 and first != second


def test_the_clients_request_id_is_kept_unless_it_is_unsafe(client):
    assert client.get("/healthz", headers={"X-Request-Id": "req-42.a:b"}).headers["x-request-id"] == "req-42.a:b"
    forged = client.get("/healthz", headers={"X-Request-Id": "a b\nforged log line"}).headers["x-request-id"]
    assert len(forged) == 32 and " " not in forged


def test_requests_are_counted_by_route_template_method_and_status(api, client):
    route = "/v2/accounts/{account_id}/flows"
    before_ok = sample("opencues_http_requests_total", route=route, method="GET", status="200")
    before_401 = sample("opencues_http_requests_total", route=route, method="GET", status="401")
    before_hist = sample("opencues_http_request_duration_seconds_count", route=route, method="GET")
    for _ in range(3):
        assert api.get("flows").status_code == 200
    assert client.get(api.url("flows")).status_code == 401
    assert sample("opencues_http_requests_total", route=route, method="GET", status="200") == before_ok + 3
    assert sample("opencues_http_requests_total", route=route, method="GET", status="401") == before_401 + 1
    assert sample("opencues_http_request_duration_seconds_count", route=route, method="GET") == before_hist + 4


def test_unknown_paths_share_one_label(client):
    before = sample("opencues_http_requests_total", route="<unmatched>", method="GET", status="404")
    client.get("/no/such/path/1")
    client.get("/no/such/path/2")
    assert sample("opencues_http_requests_total", route="<unmatched>", method="GET", status="404") == before + 2


def test_metrics_endpoint_needs_no_auth_and_speaks_prometheus(client, api):
    api.get("flows")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    text = response.text
    assert "# TYPE opencues_http_requests_total counter" in text
    assert "# TYPE opencues_http_request_duration_seconds histogram" in text
    assert "opencues_jobs_queued" in text and "opencues_db_pool_connections_in_use" in text


def test_metrics_off_removes_the_route(settings, db):
    with InProcessClient(create_app(settings.model_copy(update={"metrics": False}), db)) as client:
        assert client.get("/metrics").status_code == 404
        assert "x-request-id" in client.get("/healthz").headers  # the access log stays


def test_rate_limit_rejections_are_counted(settings, db, account):
    before = sample("opencues_rate_limit_rejections_total")
    with InProcessClient(create_app(settings.model_copy(update={"rate_limit": "2/minute"}), db)) as client:
        limited = AccountClient(client, account)
        assert [limited.get("flows").status_code for _ in range(4)] == [200, 200, 429, 429]
    assert sample("opencues_rate_limit_rejections_total") == before + 2


def test_one_access_log_line_per_request_with_template_and_id(client, caplog):
    with caplog.at_level(logging.INFO, logger="opencues.access"):
        client.get("/downloads/secret-token-value?x=1", headers={"X-Request-Id": "trace-1"})
    lines = [r for r in caplog.records if r.name == "opencues.access"]
    assert len(lines) == 1
    message = lines[0].getMessage()
    assert "GET /downloads/{token}" in message and "id=trace-1" in message
    assert "secret-token-value" not in message and "x=1" not in message
    assert lines[0].request_id == "trace-1" and lines[0].status == lines[0].__dict__["status"]


def test_made_request_ids_are_random_uuid4s_never_shared_with_a_forked_process():
    import os
    import uuid

    from opencues.web.observe import new_request_id

    ids = [new_request_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    for made in ids[:300]:
        parsed = uuid.UUID(made.decode())
        assert parsed.hex == made.decode() and parsed.version == 4 and parsed.variant == uuid.RFC_4122
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # the child: the parent's unused ids must not be handed out again
        os.write(writer, b"".join(new_request_id() for _ in range(10)))
        os._exit(0)
    os.close(writer)
    os.waitpid(child, 0)
    with os.fdopen(reader, "rb") as pipe:
        in_child = pipe.read()
    in_parent = b"".join(new_request_id() for _ in range(10))
    assert len(in_child) == 320 and not {in_child[i : i + 32] for i in range(0, 320, 32)} & {in_parent[i : i + 32] for i in range(0, 320, 32)}
