import threading
from urllib.parse import quote

import pytest

from opencues import profiles
from tests.conftest import AccountClient, assert_problem, make_account
from tests.nesting import nested, nested_json


# --- the merge rule (pure) ---


def test_merge_adds_replaces_and_removes_keys():
    existing = {"a": 1, "b": {"x": 1}, "c": "keep"}
    changes = {"b": {"y": 2}, "a": None, "d": [1, 2], "gone": None}
    assert profiles.merge(existing, changes) == {"b": {"y": 2}, "c": "keep", "d": [1, 2]}
    assert existing == {"a": 1, "b": {"x": 1}, "c": "keep"}  # inputs untouched


def test_merge_keeps_key_positions_and_json_types():
    merged = profiles.merge({"first": "H", "last": "P"}, {"first": "Harriet", "n": 1.5, "ok": False, "zero": 0})
    assert list(merged) == ["first", "last", "n", "ok", "zero"]
    assert merged["ok"] is False and merged["zero"] == 0 and merged["n"] == 1.5


def test_merge_of_nothing_is_a_copy():
    existing = {"a": 1}
    merged = profiles.merge(existing, {})
    assert merged == existing and merged is not existing


# --- the API ---


def path(user_id: str) -> str:
    return f"users/{quote(user_id, safe='')}/profile"


def test_patch_then_get(api):
    body = {"first_name": "Harriet", "last_name": "Porber", "email": "harriet@bumbleborn.net"}
    response = api.patch(path("u1"), json=body)
    assert response.status_code == 200
    assert response.json() == {"status": 200, "title": "OK"}
    assert api.get(path("u1")).json() == body


def test_patch_merges_and_null_removes(api):
    api.patch(path("u1"), json={"plan": "free", "seats": 3, "admin": True, "meta": {"a": 1}})
    api.patch(path("u1"), json={"plan": "pro", "seats": None, "score": 9.5, "tags": ["x"]})
    assert api.get(path("u1")).json() == {
        "plan": "pro", "admin": True, "meta": {"a": 1}, "score": 9.5, "tags": ["x"],
    }  # fmt: skip


def test_unknown_user_is_404(api):
    assert_problem(api.get(path("never-seen")), 404, "never-seen")


@pytest.mark.parametrize("user_id", ["a/b", "x@y.com", "with space", "ünï", "50%"])
def test_awkward_user_ids_round_trip(api, user_id):
    assert api.patch(path(user_id), json={"id_was": user_id}).status_code == 200
    assert api.get(path(user_id)).json() == {"id_was": user_id}
    assert api.get(path(user_id + "x")).status_code == 404


