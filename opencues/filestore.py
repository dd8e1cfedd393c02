"""Where uploaded payloads and export files live, behind a small interface.

``LocalFileStore`` keeps them under ``<data dir>/files``. Writes are durable before they are
acknowledged (file and directory fsync'd), because an import's 202 promises the payload survives
a crash. ``S3FileStore`` (``OPENCUES_FILE_STORE=s3://bucket/prefix``) keeps them in an S3-compatible
object store instead, so servers and workers on different machines share nothing but the database
and the bucket; it streams both ways (multipart upload, ranged reads) and an object exists only
once its upload has completed, which is what makes it durable.
"""

from __future__ import annotations

import io
import os
import secrets
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator, Protocol

EXPORT_FILES = "exports"  # the prefix of every export file; files older than the link lifetime are swept (workers)


class FileStore(Protocol):
    def writer(self, key: str) -> "contextmanager[BinaryIO]":
        """A binary file to write ``key``; on clean exit it is durably stored, on error removed."""

    def open(self, key: str) -> BinaryIO:
        """Read ``key`` (seekable)."""

    def size(self, key: str) -> int: ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None:
        """Remove ``key``; removing a missing key is not an error."""

    def remove_older_than(self, prefix: str, age_seconds: float) -> int:
        """Remove every file under ``prefix/`` last written more than ``age_seconds`` ago (an
        object store's lifecycle rule does the same); returns how many were removed."""

    def remove_all(self, prefix: str) -> int:
        """Remove every file under ``prefix/``; returns how many were removed."""


def new_key(prefix: str, suffix: str = "") -> str:
    """A unique, unguessable key such as ``uploads/3f9c…e1.ndjson``."""
    return f"{prefix}/{secrets.token_hex(16)}{suffix}"


class LocalFileStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError(f"file key escapes the store: {key!r}")
        return path

    @contextmanager
    def writer(self, key: str) -> Iterator[BinaryIO]:
        final = self.path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        partial = final.with_name(final.name + ".partial")
        handle = open(partial, "wb")
        try:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
            os.replace(partial, final)
            _fsync_dir(final.parent)
        except BaseException:
            handle.close()
            partial.unlink(missing_ok=True)
            raise

    def open(self, key: str) -> BinaryIO:
        return open(self.path(key), "rb")

    def size(self, key: str) -> int:
        return self.path(key).stat().st_size

    def exists(self, key: str) -> bool:
        return self.path(key).exists()

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def remove_older_than(self, prefix: str, age_seconds: float) -> int:
        cutoff = time.time() - age_seconds
        return self._remove(prefix, lambda path: path.stat().st_mtime < cutoff)

    def remove_all(self, prefix: str) -> int:
        return self._remove(prefix, lambda path: True)

    def _remove(self, prefix: str, wanted) -> int:
        removed = 0
        for path in self.path(prefix).rglob("*"):
            try:
                if path.is_file() and wanted(path):
                    path.unlink()
                    removed += 1
            except FileNotFoundError:  # another worker's sweep got there first
                continue
        return removed


class S3FileStore:
    """Files as objects under ``prefix/`` of an S3 bucket (AWS, MinIO, Ceph, moto…), through boto3.

    Credentials and region come from boto3's usual sources (``AWS_ACCESS_KEY_ID``,
    ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``, profiles, instance roles). A write is a
    multipart upload of ``part_bytes`` parts (one ``PutObject`` when the whole file fits in one
    part), so at most two parts are held in memory; the object appears only when
    ``CompleteMultipartUpload`` succeeds, and a failed write aborts the upload, leaving nothing.
    """

    def __init__(self, bucket: str, prefix: str = "", *, endpoint_url: str | None = None,
                 part_bytes: int = 8 * 1024 * 1024, client=None):  # fmt: skip
        if client is None:
            try:
                import boto3
                from botocore.config import Config
            except ImportError:  # pragma: no cover - depends on the installed extras
                raise RuntimeError("an s3:// file store needs boto3: pip install 'opencues[s3]'") from None
            config = Config(signature_version="s3v4", retries={"max_attempts": 5, "mode": "standard"})
            client = boto3.client("s3", endpoint_url=endpoint_url or None, config=config)
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.part_bytes = part_bytes

    def object_key(self, key: str) -> str:
        if key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"file key escapes the store: {key!r}")
        return f"{self.prefix}/{key}" if self.prefix else key

    @contextmanager
    def writer(self, key: str) -> Iterator[BinaryIO]:
        upload = _MultipartWriter(self.client, self.bucket, self.object_key(key), self.part_bytes)
        try:
            yield upload
            upload.finish()
        except BaseException:
            upload.abort()
            raise

    def open(self, key: str) -> BinaryIO:
        return io.BufferedReader(_ObjectReader(self.client, self.bucket, self.object_key(key)), buffer_size=256 * 1024)

    def size(self, key: str) -> int:
        return self.client.head_object(Bucket=self.bucket, Key=self.object_key(key))["ContentLength"]

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self.object_key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.object_key(key))

    def remove_older_than(self, prefix: str, age_seconds: float) -> int:
        cutoff = time.time() - age_seconds
        return self._remove(prefix, lambda item: item["LastModified"].timestamp() < cutoff)

    def remove_all(self, prefix: str) -> int:
        return self._remove(prefix, lambda item: True)

    def _remove(self, prefix: str, wanted) -> int:
        removed = 0
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.object_key(prefix) + "/")
        for page in pages:
            old = [{"Key": item["Key"]} for item in page.get("Contents", []) if wanted(item)]
            if old:  # a page holds at most 1000 keys, DeleteObjects' limit
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": old, "Quiet": True})
                removed += len(old)
        return removed

    def presigned_url(self, key: str, filename: str, ttl_seconds: int) -> str:
        """A direct download link from the object store (SigV4 links live at most 7 days)."""
        params = {"Bucket": self.bucket, "Key": self.object_key(key),
                  "ResponseContentDisposition": f'attachment; filename="{filename}"'}  # fmt: skip
        if key.endswith(".gz"):  # saved under its plain name, so gzip is the transfer encoding
            params["ResponseContentEncoding"] = "gzip"
        return self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=min(int(ttl_seconds), PRESIGNED_MAX_SECONDS))


