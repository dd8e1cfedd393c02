"""opencues.client against the in-process app (both databases), through the real HTTP stack of httpx."""

from __future__ import annotations

import io
import json
import re
import time
import zipfile

import pytest

from opencues import content, flows
from opencues.client import DEFAULT_BASE_URL, AppcuesError, Client, Control
from opencues.web.app import create_app
from tests.in_process_client import InProcessClient

TOKEN = "client-admin-token"


@pytest.fixture
def server(settings, db):
    app = create_app(settings.model_copy(update={"admin_token": TOKEN, "journal": "on"}), db)
    with InProcessClient(app, base_url="http://testserver") as test_client:
        yield test_client


@pytest.fixture
def control(server):
    with Control("http://testserver", TOKEN, transport=server._transport) as control:
        yield control


@pytest.fixture
def appcues(control, server):
    account = control.create_account()
    with control.client(account, transport=server._transport) as client:
        yield client


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("APPCUES_API_KEY", "k")
    monkeypatch.setenv("APPCUES_API_SECRET", "s")
    monkeypatch.setenv("APPCUES_ACCOUNT_ID", "42")
    monkeypatch.delenv("APPCUES_BASE_URL", raising=False)
    client = Client()
    assert (client.base_url, client.key, client.secret, client.account_id) == (DEFAULT_BASE_URL, "k", "s", "42")
    monkeypatch.setenv("APPCUES_BASE_URL", "http://localhost:9")
    assert Client(account_id="7").base_url == "http://localhost:9"
    monkeypatch.delenv("APPCUES_API_KEY")
    with pytest.raises(ValueError, match="key"):
        Client()


def test_flows(appcues, db):
    flows.create_flow(db, appcues.account_id, "Tour", flow_id="f1", frequency="once")
    assert [f["id"] for f in appcues.list_flows()] == ["f1"]
    assert appcues.publish_flow("f1")["status"] == 200
    assert appcues.get_flow("f1")["published"] is True
    appcues.unpublish_flow("f1")
    assert appcues.get_flow("f1")["published"] is False
    assert appcues.list_flows(csv=True).splitlines()[0].startswith("id,")


def test_segments_and_members(appcues):
    segment = appcues.create_segment("Beta", description="testers")
    assert appcues.get_segment(segment["id"])["name"] == "Beta"
    assert appcues.update_segment(segment["id"], name="Beta 2")["name"] == "Beta 2"
    added = appcues.wait(appcues.add_user_ids(segment["id"], ["u1", "u2", "u3"]))
    assert added["status"] == "COMPLETED"
    streamed = appcues.wait(appcues.remove_user_ids(segment["id"], iter(["u1"])))
    assert streamed["status"] == "COMPLETED" and streamed["events"][-1]["attributes"]["ingestions_completed"] == 1
    assert [s["id"] for s in appcues.list_segments()] == [segment["id"]]
    appcues.delete_segment(segment["id"])
    with pytest.raises(AppcuesError) as missing:
        appcues.get_segment(segment["id"])
    assert missing.value.status == 404 and "not found" in missing.value.detail and missing.value.title == "Not Found"


def test_profiles_and_events(appcues):
    appcues.update_profile("u1", {"plan": "pro"})
    assert appcues.get_profile("u1")["plan"] == "pro"
    appcues.track("u1", "First", timestamp="2024-01-01T00:00:00Z", attributes={"n": 1})
    appcues.track("u1", "Second")
    assert [e["name"] for e in appcues.events("u1")] == ["Second", "First"]
    assert [e["name"] for e in appcues.events("u1", limit=1)] == ["Second"]
    assert appcues.events("u1", csv=True).splitlines()[0].startswith("user_id")