def test_csv_profile_is_one_header_and_one_row(api):
    api.patch(path("u1"), json={"first_name": "Harriet", "address": {"city": "Paris", "zip": "75001"}, "vip": True})
    response = api.get(path("u1"), headers={"Accept": "text/csv"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    header, row = response.text.splitlines()
    assert set(header.split(",")) == {"first_name", "address.city", "address.zip", "vip"}
    cells = dict(zip(header.split(","), row.split(",")))
    assert cells == {"first_name": "Harriet", "address.city": "Paris", "address.zip": "75001", "vip": "true"}


def test_patch_answers_csv_on_request(api):
    response = api.patch(path("u1"), json={"a": 1}, headers={"Accept": "text/csv"})
    assert response.text.splitlines() == ["status,title", "200,OK"]


@pytest.mark.parametrize(
    "content, content_type, status",
    [
        (b"a,b\n1,2", "text/csv", 415),
        (b'{"a":1}', "application/ndjson", 415),
        (b"[1, 2]", "application/json", 400),
        (b'"text"', "application/json", 400),
        (b"{broken", "application/json", 400),
        (b"", "application/json", 400),
        (b'{"": 1}', "application/json", 400),
    ],
)
def test_patch_rejects_non_objects(api, content, content_type, status):
    assert_problem(api.patch(path("u1"), content=content, headers={"Content-Type": content_type}), status)
    assert api.get(path("u1")).status_code == 404


def test_profiles_are_per_account(client, api, other_account):
    api.patch(path("u1"), json={"a": 1})
    other = AccountClient(client, other_account)
    assert_problem(other.get(path("u1")), 404)
    other.patch(path("u1"), json={"b": 2})
    assert api.get(path("u1")).json() == {"a": 1}
    assert_problem(client.get(api.url(path("u1")), auth=other_account.auth), 403)


def test_read_only_key_cannot_patch(client, db, api):
    api.patch(path("u1"), json={"a": 1})
    reader = AccountClient(client, make_account(db, "acct1", read_only=True))
    assert reader.get(path("u1")).json() == {"a": 1}
    assert_problem(reader.patch(path("u1"), json={"a": 2}), 403, "read-only")
    assert api.get(path("u1")).json() == {"a": 1}


def test_concurrent_updates_of_one_user_lose_no_keys(db, account):
    """Each thread adds its own key; the read-merge-write must not drop another thread's."""
    threads, errors = 8, []

    def worker(n: int) -> None:
        try:
            for i in range(5):
                profiles.update_profile(db, "acct1", "hot-user", {f"k{n}_{i}": i})
        except Exception as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)

    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert errors == []
    assert len(profiles.get_profile(db, "acct1", "hot-user")) == threads * 5


def test_concurrent_patches_of_one_user_through_the_server_lose_no_keys(app, account):
    """Many PATCHes of one user in flight at once (they share group commits): every key lands,
    and a ``null`` in one of them removes only its own key."""
    import asyncio

    import httpx

    url = f"/v2/accounts/{account.account_id}/users/hot/profile"
    auth = (account.key, account.secret)

    async def fire():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver", auth=auth) as client:
            assert (await client.patch(url, json={"doomed": 1, "kept": 1})).status_code == 200
            answers = await asyncio.gather(
                *(client.patch(url, json={f"k{n}": n, "n": {"from": n}}) for n in range(200)),
                client.patch(url, json={"doomed": None}),
            )
            assert [r.status_code for r in answers] == [200] * 201
            return (await client.get(url)).json()

    profile = asyncio.run(fire())
    assert {f"k{n}" for n in range(200)} <= set(profile)
    assert "doomed" not in profile and profile["kept"] == 1
    assert set(profile["n"]) == {"from"}  # a nested object is replaced whole, never merged


def test_patch_replaces_nested_values_whole_and_keeps_key_order(api):
    api.patch(path("u1"), json={"a": {"x": 1, "y": 2}, "b": [1, 2], "c": 1})
    api.patch(path("u1"), json={"a": {"z": {"deep": None}}, "b": [3], "d": None, "e": 0})
    profile = api.get(path("u1")).json()
    assert profile == {"a": {"z": {"deep": None}}, "b": [3], "c": 1, "e": 0}


def test_a_user_id_over_the_limit_is_a_400(api):
    too_long = "ü" * 513  # 1,026 bytes
    assert_problem(api.patch(path(too_long), json={"a": 1}), 400, "`user_id`")
    assert_problem(api.get(path(too_long)), 400, "`user_id`")
    assert api.patch(path("ü" * 512), json={"a": 1}).status_code == 200


# --- hostile input ---


@pytest.mark.parametrize("depth", [65, 254, 255, 600, 1022])
def test_patch_refuses_values_nested_too_deep_naming_the_field(api, depth):
    body = '{"ok": 1, "deep": %s}' % nested_json(depth)
    response = api.patch(path("u1"), content=body, headers={"Content-Type": "application/json"})
    assert_problem(response, 400, "`deep`")
    assert_problem(api.get(path("u1")), 404)


def test_patch_accepts_values_nested_up_to_the_limit(api):
    assert api.patch(path("u1"), json={"deep": nested(64)}).status_code == 200
    assert api.get(path("u1")).json() == {"deep": nested(64)}


def test_patch_refuses_too_many_keys_counted_at_every_depth(settings, db, account):
    from opencues.web.app import create_app
    from tests.in_process_client import InProcessClient

    small = settings.model_copy(update={"max_attribute_keys": 5})
    with InProcessClient(create_app(small, db)) as client:
        api = AccountClient(client, account)
        assert api.patch(path("u1"), json={"a": 1, "b": {"c": 1, "d": [{"e": 1}]}}).status_code == 200
        assert_problem(api.patch(path("u1"), json={"a": 1, "b": {"c": 1, "d": [{"e": 1, "f": 2}]}}), 400, "more than 5")
    assert profiles.get_profile(db, account.account_id, "u1") == {"a": 1, "b": {"c": 1, "d": [{"e": 1}]}}


@pytest.mark.parametrize(
    "body, field",
    [({"k": "a\x00"}, "`k`"), ({"k": {"x": ["\x00"]}}, "`k.x[0]`"), ({"k\x00": 1}, "field names"), ({"k": {"\x00": 1}}, "`k`")],
)
def test_patch_refuses_nul_anywhere_naming_the_field(api, body, field):
    assert_problem(api.patch(path("u1"), json=body), 400, field)
    assert_problem(api.get(path("u1")), 404)


def test_library_update_applies_the_same_rules(db, account):
    from opencues.errors import ApiError

    for changes in ({"deep": nested(300)}, {f"k{i}": i for i in range(1001)}, {"k": ["\x00"]}):
        with pytest.raises(ApiError) as raised:
            profiles.update_profile(db, account.account_id, "u1", changes)
        assert raised.value.status == 400
