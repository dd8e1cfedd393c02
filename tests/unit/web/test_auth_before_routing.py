"""Under /v2/accounts/{account_id}/, credentials are checked before the path is: an anonymous
caller learns nothing from an unknown path (401), another account's key stays 403, and only a
valid key of this account hears the 404 (or the 405)."""

import pytest

from tests.conftest import assert_problem, make_account

UNKNOWN = ["nothing-here", "flows/f1/frobnicate", "groups-v9/x/y", "", "tags/t1/publish/again"]


@pytest.mark.parametrize("tail", UNKNOWN)
def test_missing_or_wrong_credentials_are_401_even_on_unknown_paths(client, account, tail):
    url = f"/v2/accounts/acct1/{tail}"
    for auth in (None, (account.key, "wrong"), ("no-such-key", "x")):
        response = client.get(url, auth=auth)
        assert_problem(response, 401)
        assert response.headers["www-authenticate"].startswith("Basic")


@pytest.mark.parametrize("tail", UNKNOWN)
def test_a_valid_key_hears_the_404(client, account, tail):
    body = assert_problem(client.get(f"/v2/accounts/acct1/{tail}", auth=account.auth), 404)
    assert body["detail"].startswith("no such endpoint")


@pytest.mark.parametrize("tail", UNKNOWN)
def test_another_accounts_key_is_403_on_unknown_paths_too(client, db, account, tail):
    stranger = make_account(db, "acct2")
    assert_problem(client.get(f"/v2/accounts/acct1/{tail}", auth=stranger.auth), 403, "acct1")


def test_a_wrong_method_is_401_before_405_and_405_with_allow_after(client, account):
    assert_problem(client.delete("/v2/accounts/acct1/flows"), 401)
    response = client.delete("/v2/accounts/acct1/flows", auth=account.auth)
    assert_problem(response, 405)
    assert response.headers["allow"] == "GET"


def test_paths_outside_accounts_are_plain_404s(client):
    assert_problem(client.get("/v2/nothing"), 404, "no such endpoint")
    assert_problem(client.get("/v2/accounts/"), 404, "no such endpoint")
