"""Where uploaded payloads and export files live, behind a small interface.

``LocalFileStore`` keeps them under ``<data dir>/files``. Writes are durable before they are
acknowledged (file and directory fsync'd), because an import's 202 promises the payload survives
a crash. An object store (S3 and the like) can replace it by implementing ``FileStore``.
"""

from __future__ import annotations

import os
import secrets
import time
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator, Protocol


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
        removed = 0
        for path in self.path(prefix).rglob("*"):
            try:
                if path.is_file() and path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:  # another worker's sweep got there first
                continue
        return removed


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_file_store(settings) -> LocalFileStore:
    return LocalFileStore(Path(settings.data_dir) / "files")