def test_bulk_imports_from_rows_and_files(appcues, tmp_path):
    rows = ({"user_id": f"u{i}", "name": "Imported", "timestamp": 1700000000000 + i} for i in range(500))
    job = appcues.wait(appcues.import_events(rows))
    assert job["status"] == "COMPLETED" and job["events"][-1]["attributes"]["ingestions_completed"] == 500
    csv_file = tmp_path / "profiles.csv"
    csv_file.write_text("user_id,plan\nu1,pro\nu2,free\n")
    assert appcues.wait(appcues.import_profiles(csv_file))["status"] == "COMPLETED"
    assert appcues.get_profile("u2")["plan"] == "free"
    ndjson = tmp_path / "events.ndjson"
    ndjson.write_text(json.dumps({"user_id": "file-user", "name": "FromFile", "timestamp": 1700000000000}) + "\n")
    with open(ndjson, "rb") as handle:
        submitted = appcues.import_events(handle, idempotency_key="once")
    assert appcues.wait(submitted["job_id"])["status"] == "COMPLETED"
    assert [e["name"] for e in appcues.events("file-user")] == ["FromFile"]
    assert submitted["job_id"] in [j["id"] for j in appcues.list_jobs()]


def test_export_and_its_email(appcues, control):
    control.set_job_mode(appcues.account_id, "instant")
    appcues.track("u1", "Exported", timestamp="2024-01-01T00:00:00Z")
    job = appcues.export_events(email="me@example.com", start_time="2023-01-01T00:00:00Z", end_time="2025-01-01T00:00:00Z")
    assert appcues.get_job(job["job_id"])["status"] == "COMPLETED"  # instant: done before the 202
    [message] = control.outbox()
    assert message["to"] == "me@example.com" and b"me@example.com" in control.outbox_message(message["id"])
    control.clear_outbox()
    assert control.outbox() == []


def test_a_429_is_retried_after_retry_after(appcues, control):
    control.add_fault("*/segments", status=429, retry_after=0, times=2)
    assert appcues.list_segments() == []
    sent = control.requests(path="*/segments")
    assert [e["status"] for e in sent] == [200, 429, 429]


def test_retries_give_up_with_the_429(appcues, control):
    control.add_fault("*/segments", status=429, retry_after=0)
    appcues.max_retries = 1
    with pytest.raises(AppcuesError) as limited:
        appcues.list_segments()
    assert limited.value.status == 429 and limited.value.response.headers["retry-after"] == "0"
    control.clear_faults()
    assert control.list_faults() == []


def test_wait_times_out_on_a_held_job(appcues, control):
    control.set_job_mode(appcues.account_id, "manual")
    submitted = appcues.import_events([{"user_id": "u", "name": "x", "timestamp": 1700000000000}])
    with pytest.raises(TimeoutError):
        appcues.wait(submitted, timeout=0.3)
    assert control.run_job(submitted["job_id"])["status"] == "COMPLETED"


def test_control_snapshots_seed_and_reset(appcues, control):
    appcues.track("u1", "Saved", timestamp="2024-01-01T00:00:00Z")
    control.create_snapshot("base", account_id=appcues.account_id)
    assert [s["name"] for s in control.list_snapshots()] == ["base"]
    document = control.get_snapshot("base")
    control.reset_account(appcues.account_id)
    assert appcues.events("u1") == []
    control.restore_snapshot("base")
    assert [e["name"] for e in appcues.events("u1")] == ["Saved"]
    control.reset_account(appcues.account_id)
    control.seed(json.loads(document))
    assert [e["name"] for e in appcues.events("u1")] == ["Saved"]
    control.delete_snapshot("base")
    control.clear_requests()
    assert control.requests() == []
    assert control.health()["status"] == 200 and control.ready()["status"] == 200


def test_control_errors_carry_problem_details(control):
    with pytest.raises(AppcuesError) as wrong:
        Control(control.base_url, "wrong", transport=control.http._transport).reset()
    assert wrong.value.status == 401
    with pytest.raises(AppcuesError) as bad:
        control.add_fault("*")
    assert bad.value.status == 400 and "`status`" in bad.value.detail


