"""The one error shape, enforced over EVERY route in ``ROUTES``.

Each test is parametrised over the route table, so a route added later is checked automatically:
unknown paths 404, wrong methods 405 with a correct ``Allow``, missing or bad credentials 401,
foreign accounts and read-only keys 403, unsupported Content-types 415, malformed JSON 400,
bodies over the limit 413 — always Problem Details JSON, and never a 500 for anything a client
can send. These tests exercise the web layer, so they share one SQLite-backed app per module; the
never-a-500 sweep also runs on PostgreSQL, which refuses more (NUL in text, for one), and the auth
path is tested on both databases in test_auth.py.
"""

from __future__ import annotations

import base64
import re
import shutil
import uuid

import pytest
from sqlalchemy import create_engine, text

from opencues import accounts, flows
from opencues.settings import Settings
from opencues.storage import Database
from opencues.web.app import create_app
from opencues.web.routes import ROUTES
from tests.conftest import _driver_url, assert_problem, make_account
from tests.in_process_client import InProcessClient

ACCOUNT = "acct1"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
SMALL_BODY_LIMIT = 1024
SMALL_UPLOAD_LIMIT = 2048

# Routes that take no body at all: the spec calls them with curl's empty form body (`-d ''`).
BODYLESS = {
    (r.method, r.path) for r in ROUTES
    if r.method in ("GET", "DELETE") or r.path.endswith(("publish", "/enable", "/disable"))
}  # fmt: skip
# Reading data is what a read-only key is for; an export only reads (see docs/decisions.md).
READ_ONLY_ALLOWED = {(r.method, r.path) for r in ROUTES
                     if r.method == "GET" or r.path.endswith(("/export/events", "/segment_membership_export"))
                     or "/analytics/" in r.path}  # fmt: skip

_PARAM = re.compile(r"\{(\w+)(?::(\w+))?\}")


def _route_id(route) -> str:
    return f"{route.method} {route.path.removeprefix('/v2/accounts/{account_id}')}"


def _concrete(path: str, account_id: str = ACCOUNT, samples: dict | None = None) -> str:
    samples = samples or {}
    return _PARAM.sub(lambda m: account_id if m[1] == "account_id" else samples.get(m[1], f"sample-{m[1]}"), path)


def _pattern(path: str) -> re.Pattern:
    parts = _PARAM.split(path)
    # re.split with two groups yields [text, name, converter, text, name, converter, ..., text]
    regex = ""
    for i in range(0, len(parts), 3):
        regex += re.escape(parts[i])
        if i + 1 < len(parts):
            regex += ".+" if parts[i + 2] == "path" else "[^/]+"
    return re.compile(regex + "$")


def _allowed_for(url: str) -> set[str]:
    return {r.method for r in ROUTES if _pattern(r.path).match(url)}


ROUTE_PARAMS = [pytest.param(r, id=_route_id(r)) for r in ROUTES]
# Everything in ROUTES lives under an account and needs its credentials.
ACCOUNT_ROUTES = [p for p in ROUTE_PARAMS if p.values[0].path.startswith("/v2/accounts/{account_id}")]
BODY_ROUTES = [pytest.param(r, id=_route_id(r)) for r in ROUTES if (r.method, r.path) not in BODYLESS]
WRITE_ROUTES = [p for p in ACCOUNT_ROUTES if (p.values[0].method, p.values[0].path) not in READ_ONLY_ALLOWED]
READ_ONLY_POSTS = [p for p in ACCOUNT_ROUTES if p.values[0].method != "GET" and p not in WRITE_ROUTES]


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class World:
    """One app over one database (SQLite unless ``database_url``), with keys of every kind."""

    def __init__(self, tmp_path, template=None, database_url=None, **limits):
        data = tmp_path / "data"
        data.mkdir()
        if database_url is None:
            shutil.copy(template, data / "opencues.db")
            database_url = f"sqlite:///{data / 'opencues.db'}"
        settings = Settings(data_dir=data, database_url=database_url, **limits)
        self.db = Database(settings.resolved_database_url)
        self.db.migrate()
        self.app = create_app(settings, self.db)
        self.writer = make_account(self.db, ACCOUNT)
        self.reader = make_account(self.db, ACCOUNT, read_only=True)
        self.stranger = make_account(self.db, "acct2")
        self.revoked = make_account(self.db, ACCOUNT)
        accounts.revoke_key(self.db, self.revoked.key)
        flows.create_flow(self.db, ACCOUNT, "Tour", flow_id="flow1")
        self.client = InProcessClient(self.app, raise_server_exceptions=False).__enter__()
        self.samples = {"flow_id": "flow1", "user_id": "user-1"}
        segment = self.client.post(f"/v2/accounts/{ACCOUNT}/segments", json={"name": "s"}, headers=self.writer.header)
        if segment.status_code == 201:
            self.samples["segment_id"] = segment.json()["id"]

    def url(self, route, account_id: str = ACCOUNT) -> str:
        return _concrete(route.path, account_id, self.samples)

    def close(self):
        self.client.__exit__(None, None, None)
        self.db.dispose()