PRESIGNED_MAX_SECONDS = 7 * 86_400  # the SigV4 ceiling


class _MultipartWriter(io.BufferedIOBase):
    """A write-only file that uploads itself part by part; the previous part uploads in a
    background thread while the next one fills, so writing rarely waits on the network."""

    def __init__(self, client, bucket: str, key: str, part_bytes: int):
        super().__init__()
        self.client, self.bucket, self.key, self.part_bytes = client, bucket, key, part_bytes
        self.buffer = bytearray()
        self.upload_id: str | None = None
        self.parts: list[dict] = []
        self.pending: Future | None = None
        self.executor: ThreadPoolExecutor | None = None

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.buffer += data
        if len(self.buffer) >= self.part_bytes:
            self._send_part(bytes(self.buffer))
            self.buffer.clear()
        return len(data)

    def _send_part(self, body: bytes) -> None:
        """Queue a part; only waits while the previous part is still uploading (a caller on an
        event loop, like the upload intake, blocks for no network round trip otherwise)."""
        if self.executor is None:
            self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="s3-part")
        self._wait_pending()
        number = len(self.parts) + 1
        self.pending = self.executor.submit(self._upload_part, number, body)

    def _upload_part(self, number: int, body: bytes) -> None:
        if self.upload_id is None:  # in the background thread too, like every request of the upload
            self.upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=self.key)["UploadId"]
        answer = self.client.upload_part(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, PartNumber=number, Body=body)
        self.parts.append({"PartNumber": number, "ETag": answer["ETag"]})

    def _wait_pending(self) -> None:
        if self.pending is not None:
            pending, self.pending = self.pending, None
            pending.result()  # raises the part's upload error

    def finish(self) -> None:
        """Upload what is left and complete: only now does the object exist."""
        if self.executor is None:
            self.client.put_object(Bucket=self.bucket, Key=self.key, Body=bytes(self.buffer))
        else:
            if self.buffer:
                self._send_part(bytes(self.buffer))
            self._wait_pending()
            self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, MultipartUpload={"Parts": self.parts}
            )
            self.executor.shutdown()
        self.buffer = bytearray()
        self.close()

    def abort(self) -> None:
        if self.executor is not None:
            try:
                self._wait_pending()
            except Exception:  # noqa: BLE001 - aborting anyway
                pass
            self.executor.shutdown()
        if self.upload_id is not None:
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id)
            except Exception:  # noqa: BLE001 - a bucket lifecycle rule cleans up stray uploads
                pass
        self.buffer = bytearray()
        self.close()


class _ObjectReader(io.RawIOBase):
    """A seekable read-only view of one object: a streamed GET from the current position,
    reopened with a ``Range`` after a seek."""

    def __init__(self, client, bucket: str, key: str):
        super().__init__()
        self.client, self.bucket, self.key = client, bucket, key
        head = client.head_object(Bucket=bucket, Key=key)  # a missing object fails here, like open()
        self.length = head["ContentLength"]
        self.position = 0
        self.body = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.position >= self.length:
            return 0
        if self.body is None:
            answer = self.client.get_object(Bucket=self.bucket, Key=self.key, Range=f"bytes={self.position}-")
            self.body = answer["Body"]
        data = self.body.read(len(buffer))
        buffer[: len(data)] = data
        self.position += len(data)
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        target = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.length}[whence] + offset
        if target != self.position:
            self._drop_body()
            self.position = max(0, target)
        return self.position

    def tell(self) -> int:
        return self.position

    def _drop_body(self) -> None:
        if self.body is not None:
            self.body.close()
            self.body = None

    def close(self) -> None:
        self._drop_body()
        super().close()


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_file_store(settings) -> LocalFileStore | S3FileStore:
    """The store ``settings.file_store`` names: ``s3://bucket/prefix``, or unset for ``<data dir>/files``."""
    location = settings.file_store
    if not location:
        return LocalFileStore(Path(settings.data_dir) / "files")
    if location.startswith("s3://"):
        bucket, _, prefix = location[len("s3://"):].partition("/")
        if not bucket:
            raise ValueError(f"OPENCUES_FILE_STORE {location!r} names no bucket: use s3://bucket/prefix")
        return S3FileStore(bucket, prefix, endpoint_url=settings.s3_endpoint_url,
                           part_bytes=settings.s3_part_mb * 1024 * 1024)  # fmt: skip
    raise ValueError(f"OPENCUES_FILE_STORE {location!r} is not supported: use s3://bucket/prefix, or leave it unset")
