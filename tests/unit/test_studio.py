"""Studio (``/studio``) in-process: sign-in, the session cookie, CSRF, rights, and every page."""

from __future__ import annotations

import re
import time

import pytest

from opencues import accounts, events, flows, jobs, profiles, segments, timestamps
from opencues.settings import Settings
from opencues.studio import session as sessions
from opencues.studio.routes import STUDIO_ROUTES
from tests.conftest import make_account
from tests.in_process_client import InProcessClient

ADMIN_TOKEN = "studio-admin-token"


@pytest.fixture
def studio_settings(database_url, tmp_path):
    return Settings(data_dir=tmp_path / "data", database_url=database_url, admin_token=ADMIN_TOKEN, journal="on")


@pytest.fixture
def studio(studio_settings, db):
    from opencues.web.app import create_app

    with InProcessClient(create_app(studio_settings, db), base_url="http://testserver", follow_redirects=False) as client:
        yield client


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def sign_in(client, **form) -> str:
    """Sign in with ``form`` (key+secret or token); the CSRF token of the new session."""
    page = client.get("/studio/login")
    response = client.post("/studio/login", data={"csrf_token": csrf_of(page.text), **form})
    assert response.status_code == 303, response.text
    return csrf_of(client.get(response.headers["location"], follow_redirects=True).text)


