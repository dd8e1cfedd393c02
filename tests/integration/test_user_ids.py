"""User ids over real HTTP: ids with ``%XX`` sequences, slashes, controls and non-ASCII letters
reach a real server (uvicorn's own decoding of the path) intact, and read back. The unit tests
send the same kinds of ids in process (tests/unit/test_ids.py)."""

from __future__ import annotations

from urllib.parse import quote

from opencues import ids
from tests.unit.test_ids import ACCEPTED, PERCENT_IDS, random_ids


def test_every_accepted_id_round_trips_through_a_real_server(live_server, backend):
    server = live_server(backend=backend)
    account = server.create_account()
    auth = server.create_key(account)
    base = f"/v2/accounts/{account}/users"
    tricky = ACCEPTED + PERCENT_IDS + random_ids(40, seed=9)
    accepted = [user_id for user_id in dict.fromkeys(tricky) if ids.user_id_problem(user_id) is None]
    event = {"name": "tracked", "timestamp": "2021-01-01T00:00:00Z"}
    with server.client(auth=auth) as client:
        for user_id in accepted:
            path = f"{base}/{quote(user_id, safe='')}"
            assert client.post(f"{path}/events", json=event).status_code == 200, user_id
            assert client.patch(f"{path}/profile", json={"id": user_id}).status_code == 200, user_id
        for user_id in accepted:
            path = f"{base}/{quote(user_id, safe='')}"
            history = client.get(f"{path}/events").json()
            assert [e["user_id"] for e in history] == [user_id], user_id
            assert client.get(f"{path}/profile").json() == {"id": user_id}, user_id
