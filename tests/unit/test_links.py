"""Signed download links: bound to one file, expiring, unforgeable; the secret persists."""

import os
import stat
import threading

import pytest

from opencues import links
from opencues.errors import ApiError
from opencues.settings import Settings

SECRET = b"s3cret"


def test_a_signed_token_verifies_to_its_file_until_it_expires():
    token, expires_at = links.sign(SECRET, "exports/a/1.csv", "events.csv", 3600, now=1000)
    assert expires_at == 4600
    link = links.verify(SECRET, token, now=4599)
    assert (link.key, link.filename, link.expires_at) == ("exports/a/1.csv", "events.csv", 4600)
    with pytest.raises(ApiError) as info:
        links.verify(SECRET, token, now=4600)
    assert info.value.status == 410


def test_tokens_are_unforgeable():
    token, _ = links.sign(SECRET, "exports/a/1.csv", "events.csv", 3600)
    payload, signature = token.split(".")
    other, _ = links.sign(SECRET, "exports/a/2.csv", "events.csv", 3600)
    forged = [
        other.split(".")[0] + "." + signature,  # another file's payload with this signature
        payload + "." + signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB"),
        payload + ".",
        payload,
        "",
        "not-a-token",
        links.sign(b"other secret", "exports/a/1.csv", "events.csv", 3600)[0],
    ]
    for bad in forged:
        with pytest.raises(ApiError) as info:
            links.verify(SECRET, bad)
        assert info.value.status == 403, bad


def test_tokens_differ_per_file_and_do_not_reveal_the_secret():
    a, _ = links.sign(SECRET, "exports/a/1.csv", "events.csv", 3600, now=0)
    b, _ = links.sign(SECRET, "exports/a/2.csv", "events.csv", 3600, now=0)
    assert a != b and SECRET.decode() not in a


def test_configured_secret_wins(tmp_path):
    settings = Settings(data_dir=tmp_path, secret_key="configured")
    assert links.server_secret(settings) == b"configured"
    assert not (tmp_path / links.SECRET_FILE).exists()


def test_generated_secret_is_private_and_survives_restarts(tmp_path):
    settings = Settings(data_dir=tmp_path / "data")
    first = links.server_secret(settings)
    path = tmp_path / "data" / links.SECRET_FILE
    assert len(first) >= 48
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert links.server_secret(Settings(data_dir=tmp_path / "data")) == first
    assert [p.name for p in path.parent.iterdir()] == [links.SECRET_FILE]  # no temporary files left


def test_concurrent_first_use_agrees_on_one_secret(tmp_path):
    settings = Settings(data_dir=tmp_path)
    results, barrier = [], threading.Barrier(8)

    def take():
        barrier.wait()
        results.append(links.server_secret(settings))

    threads = [threading.Thread(target=take) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1 and len(results) == 8