def test_tags_experiences_and_screenshots(appcues, db):
    content.import_content(db, appcues.account_id, content.demo_content())
    assert sorted(t["id"] for t in appcues.list_tags()) == ["tag-announcements", "tag-onboarding"]
    assert appcues.get_tag("tag-onboarding")["name"] == "onboarding"
    assert appcues.list_tags(csv=True).splitlines()[0].startswith("id,")
    # Every experience type: list, get, publish, unpublish — and CSV.
    kinds = {
        "checklists": ("list_checklists", "get_checklist", "publish_checklist", "unpublish_checklist"),
        "pins": ("list_pins", "get_pin", "publish_pin", "unpublish_pin"),
        "banners": ("list_banners", "get_banner", "publish_banner", "unpublish_banner"),
        "launchpads": ("list_launchpads", "get_launchpad", "publish_launchpad", "unpublish_launchpad"),
        "mobile": ("list_mobile_flows", "get_mobile_flow", "publish_mobile_flow", "unpublish_mobile_flow"),
        "embeds": ("list_embeds", "get_embed", "publish_embed", "unpublish_embed"),
        "nps": ("list_nps_surveys", "get_nps_survey", "publish_nps_survey", "unpublish_nps_survey"),
        "flows-v2": ("list_flows_v2", "get_flow_v2", "publish_flow_v2", "unpublish_flow_v2"),
    }
    for resource, (list_name, get_name, publish_name, unpublish_name) in kinds.items():
        item_id = f"demo-{resource}"
        assert [i["id"] for i in getattr(appcues, list_name)()] == [item_id], resource
        assert getattr(appcues, list_name)(csv=True).splitlines()[0].startswith("id,"), resource
        getattr(appcues, publish_name)(item_id)
        assert getattr(appcues, get_name)(item_id)["published"] is True, resource
        getattr(appcues, unpublish_name)(item_id)
        assert getattr(appcues, get_name)(item_id)["published"] is False, resource
        assert item_id in getattr(appcues, get_name)(item_id, csv=True), resource
    archive = appcues.get_screenshots("demo-pins")
    with zipfile.ZipFile(io.BytesIO(archive)) as opened:
        assert opened.testzip() is None


def test_sdk_keys(appcues):
    created = appcues.create_sdk_key("web", tag_field="plan")
    assert created["secret"] and created["tag_field"] == "plan"
    key_id = created["id"]
    assert [k["id"] for k in appcues.list_sdk_keys()] == [key_id]
    assert "secret" not in appcues.get_sdk_key(key_id)
    assert appcues.list_sdk_keys(csv=True).splitlines()[0].startswith("id,")
    assert key_id in appcues.get_sdk_key(key_id, csv=True)
    assert appcues.update_sdk_key(key_id, tag_field="tier")["tag_field"] == "tier"
    assert appcues.set_sdk_key_tag_field(key_id, None)["tag_field"] is None
    appcues.enable_enforcement_mode(key_id)
    appcues.enable_secure_data_ingest(key_id)
    switched = appcues.get_sdk_key(key_id)
    assert switched["enforcement_mode"] is True and switched["secure_data_ingest"] is True
    appcues.disable_enforcement_mode(key_id)
    appcues.disable_secure_data_ingest(key_id)
    switched = appcues.get_sdk_key(key_id)
    assert switched["enforcement_mode"] is False and switched["secure_data_ingest"] is False
    appcues.delete_sdk_key(key_id)
    with pytest.raises(AppcuesError) as gone:
        appcues.get_sdk_key(key_id)
    assert gone.value.status == 404
    with pytest.raises(AppcuesError) as unnamed:
        appcues.create_sdk_key("")
    assert unnamed.value.status == 400 and "name" in unnamed.value.detail


def test_groups_event_extras_and_profile_deletion(appcues):
    appcues.update_group("acme", {"plan": "enterprise"})
    assert appcues.get_group("acme")["plan"] == "enterprise"
    assert appcues.get_group("acme", csv=True).splitlines()[0].startswith("group_id")
    appcues.add_group_users("acme", ["u1", "u2"])  # unknown users get an (empty) profile
    assert isinstance(appcues.get_profile("u1"), dict) and isinstance(appcues.get_profile("u2"), dict)
    appcues.track("u1", "In a group", timestamp="2024-01-01T00:00:00Z", group_id="acme", context={"url": "https://x.test/"})
    [event] = appcues.events("u1")
    assert (event["name"], event["group_id"], event["context"]) == ("In a group", "acme", {"url": "https://x.test/"})
    job = appcues.wait(appcues.import_groups([{"group_id": "g2", "seats": 5}]))
    assert job["status"] == "COMPLETED" and appcues.get_group("g2")["seats"] == 5
    appcues.update_profile("u3", {"plan": "pro"})
    assert appcues.get_profile("u3", csv=True).splitlines() == ["plan", "pro"]
    appcues.delete_profile("u3")
    with pytest.raises(AppcuesError) as erased:
        appcues.get_profile("u3")
    assert erased.value.status == 404