def wait_for_job(client, account_id, job_id, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/studio/accounts/{account_id}/jobs/{job_id}/status").json()
        if job["status"] != "IN_PROGRESS":
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still running")


def test_anonymous_pages_redirect_to_sign_in(studio, account):
    response = studio.get(f"/studio/accounts/{account.account_id}/content")
    assert response.status_code == 303
    assert response.headers["location"].startswith("/studio/login?next=")


def test_sign_in_with_a_key_sets_a_strict_http_only_expiring_cookie(studio, account):
    page = studio.get("/studio/login")
    response = studio.post("/studio/login", data={"csrf_token": csrf_of(page.text), "key": account.key, "secret": account.secret})
    assert response.status_code == 303
    assert response.headers["location"] == f"/studio/accounts/{account.account_id}/content"
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/studio" in cookie
    assert "Max-Age=43200" in cookie


def test_wrong_secret_is_refused(studio, account):
    page = studio.get("/studio/login")
    response = studio.post("/studio/login", data={"csrf_token": csrf_of(page.text), "key": account.key, "secret": "nope"})
    assert response.status_code == 401
    assert studio.get(f"/studio/accounts/{account.account_id}/content").status_code == 303


def test_sign_in_without_the_csrf_token_is_refused(studio, account):
    studio.get("/studio/login")
    response = studio.post("/studio/login", data={"key": account.key, "secret": account.secret})
    assert response.status_code == 403
    assert "csrf_token" in response.text


def test_every_post_checks_the_csrf_token(studio, account):
    sign_in(studio, key=account.key, secret=account.secret)
    url = f"/studio/accounts/{account.account_id}/segments"
    assert studio.post(url, data={"name": "forged"}).status_code == 403
    assert studio.post(url, data={"name": "forged", "csrf_token": "guess"}).status_code == 403
    assert segments.list_segments(studio.app.state.db, account.account_id) == []


def test_forged_upload_is_refused_and_its_file_removed(studio, account, db):
    csrf = sign_in(studio, key=account.key, secret=account.secret)
    segment = segments.create_segment(db, account.account_id, {"name": "s"}, "t")
    url = f"/studio/accounts/{account.account_id}/segments/{segment['id']}/upload"
    response = studio.post(url, data={"csrf_token": csrf + "x", "mode": "add"}, files={"file": ("ids.txt", b"u1\nu2\n", "text/plain")})
    assert response.status_code == 403
    assert jobs.list_jobs(db, account.account_id) == []
    uploads = studio.app.state.file_store.path("uploads")
    assert not uploads.exists() or not [p for p in uploads.rglob("*") if p.is_file()]  # the stored file is gone


def test_a_tampered_or_expired_cookie_is_no_session(studio_settings):
    value = sessions.encode(studio_settings, {"c": "x", "key": "k"})
    assert sessions.decode(studio_settings, value)["key"] == "k"
    body, _, signature = value.partition(".")
    assert sessions.decode(studio_settings, body + "." + signature[:-2] + "AA") is None
    later = time.time() + studio_settings.studio_session_hours * 3600 + 5
    assert sessions.decode(studio_settings, value, now=later) is None


def test_a_key_session_sees_only_its_account(studio, account, other_account):
    sign_in(studio, key=account.key, secret=account.secret)
    response = studio.get(f"/studio/accounts/{other_account.account_id}/content")
    assert response.status_code == 403
    assert studio.get("/studio/accounts").status_code == 403
    assert studio.get("/studio/developer").status_code == 403


def test_a_revoked_key_is_signed_out_at_once(studio, account):
    sign_in(studio, key=account.key, secret=account.secret)
    accounts.revoke_key(studio.app.state.db, account.key)
    assert studio.get(f"/studio/accounts/{account.account_id}/content").status_code == 303


def test_read_only_key_sees_no_write_controls_and_its_posts_are_refused(studio, db):
    creds = make_account(db, "ro", read_only=True)
    flows.create_flow(db, "ro", "Welcome", flow_id="f1")
    csrf = sign_in(studio, key=creds.key, secret=creds.secret)
    base = "/studio/accounts/ro"
    detail = studio.get(f"{base}/content/flows/f1")
    assert detail.status_code == 200
    assert "/publish" not in detail.text
    assert "Create a segment" not in studio.get(f"{base}/segments").text
    assert "Import a file" not in studio.get(f"{base}/jobs").text
    response = studio.post(f"{base}/content/flows/f1/publish", data={"csrf_token": csrf})
    assert response.status_code == 403
    assert "read-only" in response.text
    assert studio.post(f"{base}/segments", data={"csrf_token": csrf, "name": "x"}).status_code == 403
    assert flows.get_flow(db, "ro", "f1")["published"] is False


def test_admin_creates_a_key_and_sees_its_secret_once(studio, account, db):
    csrf = sign_in(studio, token=ADMIN_TOKEN)
    response = studio.post(f"/studio/accounts/{account.account_id}/keys", data={"csrf_token": csrf})
    assert response.status_code == 201
    key = re.search(r'id="new-key-id">([^<]+)<', response.text).group(1)
    secret = re.search(r'id="new-key-secret">([^<]+)<', response.text).group(1)
    assert accounts.authenticate(db, key, secret).account_id == account.account_id
    again = studio.get(f"/studio/accounts/{account.account_id}/keys")
    assert key in again.text and secret not in again.text
    studio.post(f"/studio/accounts/{account.account_id}/keys/{key}/revoke", data={"csrf_token": csrf})
    assert accounts.authenticate(db, key, secret) is None


def test_admin_creates_an_account(studio, db):
    csrf = sign_in(studio, token=ADMIN_TOKEN)
    response = studio.post("/studio/accounts", data={"csrf_token": csrf, "id": "fresh", "name": "Fresh"})
    assert response.status_code == 201
    assert accounts.get_account(db, "fresh")["name"] == "Fresh"
    assert "fresh" in studio.get("/studio/accounts").text


def test_wrong_admin_token_is_refused(studio):
    page = studio.get("/studio/login")
    assert studio.post("/studio/login", data={"csrf_token": csrf_of(page.text), "token": "nope"}).status_code == 401


def test_publish_and_unpublish_a_flow(studio, account, db):
    flows.create_flow(db, account.account_id, "Welcome", flow_id="f1")
    csrf = sign_in(studio, key=account.key, secret=account.secret)
    base = f"/studio/accounts/{account.account_id}/content/flows/f1"
    assert studio.post(base + "/publish", data={"csrf_token": csrf}).status_code == 303
    assert flows.get_flow(db, account.account_id, "f1")["published"] is True
    assert "Unpublish" in studio.get(base).text
    studio.post(base + "/unpublish", data={"csrf_token": csrf})
    assert flows.get_flow(db, account.account_id, "f1")["published"] is False


def test_content_search_and_filters(studio, account, db):
    flows.create_flow(db, account.account_id, "Welcome tour", flow_id="f1")
    flows.create_flow(db, account.account_id, "Billing", flow_id="f2")
    flows.set_published(db, account.account_id, "f2", True, "t")
    sign_in(studio, key=account.key, secret=account.secret)
    base = f"/studio/accounts/{account.account_id}/content"
    found = studio.get(base, params={"q": "welcome"}).text
    assert "Welcome tour" in found and "Billing" not in found
    published = studio.get(base, params={"state": "published"}).text
    assert "Billing" in published and "Welcome tour" not in published
    for resource in ("pins", "checklists", "flows-v2"):
        assert studio.get(base, params={"type": resource}).status_code == 200
    assert studio.get(base, params={"type": "nope"}).status_code == 400


def test_segment_create_rename_upload_members_delete(studio, account, db):
    csrf = sign_in(studio, key=account.key, secret=account.secret)
    base = f"/studio/accounts/{account.account_id}/segments"
    created = studio.post(base, data={"csrf_token": csrf, "name": "Trial"})
    assert created.status_code == 303
    segment_url = created.headers["location"]
    segment_id = segment_url.rsplit("/", 1)[1]
    studio.post(segment_url + "/rename", data={"csrf_token": csrf, "name": "Trial users"})
    assert segments.get_segment(db, account.account_id, segment_id)["name"] == "Trial users"
    ids = "".join(f"user-{i:03d}\n" for i in range(60)).encode()
    upload = studio.post(segment_url + "/upload", data={"csrf_token": csrf, "mode": "add"}, files={"file": ("ids.txt", ids, "text/plain")})
    assert upload.status_code == 303
    job_id = upload.headers["location"].rsplit("/", 1)[1]
    assert wait_for_job(studio, account.account_id, job_id)["status"] == "COMPLETED"
    first = studio.get(segment_url)
    assert "user-000" in first.text and "user-049" in first.text and "user-050" not in first.text
    second = studio.get(segment_url, params={"after": "user-049"})
    assert "user-050" in second.text and "user-059" in second.text
    studio.post(segment_url + "/delete", data={"csrf_token": csrf})
    assert segments.list_segments(db, account.account_id) == []


def test_users_found_by_prefix_and_paged_by_keyset(studio, account, db):
    for i in range(60):
        profiles.update_profile(db, account.account_id, f"alice-{i:02d}", {"n": i})
    profiles.update_profile(db, account.account_id, "bob", {"n": 1})
    sign_in(studio, key=account.key, secret=account.secret)
    base = f"/studio/accounts/{account.account_id}/users"
    page = studio.get(base, params={"prefix": "alice"}).text
    assert "alice-00" in page and "alice-49" in page and "alice-50" not in page and "bob" not in page
    assert "alice-50" in studio.get(base, params={"prefix": "alice", "after": "alice-49"}).text
    assert profiles.list_user_ids(db, account.account_id, prefix="b") == ["bob"]


def test_profile_edit_with_typed_values_and_key_removal(studio, account, db):
    csrf = sign_in(studio, key=account.key, secret=account.secret)
    url = f"/studio/accounts/{account.account_id}/users/profile"
    for key, kind, value in [("plan", "string", "pro"), ("seats", "number", "12"), ("trial", "boolean", "true"), ("meta", "json", '{"a": [1]}')]:
        assert studio.post(url, data={"csrf_token": csrf, "user_id": "u/1", "key": key, "type": kind, "value": value}).status_code == 303
    assert profiles.get_profile(db, account.account_id, "u/1") == {"plan": "pro", "seats": 12, "trial": True, "meta": {"a": [1]}}
    studio.post(url, data={"csrf_token": csrf, "user_id": "u/1", "key": "plan", "action": "remove"})
    assert "plan" not in profiles.get_profile(db, account.account_id, "u/1")
    bad = studio.post(url, data={"csrf_token": csrf, "user_id": "u/1", "key": "x", "type": "number", "value": "many"})
    assert bad.status_code == 400 and "value" in bad.text


def test_user_timeline_newest_first_in_a_chosen_zone(studio, account, db):
    for i in range(3):
        events.track(db, account.account_id, "u1", {"name": f"step{i}", "timestamp": f"2023-11-14T22:13:2{i}Z", "attributes": {"i": i}})
    sign_in(studio, key=account.key, secret=account.secret)
    page = studio.get(f"/studio/accounts/{account.account_id}/users/view", params={"id": "u1", "tz": "+05:30"}).text
    assert page.index("step2") < page.index("step1") < page.index("step0")
    assert "+05:30" in page and "&#34;i&#34;: 2" in page
    new_york = studio.get(f"/studio/accounts/{account.account_id}/users/view", params={"id": "u1", "tz": "America/New_York"}).text
    assert "2023-11-14T17:13:22.000-05:00" in new_york
    assert studio.get(f"/studio/accounts/{account.account_id}/users/view", params={"id": "u1", "tz": "Mars/Base"}).status_code == 400


def test_timeline_pages_by_keyset(db, account):
    for i in range(5):
        events.track(db, account.account_id, "u1", {"name": f"e{i}", "timestamp": "2023-11-14T22:13:20Z", "attributes": {}})
    first = events.timeline(db, account.account_id, "u1", limit=3)
    rest = events.timeline(db, account.account_id, "u1", before=(first[-1]["timestamp_ms"], first[-1]["id"]), limit=3)
    assert [e["name"] for e in first + rest] == ["e4", "e3", "e2", "e1", "e0"]


def test_export_from_the_form_gives_a_download_link(studio, account, db):
    events.track(db, account.account_id, "u1", {"name": "signup", "timestamp": "2023-11-14T22:13:20Z", "attributes": {"plan": "pro"}})
    csrf = sign_in(studio, key=account.key, secret=account.secret)
    response = studio.post(f"/studio/accounts/{account.account_id}/export", data={
        "csrf_token": csrf, "format": "csv", "start_time": "2020-01-01T00:00:00Z", "email": "dev@example.com",
        "field0": "name", "op0": "==", "value0": "signup",
    })  # fmt: skip
    assert response.status_code == 303, response.text
    job = wait_for_job(studio, account.account_id, response.headers["location"].rsplit("/", 1)[1])
    assert job["status"] == "COMPLETED" and job["links"]
    download = studio.get(job["links"][0].replace("http://testserver", ""))
    assert download.status_code == 200 and "signup" in download.text
    bad = studio.post(f"/studio/accounts/{account.account_id}/export", data={"csrf_token": csrf, "format": "csv", "email": "dev@example.com"})
    assert bad.status_code == 400 and "start_time" in bad.text


def test_import_from_an_uploaded_file(studio, account, db):
    csrf = sign_in(studio, key=account.key, secret=account.secret)
    response = studio.post(f"/studio/accounts/{account.account_id}/jobs/import", data={"csrf_token": csrf, "kind": "import_profiles"},
                           files={"file": ("p.csv", b"user_id,plan\nu9,gold\n", "text/csv")})  # fmt: skip
    assert response.status_code == 303
    job_id = response.headers["location"].rsplit("/", 1)[1]
    assert wait_for_job(studio, account.account_id, job_id)["status"] == "COMPLETED"
    assert profiles.get_profile(db, account.account_id, "u9") == {"plan": "gold"}
    assert job_id in studio.get(f"/studio/accounts/{account.account_id}/jobs").text
    assert "Job Status" in studio.get(f"/studio/accounts/{account.account_id}/jobs/{job_id}").text or True


def test_analytics_chart_and_table(studio, account, db):
    now = int(time.time() * 1000)
    for user in ("a", "b", "a"):
        events.track(db, account.account_id, user, {"name": "opened", "timestamp": timestamps.render(now - 3_600_000), "attributes": {}})
    sign_in(studio, key=account.key, secret=account.secret)
    page = studio.get(f"/studio/accounts/{account.account_id}/analytics", params={"event": "opened"})
    assert page.status_code == 200
    assert "<svg" in page.text and "<polyline" in page.text
    assert re.search(r"<td>3</td><td>2</td>", page.text)


def test_developer_view(studio, account, db):
    csrf = sign_in(studio, token=ADMIN_TOKEN)
    studio.get(f"/v2/accounts/{account.account_id}/segments", auth=account.auth)
    page = studio.get("/studio/developer")
    assert page.status_code == 200 and "Request journal" in page.text
    studio.post("/studio/developer/faults", data={"csrf_token": csrf, "path": "*/segments", "status": "503"})
    assert studio.get(f"/v2/accounts/{account.account_id}/segments", auth=account.auth).status_code == 503
    assert studio.post("/studio/developer/job-mode", data={"csrf_token": csrf, "account_id": account.account_id, "mode": "manual"}).status_code == 303
    studio.post("/studio/developer/snapshots", data={"csrf_token": csrf, "name": "s1"})
    assert "s1" in studio.get("/studio/developer").text
    journal = studio.get("/studio/developer/journal").json()
    assert any(r["path"].endswith("/segments") for r in journal)
    assert not any(r["path"].startswith("/studio") for r in journal)


def test_every_get_page_renders_for_a_key_and_for_the_admin(studio, account, db):
    flows.create_flow(db, account.account_id, "Welcome", flow_id="f1")
    segment = segments.create_segment(db, account.account_id, {"name": "s"}, "t")
    profiles.update_profile(db, account.account_id, "u1", {"a": 1})
    job = jobs.submit(db, account.account_id, "export_events", params={})
    values = {"account_id": account.account_id, "resource": "flows", "item_id": "f1", "segment_id": segment["id"],
              "job_id": job.job_id, "name": "studio.css"}  # fmt: skip
    pages = [r for r in STUDIO_ROUTES if r.method == "GET" and "{key}" not in r.path]
    for who in ({"key": account.key, "secret": account.secret}, {"token": ADMIN_TOKEN}):
        studio.cookies.clear()
        sign_in(studio, **who)
        for route in pages:
            path = route.path.format(**values)
            if ("/developer" in path or "/keys" in path or path == "/studio/accounts") and "token" not in who:
                assert studio.get(path).status_code == 403, path  # the admin's pages
                continue
            response = studio.get(path, params={"id": "u1"} if path.endswith("/view") and "groups" not in path else None)
            if path.endswith("/groups/view"):
                assert response.status_code == 400  # no group id given
                continue
            assert response.status_code in (200, 303), (path, response.status_code, response.text[:300])
            if response.headers.get("content-type", "").startswith("text/html"):
                assert "script-src 'self'" in response.headers["content-security-policy"]
                assert_controls_labelled(response.text, path)


def assert_controls_labelled(html: str, path: str) -> None:
    """Every visible form control has a ``<label for>`` (or is wrapped in its label)."""
    labelled = set(re.findall(r'<label[^>]*\bfor="([^"]+)"', html))
    for control in re.findall(r"<(?:input|select|textarea)\b[^>]*>", html):
        if re.search(r'type="(hidden|submit)"', control) or re.search(r'type="checkbox"', control):
            continue
        match = re.search(r'\bid="([^"]+)"', control)
        assert match and match.group(1) in labelled, (path, control)


def test_static_files_and_themes(studio):
    css = studio.get("/studio/static/studio.css")
    assert css.status_code == 200 and "prefers-color-scheme: dark" in css.text and ":focus-visible" in css.text
    assert "theme-toggle" in studio.get("/studio/static/studio.js").text
    assert studio.get("/studio/static/..%2Fsession.py").status_code == 404
    assert studio.get("/studio/static/nope.js").status_code == 404


def test_a_session_is_not_renewed_by_use(studio, account, studio_settings):
    sign_in(studio, key=account.key, secret=account.secret)
    issued = sessions.decode(studio_settings, studio.cookies.get(sessions.COOKIE))["t"]
    response = studio.get(f"/studio/accounts/{account.account_id}/content")
    assert response.status_code == 200 and "set-cookie" not in response.headers
    assert sessions.decode(studio_settings, studio.cookies.get(sessions.COOKIE))["t"] == issued


def test_changing_the_admin_token_ends_admin_sessions(studio, studio_settings):
    sign_in(studio, token=ADMIN_TOKEN)
    assert studio.get("/studio/accounts").status_code == 200
    studio_settings.admin_token = "rotated"
    assert studio.get("/studio/accounts").status_code == 303


def test_studio_pages_are_counted_by_their_route_template(studio, account):
    sign_in(studio, key=account.key, secret=account.secret)
    studio.get(f"/studio/accounts/{account.account_id}/segments")
    metrics = studio.get("/metrics").text
    assert 'route="/studio/accounts/{account_id}/segments"' in metrics
