"""Per-key throttling: unlimited by default, 429 with Retry-After over OPENCUES_RATE_LIMIT, counters
in memory or shared through Redis (OPENCUES_REDIS_URL) by several server processes."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from opencues.web.app import create_app
from tests.conftest import AccountClient, assert_problem, make_account


def _client(settings, db, **overrides):
    app = create_app(settings.model_copy(update=overrides), db)
    return TestClient(app)


@pytest.fixture
def limited(settings, db, account):
    with _client(settings, db, rate_limit="3/minute") as client:
        yield AccountClient(client, account)


def test_unset_means_unlimited(api):
    assert api.client.app.state.settings.rate_limit is None
    assert {api.get("flows").status_code for _ in range(60)} == {200}


def test_over_the_rate_is_429_with_retry_after(limited):
    assert [limited.get("flows").status_code for _ in range(3)] == [200, 200, 200]
    response = limited.get("flows")
    assert_problem(response, 429, "rate limit")
    assert 1 <= int(response.headers["retry-after"]) <= 60
    # Writes and reads share the key's budget.
    assert_problem(limited.post("flows/any/publish"), 429)


def test_each_key_has_its_own_budget(limited, db):
    for _ in range(3):
        limited.get("flows")
    assert_problem(limited.get("flows"), 429)
    second = AccountClient(limited.client, make_account(db, limited.creds.account_id))
    assert second.get("flows").status_code == 200


def test_memory_counters_are_per_process(settings, db, account):
    with _client(settings, db, rate_limit="2/minute") as one, _client(settings, db, rate_limit="2/minute") as two:
        a, b = AccountClient(one, account), AccountClient(two, account)
        assert [a.get("flows").status_code for _ in range(3)] == [200, 200, 429]
        assert b.get("flows").status_code == 200


def test_an_invalid_rate_is_refused_at_start(settings, db):
    with pytest.raises(ValueError):
        create_app(settings.model_copy(update={"rate_limit": "lots"}), db)


def test_redis_counters_are_shared_by_several_server_processes(settings, db, account, redis_url):
    overrides = {"rate_limit": "3/minute", "redis_url": redis_url}
    with _client(settings, db, **overrides) as one, _client(settings, db, **overrides) as two:
        a, b = AccountClient(one, account), AccountClient(two, account)
        assert [a.get("flows").status_code, b.get("flows").status_code, a.get("flows").status_code] == [200] * 3
        response = b.get("flows")
        assert_problem(response, 429)
        assert int(response.headers["retry-after"]) >= 1
        assert_problem(a.get("flows"), 429)