def test_segment_membership_export_and_download(appcues, tmp_path):
    segment = appcues.create_segment("Members")
    appcues.update_profile("u1", {"plan": "pro"})
    appcues.wait(appcues.add_user_ids(segment["id"], ["u1", "u2"]))
    accepted = appcues.export_segment_members(segment["id"], property_names=["plan"], format="csv")
    job = appcues.wait(accepted)
    assert job["status"] == "COMPLETED"
    url = next(e["attributes"]["download_url"] for e in job["events"] if e["name"] == "Completed")
    lines = appcues.download(url).decode().splitlines()
    assert lines[0] == "user_id,plan" and sorted(lines[1:]) == ["u1,pro", "u2,"]
    saved = tmp_path / "members.csv"
    appcues.download(url, saved)
    assert saved.read_text().splitlines() == lines
    with pytest.raises(AppcuesError) as tampered:
        appcues.download(url[:-4] + "AAAA")
    assert tampered.value.status == 403


def test_ingestion_rules(appcues):
    assert appcues.get_ingestion_rules()["mode"] == "deny"
    saved = appcues.replace_ingestion_rules({"mode": "deny", "event_names": ["Noise"]})
    assert saved["event_names"] == ["Noise"]
    assert appcues.get_ingestion_rules(csv=True).splitlines()[0].startswith("mode,")
    appcues.track("u1", "Noise")
    appcues.track("u1", "Signal")
    assert [e["name"] for e in appcues.events("u1")] == ["Signal"]
    with pytest.raises(AppcuesError) as bad:
        appcues.replace_ingestion_rules({"mode": "sometimes"})
    assert bad.value.status == 400 and "mode" in bad.value.detail


def test_analytics_query_and_export(appcues):
    for user in ("u1", "u2"):
        appcues.track(user, "Clicked", timestamp="2024-01-01T10:00:00Z")
    spec = {"metrics": ["events", "users"], "start_time": "2024-01-01", "end_time": "2024-01-02"}
    assert appcues.query_analytics(spec) == [{"events": 2, "users": 2}]
    started = appcues.create_analytics_export({"columns": ["user_id", "name"], "start_time": "2024-01-01", "end_time": "2024-01-02"})
    deadline = time.monotonic() + 30
    while (status := appcues.get_analytics_export(started["job_id"]))["status"] not in ("done", "failed"):
        assert time.monotonic() < deadline, status
        time.sleep(0.05)
    assert status["status"] == "done"
    rows = json.loads(appcues.download(status["download_url"]))
    assert sorted(r["user_id"] for r in rows) == ["u1", "u2"]


