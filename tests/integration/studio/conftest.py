"""Browser fixtures: Debian's Chromium driven by Playwright, against a real ``opencues serve``.

Chromium comes from the system package manager (``apt-get install chromium``; ``.ci/run`` does
it), never from ``playwright install``. A failed test leaves a screenshot of its page under
``$OPENCUES_TEST_ARTIFACTS`` (default ``tmp/artifacts``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("OPENCUES_TEST_CHROMIUM", "/usr/bin/chromium")
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync"]  # fmt: skip
ARTIFACTS = Path(os.environ.get("OPENCUES_TEST_ARTIFACTS", "tmp/artifacts"))
ADMIN_TOKEN = "studio-e2e-admin"
WAIT_MS = 60_000  # generous: six test workers share two cores


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


# Module-scoped: while Playwright's sync API is open, its event loop runs in this thread, and a
# test of another module that this xdist worker runs next could not ``asyncio.run``.
@pytest.fixture(scope="module")
def chromium():
    sync_api = pytest.importorskip("playwright.sync_api")
    required = os.environ.get("OPENCUES_REQUIRE_CHROMIUM") == "1"  # .ci/run: a skip would be a failure
    if not Path(CHROMIUM).exists():
        if required:
            pytest.fail(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def studio_server(live_server):
    """A real server with the control API and the journal on."""
    return live_server(env={"OPENCUES_ADMIN_TOKEN": ADMIN_TOKEN, "OPENCUES_JOURNAL": "on"})


@pytest.fixture
def page(chromium, request):
    """A fresh browser context's page; a screenshot of it when the test fails."""
    context = chromium.new_context(viewport={"width": 1200, "height": 900}, accept_downloads=True)
    context.set_default_timeout(WAIT_MS)
    browser_page = context.new_page()
    yield browser_page
    failed = getattr(request.node, "report_call", None)
    if failed is not None and failed.failed:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid)
        try:
            browser_page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        except Exception:  # noqa: BLE001 - a screenshot must not hide the failure itself
            pass
    context.close()
