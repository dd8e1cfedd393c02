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


def test_remove_all_takes_every_file_under_the_prefix_only(store):
    write(store, "exports/acct/old.csv", age_seconds=3600)
    write(store, "exports/acct/new.csv")
    write(store, "exports/acct2/other.csv")
    assert store.remove_all("exports/acct") == 2
    assert not store.exists("exports/acct/new.csv") and store.exists("exports/acct2/other.csv")
    assert store.remove_all("exports/acct") == 0 and store.remove_all("nothing-here") == 0


# --- S3FileStore, against a real S3-compatible server (moto) ---------------------------------

MiB = 1024 * 1024


@pytest.fixture
def s3(s3_server):
    """A fresh bucket and an ``S3FileStore`` on it (5 MiB parts, S3's minimum)."""
    from opencues.filestore import S3FileStore

    bucket = s3_server.new_bucket()
    store = S3FileStore(bucket, "pre/fix", endpoint_url=s3_server.endpoint_url, part_bytes=5 * MiB)
    return store


def uploads_in_progress(store) -> list:
    return store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", [])


def test_s3_a_written_object_is_read_back_and_deleted(s3):
    write(s3, "uploads/a.csv", b"user_id\nu1\n")
    assert s3.exists("uploads/a.csv") and s3.size("uploads/a.csv") == 11
    assert s3.client.head_object(Bucket=s3.bucket, Key="pre/fix/uploads/a.csv")["ContentLength"] == 11
    with s3.open("uploads/a.csv") as handle:
        assert handle.readline() == b"user_id\n"
        assert handle.read() == b"u1\n"
    s3.delete("uploads/a.csv")
    s3.delete("uploads/a.csv")  # a missing key is not an error
    assert not s3.exists("uploads/a.csv")


