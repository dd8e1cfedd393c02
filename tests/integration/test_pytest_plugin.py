"""The pytest plugin as a user's suite meets it: run with ``pytester`` in a fresh pytest session
that loads the plugin from its ``pytest11`` entry point."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from tests.integration.conftest import tls_context

pytest_plugins = ["pytester"]

README = (Path(__file__).parents[2] / "README.md").read_text()
# The inner session, as a user's suite: the opencues plugin from its pytest11 entry point, without
# the other plugins this project's own tests install (schemathesis, hypothesis): they are not the
# plugin's to meet, and loading them cost each inner session ~0.7 s of CPU, more than the rest of it.
INNER = ("-p", "no:cacheprovider", "-p", "no:schemathesis", "-p", "no:hypothesispytest")


def readme_example() -> str:
    section = README.split("## Testing your code against opencues", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S)[1]


def test_the_readme_example_is_short_and_passes(pytester):
    example = readme_example()
    assert len(example.strip().splitlines()) < 15
    pytester.makepyfile(test_user=example)
    result = pytester.runpytest_subprocess(*INNER)
    result.assert_outcomes(passed=1)


def test_ci_runs_the_readme_example():
    """.ci/run ends in a bare `pytest` over `testpaths`: nothing deselects the test above."""
    import tomllib

    root = Path(__file__).parents[2]
    commands = [line.strip() for line in (root / ".ci" / "run").read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert commands[-1] == "pytest"
    options = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert "tests" in options["testpaths"] and "-m" not in options.get("addopts", "") and "-k" not in options.get("addopts", "")


def test_one_server_per_session_fresh_accounts_per_test_removed_after(pytester):
    pytester.makepyfile(
        test_user="""
        import pytest
        from opencues.client import AppcuesError

        seen = []

        @pytest.mark.parametrize("n", range(3))
        def test_fresh_account(appcues, opencues_server, n):
            seen.append((opencues_server.url, appcues.account_id))
            assert appcues.list_segments() == []
            appcues.create_segment(f"segment {n}")

        def test_accounts_were_removed(opencues_server):
            urls = {url for url, _ in seen}
            assert len(urls) == 1 and len({a for _, a in seen}) == 3
            for _, account_id in seen[:2]:
                with pytest.raises(AppcuesError) as raised:
                    opencues_server.control.reset_account(account_id)
                assert raised.value.status == 404

        def test_no_server_without_the_fixtures():
            pass
        """
    )
    result = pytester.runpytest_subprocess(*INNER, "-p", "no:randomly")
    result.assert_outcomes(passed=5)


def test_tests_without_the_fixtures_start_no_server(pytester, monkeypatch, tmp_path):
    pytester.makepyfile(
        test_plain="def test_plain():\n    import sys\n    assert 'httpx' not in sys.modules\n",
        test_deselected="def test_uses_it(appcues):\n    assert False\n",
        # A suite's own fixture named like the plugin's (an in-process client, say) is not ours.
        test_own="import pytest\n\n@pytest.fixture\ndef appcues():\n    return 'mine'\n\n"
        "def test_own_appcues(appcues):\n    assert appcues == 'mine'\n",
    )
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # where a launched server's log would appear
    result = pytester.runpytest_subprocess(*INNER, "-k", "not uses_it")
    result.assert_outcomes(passed=2, deselected=1)
    assert list(tmp_path.glob("opencues-test-server-*")) == []


def test_an_external_server_is_used_when_configured(pytester, live_server, monkeypatch):
    server = live_server(env={"OPENCUES_ADMIN_TOKEN": "external-token"}, args=["--test"])
    pytester.makepyfile(
        test_user=f"""
        def test_external(opencues_server, appcues):
            assert opencues_server.url == "{server.base_url}" and opencues_server.process is None
            appcues.track("u", "Hello")
        """
    )
    monkeypatch.setenv("OPENCUES_TEST_URL", server.base_url)
    monkeypatch.setenv("OPENCUES_ADMIN_TOKEN", "external-token")
    pytester.runpytest_subprocess(*INNER).assert_outcomes(passed=1)
    journal = httpx.get(server.base_url + "/-/requests", headers={"Authorization": "Bearer external-token"}, verify=tls_context()).json()
    assert any(e["path"].endswith("/users/u/events") for e in journal)
