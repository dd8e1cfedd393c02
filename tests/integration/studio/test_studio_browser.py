"""Studio end to end: a real browser (Chromium) on a real server, each test on its own server."""

from __future__ import annotations

from pathlib import Path

from tests.integration.studio.conftest import ADMIN_TOKEN, ARTIFACTS, WAIT_MS


def expect(target):
    """Playwright's ``expect``, imported at first use: at ~80 ms, not at every xdist worker's
    collection (the ``chromium`` fixture skips when Playwright is missing)."""
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


def sign_in_with_key(page, server, key: str, secret: str) -> None:
    page.goto(server.base_url + "/studio/login")
    page.get_by_role("textbox", name="API key").fill(key)
    page.get_by_label("Secret", exact=True).fill(secret)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def sign_in_as_admin(page, server) -> None:
    page.goto(server.base_url + "/studio/login")
    page.get_by_label("Admin token").fill(ADMIN_TOKEN)
    page.get_by_role("button", name="Sign in as admin").click()
    expect(page.get_by_role("heading", name="Accounts")).to_be_visible()


def test_admin_creates_a_key_and_sees_its_secret_once(page, studio_server):
    account = studio_server.create_account("acme")
    sign_in_as_admin(page, studio_server)
    page.get_by_role("link", name="keys").first.click()
    page.get_by_role("button", name="Create key").click()
    key = page.locator("#new-key-id").inner_text()
    secret = page.locator("#new-key-secret").inner_text()
    with studio_server.client(auth=(key, secret)) as api:
        assert api.get(f"/v2/accounts/{account}/segments").status_code == 200
    page.goto(f"{studio_server.base_url}/studio/accounts/{account}/keys")
    expect(page.get_by_text(key)).to_be_visible()
    expect(page.locator("#new-key-secret")).to_have_count(0)
    assert secret not in page.content()


def test_segment_upload_runs_its_job_live(page, studio_server):
    account = studio_server.create_account("acme")
    key, secret = studio_server.create_key(account)
    sign_in_with_key(page, studio_server, key, secret)
    page.get_by_role("link", name="Segments").click()
    page.get_by_label("Name").fill("Trial users")
    page.get_by_role("button", name="Create segment").click()
    expect(page.get_by_role("heading", name="Trial users")).to_be_visible()
    segment_url = page.url
    ids = "".join(f"user-{i:04d}\n" for i in range(500)).encode()
    page.get_by_label("File").set_input_files({"name": "ids.txt", "mimeType": "text/plain", "buffer": ids})
    page.get_by_role("button", name="Upload and run").click()
    expect(page.locator("#job-status")).to_have_text("COMPLETED", timeout=WAIT_MS)  # followed by polling
    expect(page.locator("#job-events")).to_contain_text("Completed")
    page.goto(segment_url)
    expect(page.locator("#members")).to_contain_text("user-0000")


def test_profile_edit_is_seen_through_the_api(page, studio_server):
    account = studio_server.create_account("acme")
    key, secret = studio_server.create_key(account)
    sign_in_with_key(page, studio_server, key, secret)
    page.goto(f"{studio_server.base_url}/studio/accounts/{account}/users/view?id=user%2F42")
    for name, kind, value in (("plan", "string", "gold"), ("seats", "number", "12")):
        page.get_by_label("Key", exact=True).fill(name)
        page.get_by_label("Type").select_option(kind)
        page.get_by_label("Value").fill(value)
        page.get_by_role("button", name="Set").click()
        expect(page.locator("#profile")).to_contain_text(name)
    with studio_server.client(auth=(key, secret)) as api:
        profile = api.get(f"/v2/accounts/{account}/users/user%2F42/profile").json()
    assert profile == {"plan": "gold", "seats": 12}
    page.get_by_role("button", name="Remove plan").click()
    expect(page.locator("#profile")).not_to_contain_text("gold")
    with studio_server.client(auth=(key, secret)) as api:
        assert api.get(f"/v2/accounts/{account}/users/user%2F42/profile").json() == {"seats": 12}


def test_publish_a_flow(page, studio_server):
    from opencues import flows

    account = studio_server.create_account("acme")
    key, secret = studio_server.create_key(account)
    db = studio_server.database()
    try:
        flows.create_flow(db, account, "Welcome tour", flow_id="flow-1")
    finally:
        db.dispose()
    sign_in_with_key(page, studio_server, key, secret)
    page.get_by_label("Search").fill("welcome")
    page.get_by_role("button", name="Filter").click()
    page.get_by_role("link", name="Welcome tour").click()
    page.get_by_role("button", name="Publish").click()
    expect(page.locator("#published-state")).to_have_text("published")
    with studio_server.client(auth=(key, secret)) as api:
        assert api.get(f"/v2/accounts/{account}/flows/flow-1").json()["published"] is True