def test_s3_a_large_write_is_a_multipart_upload_that_appears_only_when_complete(s3):
    chunk = bytes(range(256)) * 256  # 64 KiB, as a request body arrives
    total = 0
    with s3.writer("uploads/big.ndjson") as handle:
        for _ in range(12 * MiB // len(chunk)):
            handle.write(memoryview(chunk))
            total += len(chunk)
            if total == 11 * MiB:
                # Two parts sent, the object does not exist yet: a crash now acknowledges nothing.
                assert not s3.exists("uploads/big.ndjson")
                assert len(uploads_in_progress(s3)) == 1
    head = s3.client.head_object(Bucket=s3.bucket, Key="pre/fix/uploads/big.ndjson")
    assert head["ContentLength"] == 12 * MiB
    assert head["ETag"].strip('"').endswith("-3")  # 5 + 5 + 2 MiB parts
    assert uploads_in_progress(s3) == []
    with s3.open("uploads/big.ndjson") as handle:
        data = handle.read()
    assert data == chunk * (12 * MiB // len(chunk))


def test_s3_a_failed_write_leaves_no_object_and_no_upload(s3):
    with pytest.raises(RuntimeError):
        with s3.writer("exports/x.csv") as handle:
            handle.write(b"x" * (6 * MiB))  # one part already uploaded
            raise RuntimeError("worker died")
    assert not s3.exists("exports/x.csv")
    assert uploads_in_progress(s3) == []
    with pytest.raises(RuntimeError):
        with s3.writer("exports/small.csv") as handle:
            handle.write(b"half")
            raise RuntimeError("worker died")
    assert not s3.exists("exports/small.csv")


def test_s3_reads_seek_with_ranges(s3):
    write(s3, "uploads/r.csv", b"0123456789")
    with s3.open("uploads/r.csv") as handle:
        assert handle.read(3) == b"012"
        handle.seek(7)
        assert handle.read() == b"789"
        handle.seek(-4, 2)
        assert handle.read(2) == b"67"
        assert handle.seekable()


def test_s3_sweep_removes_only_old_objects_under_the_prefix(s3):
    write(s3, "exports/acct/a.csv")
    write(s3, "exports/acct/b.csv")
    write(s3, "uploads/u.ndjson")
    write(s3, "exportsnot/c.csv")
    assert s3.remove_older_than("exports", 3600) == 0  # all just written
    assert s3.remove_older_than("exports", -60) == 2  # all "old"
    assert not s3.exists("exports/acct/a.csv") and not s3.exists("exports/acct/b.csv")
    assert s3.exists("uploads/u.ndjson") and s3.exists("exportsnot/c.csv")


def test_s3_remove_all_takes_every_object_under_the_prefix_only(s3):
    write(s3, "exports/acct/a.csv")
    write(s3, "exports/acct/b.csv")
    write(s3, "exports/acct2/c.csv")
    assert s3.remove_all("exports/acct") == 2
    assert not s3.exists("exports/acct/a.csv") and s3.exists("exports/acct2/c.csv")


def test_s3_keys_cannot_escape_the_prefix(s3):
    with pytest.raises(ValueError):
        s3.object_key("../outside")


def test_open_file_store_reads_the_setting(s3_server, tmp_path):
    from opencues.filestore import S3FileStore, open_file_store
    from opencues.settings import Settings

    local = open_file_store(Settings(data_dir=tmp_path))
    assert isinstance(local, LocalFileStore) and local.root == tmp_path / "files"
    bucket = s3_server.new_bucket()
    store = open_file_store(Settings(data_dir=tmp_path, file_store=f"s3://{bucket}/a/b", s3_endpoint_url=s3_server.endpoint_url))
    assert isinstance(store, S3FileStore) and (store.bucket, store.prefix) == (bucket, "a/b")
    write(store, "uploads/x.csv", b"hello")
    assert s3_server.client().get_object(Bucket=bucket, Key="a/b/uploads/x.csv")["Body"].read() == b"hello"
    for bad in ("s3:///nobucket", "ftp://elsewhere"):
        with pytest.raises(ValueError, match="OPENCUES_FILE_STORE"):
            open_file_store(Settings(data_dir=tmp_path, file_store=bad))


# --- the whole API over an S3 file store, on SQLite and PostgreSQL ---------------------------


@pytest.fixture
def settings(database_url, tmp_path, s3_server):
    from opencues.settings import Settings

    return Settings(data_dir=tmp_path / "data", database_url=database_url, job_workers=0, s3_part_mb=5,
                    file_store=f"s3://{s3_server.new_bucket()}/oc", s3_endpoint_url=s3_server.endpoint_url)  # fmt: skip


def drain(app) -> int:
    from opencues.worker import run_pending_jobs

    return run_pending_jobs(app.state.db, app.state.file_store, app.state.settings)


def completed(api, response) -> dict:
    assert response.status_code == 202, response.text
    job = api.get(f"jobs/{response.json()['job_id']}").json()
    assert job["status"] == "COMPLETED", job
    return job["events"][-1]["attributes"]


def bucket_keys(store) -> list[str]:
    listed = store.client.list_objects_v2(Bucket=store.bucket, Prefix=store.prefix + "/")
    return sorted(item["Key"][len(store.prefix) + 1 :] for item in listed.get("Contents", []))


def test_imports_exports_and_downloads_go_through_the_bucket(api, app, client, settings, s3_server):
    import gzip

    import orjson

    from opencues.filestore import S3FileStore

    store = app.state.file_store
    assert isinstance(store, S3FileStore)
    body = b"".join(orjson.dumps({"user_id": f"u{i % 3}", "name": "clicked", "timestamp": 1_628_640_000_000 + i}) + b"\n" for i in range(50))
    response = api.post("import/events", content=body, headers={"Content-Type": "application/ndjson"})
    assert response.status_code == 202
    # Acknowledged: the payload is in the bucket, nowhere on the local disk.
    [upload] = bucket_keys(store)
    assert upload.startswith("uploads/") and store.size(upload) == len(body)
    assert not (settings.data_dir / "files").exists()
    assert drain(app) == 1
    assert completed(api, response)["ingestions_completed"] == 50
    assert bucket_keys(store) == []  # the finished job's payload is removed
    uploaded = api.post("import/profiles", files={"file": ("p.csv", b"user_id,plan\nu1,pro\nu2,free\n", "text/csv")})
    drain(app)
    assert completed(api, uploaded)["ingestions_completed"] == 2

    export = api.post("export/events", json={"email": "a@example.com", "format": "json", "conditions": [], "start_time": 0, "compression": "gzip"})
    drain(app)
    link = completed(api, export)["download_url"]
    assert link.startswith("http://testserver/downloads/")
    [exported] = bucket_keys(store)
    assert exported.startswith("exports/acct1/") and exported.endswith(".ndjson.gz")
    assert len(gzip.decompress(store.open(exported).read()).splitlines()) == 50
    as_gzip = client.get(link, headers={"Accept-Encoding": "gzip"})
    assert as_gzip.status_code == 200 and as_gzip.headers["content-encoding"] == "gzip"
    assert len(as_gzip.content.splitlines()) == 50  # httpx undoes the transfer encoding
    plain = client.get(link, headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and len(plain.content.splitlines()) == 50

    segment = api.post("segments", json={"name": "s"}).json()["id"]
    api.post(f"segments/{segment}/add_user_ids", json={"user_ids": ["u1", "u2"]})
    drain(app)
    membership = api.post(f"segments/{segment}/segment_membership_export", json={"format": "csv", "property_names": ["plan"]})
    drain(app)
    download = client.get(completed(api, membership)["download_url"])
    assert download.status_code == 200 and download.text.splitlines() == ["user_id,plan", "u1,pro", "u2,free"]
    assert download.headers["content-length"] == str(len(download.content))

    # Expired links' files are swept from the bucket; then the link answers 404.
    from opencues.worker import Worker

    sweeper = Worker(app.state.db, store, settings.model_copy(update={"export_link_ttl_days": -1}))
    assert sweeper.remove_expired_exports() == 2
    assert bucket_keys(store) == []
    assert client.get(link).status_code == 404


def test_presigned_links_point_at_the_object_store(api, app, db, s3_server):
    import httpx
    import orjson

    from opencues.web.app import create_app

    presigning = app.state.settings.model_copy(update={"s3_presigned_links": True})
    app = create_app(presigning, db)
    from tests.in_process_client import InProcessClient

    with InProcessClient(app, base_url="http://testserver") as client:
        from tests.conftest import AccountClient

        api = AccountClient(client, api.creds)
        api.post("import/events", content=b'{"user_id":"u1","name":"e","timestamp":1628640000000}\n',
                 headers={"Content-Type": "application/ndjson"})  # fmt: skip
        drain(app)
        export = api.post("export/events", json={"email": "a@example.com", "format": "csv", "conditions": [], "start_time": 0})
        drain(app)
        attributes = completed(api, export)
    url = attributes["download_url"]
    assert url.startswith(s3_server.endpoint_url + "/") and "X-Amz-Signature=" in url
    fetched = httpx.get(url)
    assert fetched.status_code == 200 and fetched.text.splitlines()[1].startswith("e,")
    assert 'filename="events-acct1-' in fetched.headers["content-disposition"]
    with InProcessClient(app, base_url="http://testserver") as client:
        api = AccountClient(client, api.creds)
        export = api.post("export/events", json={"email": "a@example.com", "format": "json", "conditions": [],
                                                 "start_time": 0, "compression": "gzip"})  # fmt: skip
        drain(app)
        gzipped = httpx.get(completed(api, export)["download_url"])
    assert gzipped.headers["content-encoding"] == "gzip" and orjson.loads(gzipped.content)["name"] == "e"


def test_a_large_upload_is_complete_in_the_bucket_when_it_is_acknowledged(api, app):
    store = app.state.file_store
    line = b'{"user_id":"u1","name":"big","timestamp":1628640000000,"attributes":{"pad":"' + b"x" * 900 + b'"}}\n'
    body = line * (6 * MiB // len(line) + 1)  # more than one 5 MiB part
    response = api.post("import/events", files={"file": ("big.ndjson", body, "application/x-ndjson")})
    assert response.status_code == 202, response.text
    [upload] = bucket_keys(store)
    head = store.client.head_object(Bucket=store.bucket, Key=f"{store.prefix}/{upload}")
    # A completed multipart upload ("<md5>-<parts>"; the test client hands the body over in one chunk).
    assert head["ContentLength"] == len(body) and "-" in head["ETag"]
    assert uploads_in_progress(store) == []