# Every route opencues serves → the client method for it, with arguments to call it with. A route
# added without a method (or a method calling another route) fails the two tests below.
API_METHODS = {
    ("GET", "/flows"): ("list_flows", ()),
    ("GET", "/flows/{flow_id}"): ("get_flow", ("f",)),
    ("POST", "/flows/{flow_id}/publish"): ("publish_flow", ("f",)),
    ("POST", "/flows/{flow_id}/unpublish"): ("unpublish_flow", ("f",)),
    ("GET", "/segments"): ("list_segments", ()),
    ("GET", "/segments/{segment_id}"): ("get_segment", ("s",)),
    ("POST", "/segments"): ("create_segment", ("name",)),
    ("PATCH", "/segments/{segment_id}"): ("update_segment", ("s",)),
    ("DELETE", "/segments/{segment_id}"): ("delete_segment", ("s",)),
    ("GET", "/users/{user_id:path}/profile"): ("get_profile", ("u",)),
    ("PATCH", "/users/{user_id:path}/profile"): ("update_profile", ("u", {"a": 1})),
    ("DELETE", "/users/{user_id:path}/profile"): ("delete_profile", ("u",)),
    ("GET", "/users/{user_id:path}/events"): ("events", ("u",)),
    ("POST", "/users/{user_id:path}/events"): ("track", ("u", "e")),
    ("POST", "/segments/{segment_id}/add_user_ids"): ("add_user_ids", ("s", ["u"])),
    ("POST", "/segments/{segment_id}/remove_user_ids"): ("remove_user_ids", ("s", ["u"])),
    ("POST", "/segments/{segment_id}/segment_membership_export"): ("export_segment_members", ("s",)),
    ("POST", "/import/profiles"): ("import_profiles", ([{"user_id": "u"}],)),
    ("POST", "/import/events"): ("import_events", ([{"user_id": "u", "name": "e", "timestamp": 1}],)),
    ("POST", "/import/groups"): ("import_groups", ([{"group_id": "g"}],)),
    ("GET", "/jobs"): ("list_jobs", ()),
    ("GET", "/jobs/{job_id}"): ("get_job", ("j",)),
    ("POST", "/export/events"): ("export_events", (), {"email": "a@example.com"}),
    ("GET", "/tags"): ("list_tags", ()),
    ("GET", "/tags/{tag_id}"): ("get_tag", ("t",)),
    ("GET", "/screenshots/{resource_id}"): ("get_screenshots", ("r",)),
    ("GET", "/sdk_keys"): ("list_sdk_keys", ()),
    ("POST", "/sdk_keys"): ("create_sdk_key", ("k",)),
    ("GET", "/sdk_keys/{sdk_key_id}"): ("get_sdk_key", ("k",)),
    ("DELETE", "/sdk_keys/{sdk_key_id}"): ("delete_sdk_key", ("k",)),
    ("PATCH", "/sdk_keys/{sdk_key_id}"): ("update_sdk_key", ("k",), {"tag_field": None}),
    ("PATCH", "/sdk_keys/{sdk_key_id}/tag_field"): ("set_sdk_key_tag_field", ("k", None)),
    ("POST", "/sdk_keys/{sdk_key_id}/enforcement_mode/enable"): ("enable_enforcement_mode", ("k",)),
    ("POST", "/sdk_keys/{sdk_key_id}/enforcement_mode/disable"): ("disable_enforcement_mode", ("k",)),
    ("POST", "/sdk_keys/{sdk_key_id}/secure_data_ingest/enable"): ("enable_secure_data_ingest", ("k",)),
    ("POST", "/sdk_keys/{sdk_key_id}/secure_data_ingest/disable"): ("disable_secure_data_ingest", ("k",)),
    ("GET", "/groups/{group_id:path}/profile"): ("get_group", ("g",)),
    ("PATCH", "/groups/{group_id:path}/profile"): ("update_group", ("g", {"a": 1})),
    ("POST", "/groups/{group_id:path}/users"): ("add_group_users", ("g", ["u"])),
    ("GET", "/ingestion_filtering_rules"): ("get_ingestion_rules", ()),
    ("POST", "/ingestion_filtering_rules"): ("replace_ingestion_rules", ({},)),
    ("POST", "/analytics/query"): ("query_analytics", ({},)),
    ("POST", "/analytics/exports"): ("create_analytics_export", ({},)),
    ("GET", "/analytics/exports/{job_id}"): ("get_analytics_export", ("j",)),
}
_EXPERIENCE_METHODS = {
    "checklists": ("checklists", "checklist"), "pins": ("pins", "pin"), "banners": ("banners", "banner"),
    "launchpads": ("launchpads", "launchpad"), "mobile": ("mobile_flows", "mobile_flow"), "embeds": ("embeds", "embed"),
    "nps": ("nps_surveys", "nps_survey"), "flows-v2": ("flows_v2", "flow_v2"),
}  # fmt: skip
for _resource, (_plural, _singular) in _EXPERIENCE_METHODS.items():
    API_METHODS[("GET", f"/{_resource}")] = (f"list_{_plural}", ())
    API_METHODS[("GET", f"/{_resource}/{{experience_id}}")] = (f"get_{_singular}", ("x",))
    API_METHODS[("POST", f"/{_resource}/{{experience_id}}/publish")] = (f"publish_{_singular}", ("x",))
    API_METHODS[("POST", f"/{_resource}/{{experience_id}}/unpublish")] = (f"unpublish_{_singular}", ("x",))
PUBLIC_METHODS = {("GET", "/downloads/{token}"): ("download", ("http://testserver/downloads/not-a-token",))}