def test_export_link_opens_from_the_outbox(page, studio_server):
    account = studio_server.create_account("acme")
    key, secret = studio_server.create_key(account)
    with studio_server.client(auth=(key, secret)) as api:
        tracked = api.post(f"/v2/accounts/{account}/users/u1/events",
                           json={"name": "signed_up", "timestamp": "2026-01-02T03:04:05Z", "attributes": {"plan": "pro"}})  # fmt: skip
        assert tracked.status_code < 300
    sign_in_as_admin(page, studio_server)
    page.goto(f"{studio_server.base_url}/studio/accounts/{account}/export")
    page.get_by_label("Email the link to").fill("dev@example.com")
    page.locator("#field0").fill("name")
    page.locator("#value0").fill("signed_up")
    page.get_by_role("button", name="Start export").click()
    expect(page.locator("#job-status")).to_have_text("COMPLETED", timeout=WAIT_MS)
    page.get_by_role("link", name="Developer").click()
    link = page.locator(".outbox-link").first
    expect(link).to_be_visible()
    with page.expect_download() as download:
        link.click()
    content = Path(download.value.path()).read_text()
    assert "signed_up" in content and "u1" in content


def test_read_only_key_sees_no_write_controls_and_forged_posts_are_refused(page, studio_server):
    from opencues import flows

    account = studio_server.create_account("acme")
    key, secret = studio_server.create_key(account, read_only=True)
    db = studio_server.database()
    try:
        flows.create_flow(db, account, "Welcome tour", flow_id="flow-1")
    finally:
        db.dispose()
    sign_in_with_key(page, studio_server, key, secret)
    page.goto(f"{studio_server.base_url}/studio/accounts/{account}/content/flows/flow-1")
    expect(page.get_by_role("heading", name="Welcome tour")).to_be_visible()
    expect(page.get_by_role("button", name="Publish")).to_have_count(0)
    page.goto(f"{studio_server.base_url}/studio/accounts/{account}/segments")
    expect(page.get_by_role("button", name="Create segment")).to_have_count(0)
    page.goto(f"{studio_server.base_url}/studio/accounts/{account}/users/view?id=u1")
    expect(page.get_by_role("button", name="Set")).to_have_count(0)
    # A form the page never offered, posted from the page with its session cookie.
    target = f"/studio/accounts/{account}/content/flows/flow-1/publish"
    for token in ("forged", None):  # a wrong token; the page's own token, but a read-only key
        page.goto(f"{studio_server.base_url}/studio/accounts/{account}/content/flows/flow-1")
        with page.expect_navigation() as answer:  # the form's POST, answered and loaded
            page.evaluate(
                """([action, token]) => {
                    const form = document.createElement("form"); form.method = "post"; form.action = action;
                    const field = document.createElement("input"); field.name = "csrf_token";
                    field.value = token === null ? document.querySelector("input[name=csrf_token]").value : token;
                    form.appendChild(field); document.body.appendChild(form); setTimeout(() => form.submit(), 0);
                }""",
                [target, token],
            )
        assert answer.value.request.method == "POST" and answer.value.status == 403
        expect(page.get_by_role("alert")).to_be_visible()
    with studio_server.client(auth=(key, secret)) as api:
        assert api.get(f"/v2/accounts/{account}/flows/flow-1").json()["published"] is False


def test_screenshot_of_studio(page, studio_server):
    """The README's picture of Studio, from a server with a little data (kept as an artifact)."""
    from opencues import flows, segments

    account = studio_server.create_account("acme", "Acme Inc.")
    db = studio_server.database()
    try:
        for number, name in enumerate(("Welcome tour", "Billing walkthrough", "New dashboard", "Feedback survey")):
            flows.create_flow(db, account, name, flow_id=f"flow-{number}", published=number % 2 == 0)
        segments.create_segment(db, account, {"name": "Trial users"}, "admin")
    finally:
        db.dispose()
    sign_in_as_admin(page, studio_server)
    page.goto(f"{studio_server.base_url}/studio/accounts/{account}/content")
    expect(page.get_by_role("link", name="Welcome tour")).to_be_visible()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "studio.png"))
    assert (ARTIFACTS / "studio.png").stat().st_size > 1000
