"""HTTP Basic auth with API keys, on both databases: who may call, on which account, and how."""

from __future__ import annotations

import base64
import hashlib

import pytest
from sqlalchemy import event, select

from opencues import accounts
from opencues.errors import ApiError
from opencues.storage.schema import api_keys
from tests.conftest import AccountClient, assert_problem, make_account


def _basic(text: str, scheme: str = "Basic") -> dict:
    return {"Authorization": f"{scheme} {base64.b64encode(text.encode()).decode()}"}


def test_a_valid_key_is_accepted(api):
    assert api.get("flows").status_code == 200


def test_scheme_name_is_case_insensitive(client, account):
    response = client.get("/v2/accounts/acct1/flows", headers=_basic(f"{account.key}:{account.secret}", "basic"))
    assert response.status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Basic"},
        {"Authorization": "Digest username=x"},
        {"Authorization": "Basic not*base64"},
        {"Authorization": "Basic " + base64.b64encode(b"just-a-key").decode()},
        {"Authorization": "Basic " + base64.b64encode(b":secret-without-key").decode()},
    ],
    ids=["missing", "empty", "other scheme", "bad base64", "no colon", "no key"],
)
def test_missing_or_malformed_credentials_are_401(client, account, headers):
    response = client.get("/v2/accounts/acct1/flows", headers=headers)
    assert_problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Basic ")


def test_unknown_key_and_wrong_secret_look_the_same(client, account):
    unknown = client.get("/v2/accounts/acct1/flows", auth=("no-such-key", account.secret))
    wrong = client.get("/v2/accounts/acct1/flows", auth=(account.key, account.secret + "x"))
    assert_problem(unknown, 401)
    assert unknown.json() == wrong.json()
    assert unknown.headers["www-authenticate"] == wrong.headers["www-authenticate"]


def test_secrets_are_compared_in_constant_time_even_for_unknown_keys(client, account, monkeypatch):
    calls = []
    real = accounts.hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(accounts.hmac, "compare_digest", spy)
    client.get("/v2/accounts/acct1/flows", auth=("no-such-key", "x"))
    client.get("/v2/accounts/acct1/flows", auth=(account.key, "x"))
    assert client.get("/v2/accounts/acct1/flows", auth=account.auth).status_code == 200
    assert len(calls) == 3


def test_only_a_hash_of_the_secret_is_stored(db, account):
    with db.connect() as conn:
        row = conn.execute(select(api_keys).where(api_keys.c.id == account.key)).one()
    assert account.secret not in [str(v) for v in row]
    assert row.secret_sha256 == hashlib.sha256(account.secret.encode()).hexdigest()


def test_secrets_are_long_and_random(db, account):
    other = make_account(db, account.account_id)
    assert len(account.secret) >= 40 and account.secret != other.secret and account.key != other.key


def test_a_revoked_key_stops_working_at_once(client, db, api):
    assert api.get("flows").status_code == 200
    accounts.revoke_key(db, api.creds.key)
    assert_problem(api.get("flows"), 401)
    assert_problem(api.post("flows/any/publish"), 401)


def test_revoking_one_key_leaves_the_others(client, db, account):
    second = AccountClient(client, make_account(db, account.account_id))
    accounts.revoke_key(db, account.key)
    assert second.get("flows").status_code == 200


def test_a_key_on_another_accounts_url_is_403(client, account, other_account):
    foreign = AccountClient(client, other_account)
    response = client.get("/v2/accounts/acct1/flows", auth=other_account.auth)
    assert_problem(response, 403, "acct1")
    assert foreign.get("flows").status_code == 200


def test_unknown_account_with_a_valid_key_is_403_not_404(client, account):
    # Whether an account exists is not revealed to keys of other accounts.
    response = client.get("/v2/accounts/no-such-account/flows", auth=account.auth)
    assert_problem(response, 403)


def test_credentials_are_checked_before_the_resource(client, account):
    assert_problem(client.get("/v2/accounts/acct1/flows/missing"), 401)
    assert_problem(client.get("/v2/accounts/acct1/flows/missing", auth=account.auth), 404, "flow not found")


def test_a_read_only_key_reads_but_never_writes(client, db, account):
    from opencues import flows

    flows.create_flow(db, "acct1", "Tour", flow_id="tour")
    reader = AccountClient(client, make_account(db, "acct1", read_only=True))
    assert reader.get("flows/tour").status_code == 200
    assert_problem(reader.post("flows/tour/publish"), 403, "read-only")
    assert flows.get_flow(db, "acct1", "tour")["published"] is False


def test_a_key_is_made_in_one_transaction_and_never_for_a_missing_account(db, account):
    """The account's look-up and the key's row share one connection and one commit (a look-up
    of its own had cost PostgreSQL two more round trips per key)."""
    checkouts = []

    def checked_out(*_args) -> None:
        checkouts.append(1)

    event.listen(db.engine, "checkout", checked_out)
    try:
        made = accounts.create_key(db, account.account_id, read_only=True)
    finally:
        event.remove(db.engine, "checkout", checked_out)
    assert len(checkouts) == 1
    assert accounts.authenticate(db, made["key"], made["secret"]).read_only
    with pytest.raises(ApiError) as missing:
        accounts.create_key(db, "no-such-account")
    assert missing.value.status == 404