CONTROL_METHODS = {
    ("GET", "/-/health"): ("health", ()),
    ("GET", "/-/ready"): ("ready", ()),
    ("POST", "/-/accounts"): ("create_account", ()),
    ("DELETE", "/-/accounts/{account_id}"): ("delete_account", ("a",)),
    ("POST", "/-/reset"): ("reset", ()),
    ("POST", "/-/accounts/{account_id}/reset"): ("reset_account", ("a",)),
    ("POST", "/-/snapshots"): ("create_snapshot", ("n",)),
    ("GET", "/-/snapshots"): ("list_snapshots", ()),
    ("GET", "/-/snapshots/{name}"): ("get_snapshot", ("n",)),
    ("POST", "/-/snapshots/{name}/restore"): ("restore_snapshot", ("n",)),
    ("DELETE", "/-/snapshots/{name}"): ("delete_snapshot", ("n",)),
    ("POST", "/-/seed"): ("seed", (b"{}",)),
    ("POST", "/-/faults"): ("add_fault", ("/nowhere",), {"status": 500, "account_id": "nobody"}),
    ("GET", "/-/faults"): ("list_faults", ()),
    ("DELETE", "/-/faults/{fault_id}"): ("remove_fault", ("f",)),
    ("DELETE", "/-/faults"): ("clear_faults", ()),
    ("PUT", "/-/accounts/{account_id}/job-mode"): ("set_job_mode", ("a", "auto")),
    ("POST", "/-/jobs/{job_id}/run"): ("run_job", ("j",)),
    ("POST", "/-/jobs/{job_id}/fail"): ("fail_job", ("j", "r")),
    ("GET", "/-/requests"): ("requests", ()),
    ("DELETE", "/-/requests"): ("clear_requests", ()),
    ("GET", "/-/outbox"): ("outbox", ()),
    ("GET", "/-/outbox/{message_id}"): ("outbox_message", ("m",)),
    ("DELETE", "/-/outbox"): ("clear_outbox", ()),
}


def _pattern(template: str) -> re.Pattern:
    """A route path template as a regex over the request path (``{x}``: one segment, ``{x:path}``: any)."""
    parts = re.split(r"(\{[^}]+\})", template)
    regex = "".join((".+" if p.endswith(":path}") else "[^/]+") if p.startswith("{") else re.escape(p) for p in parts)
    return re.compile(regex + "$")


def _sent_by(client, name: str, args: tuple, kwargs: dict | None = None) -> list[tuple[str, str]]:
    """The (method, path) of every request ``client.<name>(*args)`` sent."""
    sent: list[tuple[str, str]] = []
    client.http.event_hooks["request"].append(lambda request: sent.append((request.method, request.url.path)))
    try:
        getattr(client, name)(*args, **(kwargs or {}))
    except AppcuesError:
        pass  # placeholder ids: a 404 (or 400) still shows which route was called
    finally:
        client.http.event_hooks["request"].pop()
    return sent


def _table(entries: dict) -> dict:
    return {key: (value[0], value[1], value[2] if len(value) > 2 else {}) for key, value in entries.items()}


def test_every_api_route_has_a_client_method_that_calls_it(appcues):
    from opencues.web.routes import ACCOUNT, PUBLIC_ROUTES, ROUTES

    served = {(r.method, r.path[len(ACCOUNT):]) for r in ROUTES} | {(r.method, r.path) for r in PUBLIC_ROUTES}
    table = _table({**API_METHODS, **PUBLIC_METHODS})
    assert served - set(table) == set(), "routes without a client method: add them to opencues.client and this table"
    assert set(table) - served == set(), "the table names routes opencues does not serve"
    for (method, template), (name, args, kwargs) in table.items():
        full = template if template.startswith("/downloads") else ACCOUNT.replace("{account_id}", appcues.account_id) + template
        sent = _sent_by(appcues, name, args, kwargs)
        assert sent and sent[-1][0] == method and _pattern(full).match(sent[-1][1]), (name, method, template, sent)


def test_every_control_route_has_a_control_method_that_calls_it(control):
    from opencues.web.control_routes import CONTROL_ROUTES

    served = {(r.method, r.path) for r in CONTROL_ROUTES}
    table = _table(CONTROL_METHODS)
    assert served - set(table) == set(), "control routes without a Control method: add them to opencues.client and this table"
    assert set(table) - served == set()
    for (method, template), (name, args, kwargs) in table.items():
        sent = _sent_by(control, name, args, kwargs)
        assert sent and sent[-1][0] == method and _pattern(template).match(sent[-1][1]), (name, method, template, sent)
