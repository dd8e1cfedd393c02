"""Per-key throttling: unlimited by default, 429 with Retry-After over OPENCUES_RATE_LIMIT, counters
in memory or shared through Redis (OPENCUES_REDIS_URL) by several server processes."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time

import pytest

from opencues.web.app import create_app
from tests.conftest import AccountClient, assert_problem, make_account
from tests.in_process_client import InProcessClient


def _client(settings, db, **overrides):
    app = create_app(settings.model_copy(update=overrides), db)
    return InProcessClient(app)


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


# -- Redis outages: bounded waits, a per-process fallback, one log line, recovery ------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def silent_redis():
    """A TCP server that accepts connections and never answers (a hung Redis). It lets go of
    them after HOLD_SECONDS, so that a client waiting without a timeout fails slowly, not never."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept_forever():
        listener.settimeout(0.1)
        started = time.monotonic()
        while not stop.is_set() and time.monotonic() - started < SILENT_HOLD_SECONDS:
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue
        for conn in held:
            conn.close()

    thread = threading.Thread(target=accept_forever, daemon=True)
    thread.start()
    yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    stop.set()
    thread.join(5)
    listener.close()


SILENT_HOLD_SECONDS = 8


def _fallback_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "opencues" and "Redis" in r.getMessage()]


def test_redis_stopped_falls_back_to_memory_counting_and_logs_once(settings, db, account, caplog):
    overrides = {"rate_limit": "5/minute", "redis_url": f"redis://127.0.0.1:{_closed_port()}/0"}
    with _client(settings, db, **overrides) as client:
        api = AccountClient(client, account)
        started = time.monotonic()
        statuses = [api.get("flows").status_code for _ in range(7)]
        elapsed = time.monotonic() - started
        assert statuses == [200] * 5 + [429] * 2  # still limited, per process
        assert client.get("/healthz").status_code == 200
    assert elapsed < 5, f"requests took {elapsed:.1f}s with Redis stopped"
    lines = _fallback_lines(caplog)
    assert len(lines) == 1 and "in memory" in lines[0], lines
    # The app's shutdown ends the wait for Redis.
    assert _wait_for(lambda: not any(t.name == "opencues-redis-probe" for t in threading.enumerate()), 3)


def test_redis_silent_is_bounded_by_the_timeout(settings, db, account, silent_redis, caplog):
    overrides = {"rate_limit": "100/minute", "redis_url": silent_redis, "redis_timeout_seconds": 0.3}
    with _client(settings, db, **overrides) as client:
        api = AccountClient(client, account)
        started = time.monotonic()
        statuses = [api.get("flows").status_code for _ in range(10)]
        elapsed = time.monotonic() - started
        assert client.get("/healthz").status_code == 200
    assert statuses == [200] * 10
    assert elapsed < 3, f"10 requests took {elapsed:.1f}s with a silent Redis"
    assert len(_fallback_lines(caplog)) == 1, _fallback_lines(caplog)


@pytest.fixture
def own_redis(tmp_path):
    """A redis-server of this test's own on a free port, to stop and start at will."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port = _closed_port()
    processes: list[subprocess.Popen] = []

    class OwnRedis:
        url = f"redis://127.0.0.1:{port}/0"

        def start(self):
            import redis  # imported by the tests that use it, not at every worker's collection

            args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp_path)]
            processes.append(subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    if redis.Redis(port=port, socket_timeout=1).ping():
                        return
                except redis.RedisError:
                    time.sleep(0.05)
            raise RuntimeError("redis-server did not start")

        def stop(self):
            for process in processes:
                process.kill()
                process.wait(10)
            processes.clear()

    yield OwnRedis()
    OwnRedis().stop()


def _wait_for(condition, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_the_limiter_goes_back_to_redis_by_itself(settings, db, account, own_redis, caplog):
    import redis

    overrides = {"rate_limit": "100/minute", "redis_url": own_redis.url, "redis_retry_seconds": 0.2}
    with _client(settings, db, **overrides) as client:
        api = AccountClient(client, account)
        limiter = client.app.state.rate_limiter
        assert api.get("flows").status_code == 200  # Redis down from the start
        assert not limiter.shared_in_use
        own_redis.start()
        assert _wait_for(lambda: limiter.shared_in_use), "the limiter did not go back to Redis"
        assert api.get("flows").status_code == 200
        assert redis.Redis.from_url(own_redis.url).keys("LIMITS*"), "the hit was not counted in Redis"
        own_redis.stop()  # and down again: one more fallback line
        assert [api.get("flows").status_code for _ in range(3)] == [200] * 3
    lines = _fallback_lines(caplog)
    assert len(lines) == 3, lines  # down, back, down
    assert "back" in lines[1]
