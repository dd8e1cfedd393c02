import os
import time

import pytest

from opencues.filestore import LocalFileStore


@pytest.fixture
def store(tmp_path):
    return LocalFileStore(tmp_path / "files")


def write(store, key, data=b"x", age_seconds=0):
    with store.writer(key) as handle:
        handle.write(data)
    if age_seconds:
        then = time.time() - age_seconds
        os.utime(store.path(key), (then, then))


def test_a_written_file_is_read_back_and_deleted(store):
    write(store, "uploads/a.csv", b"user_id\nu1\n")
    assert store.exists("uploads/a.csv") and store.size("uploads/a.csv") == 11
    with store.open("uploads/a.csv") as handle:
        assert handle.read() == b"user_id\nu1\n"
    store.delete("uploads/a.csv")
    store.delete("uploads/a.csv")  # a missing key is not an error
    assert not store.exists("uploads/a.csv")


def test_a_failed_write_leaves_nothing(store):
    with pytest.raises(RuntimeError):
        with store.writer("exports/x.csv") as handle:
            handle.write(b"half")
            raise RuntimeError("disk gone")
    assert not store.exists("exports/x.csv")
    assert list(store.path("exports").iterdir()) == []


def test_keys_cannot_escape_the_store(store):
    with pytest.raises(ValueError):
        store.path("../outside")


def test_only_old_files_under_the_prefix_are_removed(store):
    write(store, "exports/acct/old.csv", age_seconds=3600)
    write(store, "exports/acct/new.csv")
    write(store, "uploads/old.ndjson", age_seconds=3600)
    assert store.remove_older_than("exports", 600) == 1
    assert not store.exists("exports/acct/old.csv")
    assert store.exists("exports/acct/new.csv") and store.exists("uploads/old.ndjson")
    assert store.remove_older_than("exports", 600) == 0
    assert store.remove_older_than("nothing-here", 600) == 0