@pytest.fixture(scope="module")
def world(tmp_path_factory, sqlite_template):
    w = World(tmp_path_factory.mktemp("errors"), sqlite_template)
    yield w
    w.close()


@pytest.fixture(scope="module")
def pg_world(tmp_path_factory, postgres_url):
    """The same over a PostgreSQL database of its own (text there cannot hold NUL, and more)."""
    server = postgres_url.rsplit("/", 1)[0]
    name = f"opencues_errors_{uuid.uuid4().hex[:10]}"
    admin = create_engine(_driver_url(server + "/postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    w = World(tmp_path_factory.mktemp("errors-pg"), database_url=f"{server}/{name}")
    yield w
    w.close()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_world(request):
    return request.getfixturevalue("world" if request.param == "sqlite" else "pg_world")


@pytest.fixture(scope="module")
def small_world(tmp_path_factory, sqlite_template):
    w = World(
        tmp_path_factory.mktemp("errors-small"),
        sqlite_template,
        max_body_bytes=SMALL_BODY_LIMIT,
        max_upload_bytes=SMALL_UPLOAD_LIMIT,
    )
    yield w
    w.close()


# -- 404 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/", "/nope", "/v2", "/v2/accounts", f"/v2/accounts/{ACCOUNT}", f"/v2/accounts/{ACCOUNT}/widgets", "/v1/flows"],
)
@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
def test_unknown_routes_are_404_problems(world, path, method):
    response = world.client.request(method, path, headers={"Accept": "text/html", **world.writer.header})
    assert_problem(response, 404, path)


# -- 405 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ROUTE_PARAMS)
def test_wrong_method_is_405_with_allow(world, route):
    url = world.url(route)
    allowed = _allowed_for(url)
    assert route.method in allowed
    for method in sorted(set(METHODS) - allowed):
        response = world.client.request(method, url, headers=world.writer.header)
        body = assert_problem(response, 405, method)
        assert {m.strip() for m in response.headers["allow"].split(",")} == allowed, (method, url)
        for name in allowed:
            assert name in body["detail"]


# -- 401 ----------------------------------------------------------------------------------------


def _bad_credentials(world) -> dict[str, dict]:
    return {
        "missing": {},
        "wrong secret": {"Authorization": _basic(world.writer.key, "not-the-secret")},
        "unknown key": {"Authorization": _basic("no-such-key", world.writer.secret)},
        "revoked key": {"Authorization": world.revoked.header["Authorization"]},
        "not basic": {"Authorization": f"Bearer {world.writer.secret}"},
        "bad base64": {"Authorization": "Basic %%%not-base64%%%"},
        "no colon": {"Authorization": "Basic " + base64.b64encode(world.writer.key.encode()).decode()},
        "not utf-8": {"Authorization": "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode()},
        "empty": {"Authorization": ""},
    }


@pytest.mark.parametrize("route", ACCOUNT_ROUTES)
def test_bad_credentials_are_401_with_a_basic_challenge(world, route):
    for name, headers in _bad_credentials(world).items():
        response = world.client.request(route.method, world.url(route), headers=headers)
        assert_problem(response, 401)
        assert response.headers["www-authenticate"].startswith("Basic"), name


# -- 403 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ACCOUNT_ROUTES)
def test_a_key_of_another_account_is_403(world, route):
    response = world.client.request(route.method, world.url(route), headers=world.stranger.header)
    assert_problem(response, 403, ACCOUNT)


@pytest.mark.parametrize("route", WRITE_ROUTES)
def test_a_read_only_key_cannot_write(world, route):
    response = world.client.request(
        route.method, world.url(route), headers=world.reader.header, json={"name": "x", "user_ids": ["u"]}
    )
    assert_problem(response, 403, "read-only")


@pytest.mark.parametrize("route", READ_ONLY_POSTS)
def test_a_read_only_key_may_use_the_reading_posts(world, route):
    response = world.client.request(route.method, world.url(route), headers=world.reader.header, json={})
    assert response.status_code != 403, response.text


@pytest.mark.parametrize("token", ["bogus", "a.b.c", "%00", "x" * 5000])
def test_download_links_need_no_credentials_but_refuse_forged_tokens(world, token):
    # The signed link is the credential (export emails carry it), so there is no 401 here.
    response = world.client.get(f"/downloads/{token}")
    assert response.status_code in (400, 403, 404, 410), response.text
    assert_problem(response, response.status_code)


# -- 415 / 400 ----------------------------------------------------------------------------------


@pytest.mark.parametrize("route", BODY_ROUTES)
@pytest.mark.parametrize("content_type", ["application/xml", "text/plain", "image/png", "application/x-www-form-urlencoded"])
def test_unsupported_content_type_is_415(world, route, content_type):
    headers = {"Content-Type": content_type, **world.writer.header}
    response = world.client.request(route.method, world.url(route), headers=headers, content=b"<a>1</a>")
    assert_problem(response, 415, content_type)


@pytest.mark.parametrize("route", BODY_ROUTES)
@pytest.mark.parametrize("body", [b'{"name": ', b"{'single': 'quotes'}", b"\xff\xfe\x00", b"[1, 2,]", b"{\"a\": NaN"])
def test_malformed_json_is_400_not_500(world, route, body):
    headers = {"Content-Type": "application/json", **world.writer.header}
    response = world.client.request(route.method, world.url(route), headers=headers, content=body)
    if response.status_code == 415:  # a route that takes no JSON at all (bulk imports) may say so
        assert_problem(response, 415, "application/json")
    else:
        assert_problem(response, 400, "JSON")


# -- 413 ----------------------------------------------------------------------------------------


def _multipart(payload: bytes) -> tuple[str, bytes]:
    boundary = "opencues-test-boundary"
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.ndjson\"\r\n"
        f"Content-Type: application/x-ndjson\r\n\r\n"
    ).encode() + payload + f"\r\n--{boundary}--\r\n".encode()
    return f"multipart/form-data; boundary={boundary}", body


def _refused_as_too_large(world, route, body, chunked: bool = False, upload: bool = False) -> list[int]:
    statuses = []
    variants = [(t, body) for t in ("application/json", "application/ndjson", "text/csv")]
    if upload:
        variants.append(_multipart(body))
    for content_type, body in variants:
        headers = {"Content-Type": content_type, **world.writer.header}
        content = iter([body[i : i + 65536] for i in range(0, len(body), 65536)]) if chunked else body
        response = world.client.request(route.method, world.url(route), headers=headers, content=content)
        assert response.status_code in (413, 415), (content_type, response.text[:300])
        assert_problem(response, response.status_code)
        statuses.append(response.status_code)
    return statuses


@pytest.mark.parametrize("route", BODY_ROUTES)
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_bodies_over_the_limit_are_413(small_world, route, chunked):
    # Over both limits, in every content type the route could read (a file upload included): never
    # accepted, and at least one is read and refused for its size, whether its length is declared or not.
    body = b"[" + b'"0123456789",' * ((SMALL_BODY_LIMIT + SMALL_UPLOAD_LIMIT) // 13 + 1) + b'"x"]'
    assert 413 in _refused_as_too_large(small_world, route, body, chunked, upload=True)


@pytest.mark.parametrize("route", BODY_ROUTES)
def test_default_body_limit_is_20_mb(world, route):
    assert Settings.model_fields["max_body_bytes"].default == 20 * 1024 * 1024
    body = b" " * (20 * 1024 * 1024 + 1)
    assert 413 in _refused_as_too_large(world, route, body)


# -- never a 500 --------------------------------------------------------------------------------

JUNK_BODIES = [
    ("application/json", b"{}"),
    ("application/json", b"[]"),
    ("application/json", b"null"),
    ("application/json", b'"a string"'),
    ("application/json", b"12345678901234567890123456789"),
    ("application/json", b'{"name": null, "description": 5, "user_ids": "u", "timestamp": [], "attributes": "x"}'),
    ("application/json", b'{"name": {"nested": true}, "user_ids": [null, 1, {}], "email": 7, "conditions": {}}'),
    ("application/json", b'{"name": "' + b"x" * 100_000 + b'"}'),
    ("application/json", b'{"\\u0000": "\\u0000", "name": "\\ud800"}'),
    ("application/json", b'{"name": "a\\u0000b", "description": "x", "user_ids": ["u\\u0000"], "attributes": {"k": "\\u0000"}}'),
    ("application/json", b'{"name": "n", "timestamp": "2021-01-01T00:00:00Z", "attributes": {"k\\u0000": 1}, "email": ["a@b.c\\u0000"]}'),
    ("application/json", b'{"timestamp": "2021-13-45T99:99:99Z", "start_time": -1e300, "time_zone": "+99:99"}'),
    ("application/json", b'{"format": "xml", "start_time": "yesterday", "end_time": true, "limit": -5}'),
    ("application/ndjson", b'{"user_id": 1}\nnot json\n[]\n"x"\n'),
    ("text/csv", b'user_id,name\n"unterminated,\n\x00,\xff\n'),
    ("multipart/form-data", b"no boundary given"),
    ("multipart/form-data; boundary=xyz", b"--xyz\r\nContent-Disposition: form-data; name=file\r\n\r\ntrunc"),
    ("multipart/form-data; boundary=xyz", b"--xyz\r\nContent-Disposition: form-data; name=other\r\n\r\nx\r\n--xyz--\r\n"),
    ("multipart/mixed; boundary=xyz", b"--xyz--\r\n"),
    ("application/json; charset=latin-1", b'{"name": "caf\xe9"}'),
    ("", b""),
]


@pytest.mark.parametrize("route", ROUTE_PARAMS)
def test_nothing_a_client_sends_is_a_500(any_world, route):
    world = any_world
    url = world.url(route)
    queries = ["", "?limit=abc", "?limit=-1&offset=x", "?start_time=zzz&end_time=1e999&time_zone=99:99", "?limit=99999999999999999999"]
    attempts = [(url + q, "", b"") for q in queries]
    if (route.method, route.path) not in BODYLESS:
        attempts += [(url, ctype, body) for ctype, body in JUNK_BODIES]
    odd_ids = {"flow_id": "%00", "segment_id": "..%2F..", "user_id": "%F0%9F%98%80 a/b", "job_id": "x" * 2000, "token": "%00"}
    nul_ids = {"flow_id": "a%00", "segment_id": "%00", "user_id": "u%00", "job_id": "%00", "token": "t%00"}
    for ids in (odd_ids, nul_ids):
        attempts.append((_concrete(route.path, ACCOUNT, ids), "application/json", b"{}"))
    for target, ctype, body in attempts:
        headers = {**world.writer.header, **({"Content-Type": ctype} if ctype else {})}
        response = world.client.request(route.method, target, headers=headers, content=body)
        assert response.status_code < 500, (target, ctype, body[:80], response.text[:300])
        assert response.headers["content-type"].startswith(("application/json", "text/csv"))
        if response.status_code >= 400:
            assert_problem(response, response.status_code)


def test_an_unexpected_exception_is_a_500_problem_without_a_trace(world):
    async def explode(_request):
        raise RuntimeError("secret internals")

    app = create_app(world.app.state.settings, world.db)
    app.add_route("/explode", explode)
    with InProcessClient(app, raise_server_exceptions=False) as client:
        response = client.get("/explode")
    body = assert_problem(response, 500)
    assert "secret internals" not in response.text and "Traceback" not in response.text
    assert body["title"] == "Internal Server Error"


def test_errors_are_json_even_when_csv_or_html_is_asked_for(world):
    for accept in ("text/csv", "text/html", "*/*"):
        response = world.client.get(f"/v2/accounts/{ACCOUNT}/flows/missing", headers={"Accept": accept, **world.writer.header})
        assert_problem(response, 404, "flow not found")


def _id_params(path: str) -> list[str]:
    return [m[1] for m in _PARAM.finditer(path) if m[1] != "account_id"]


@pytest.mark.parametrize("route", [p for p in ACCOUNT_ROUTES if _id_params(p.values[0].path)])
def test_nul_in_a_path_parameter_is_a_400_naming_it(world, route):
    names = _id_params(route.path)
    url = _concrete(route.path, ACCOUNT, {name: "a%00b" for name in names})
    response = world.client.request(route.method, url, headers=world.writer.header, json={})
    assert_problem(response, 400, f"`{names[0]}` must not contain NUL")


@pytest.mark.parametrize(
    "body, field",
    [
        (b'{"name": "a\\u0000b"}', "`name`"),
        (b'{"name": "ok", "description": ["x", {"deep": "\\u0000"}]}', "`description[1].deep`"),
        (b'{"name": "ok", "b\\u0000d": 1}', "field names"),
    ],
)
def test_nul_in_a_json_body_is_a_400_naming_the_field(world, body, field):
    headers = {"Content-Type": "application/json", **world.writer.header}
    response = world.client.post(f"/v2/accounts/{ACCOUNT}/segments", headers=headers, content=body)
    assert_problem(response, 400, field)
