"""The object store interface: where archives, file inputs/outputs and logs live.

Two implementations sit behind it, a local directory (the embedded default) and
an S3-compatible store such as MinIO. Callers never learn which one they use.
Keys are '/'-separated relative paths of letters, digits and `._-`; a key never
starts with '/' nor holds '..'.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol, runtime_checkable

from stepforge.services.core.limits import CHUNK_BYTES


class ObjectStoreError(Exception):
    """Root of the errors an object store raises."""


class ObjectNotFoundError(ObjectStoreError):
    """The key holds no object."""


class ObjectStoreUnavailableError(ObjectStoreError):
    """The store cannot be reached; the message names the store."""


class InvalidKeyError(ObjectStoreError, ValueError):
    """The key breaks the key rules above."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    modified_time: datetime


class ObjectStore(Protocol):
    """Every write is atomic: an object is there whole, or not at all."""

    def describe(self) -> str:
        """Names the store for messages and logs, such as `local:/data/objects`."""
        ...

    def put_file(self, key: str, path: Path) -> None:
        """Stores the content of the local file `path` under `key`, replacing any."""
        ...

    def move_file(self, key: str, path: Path) -> None:
        """Stores the local file `path` under `key` and takes it over: the
        caller must not use `path` again. A store on the same file system
        renames it into place instead of copying it."""
        ...

    def put_stream(self, key: str, chunks: Iterable[bytes]) -> int:
        """Stores the concatenated chunks under `key`; returns the byte count.

        Memory use does not grow with the total size.
        """
        ...

    def iter_chunks(self, key: str, chunk_size: int = CHUNK_BYTES) -> Iterator[bytes]:
        """Yields the object's content in chunks of at most `chunk_size` bytes."""
        ...

    def download_file(self, key: str, path: Path) -> None:
        """Writes the object's content to the local file `path`, atomically."""
        ...

    def stat(self, key: str) -> ObjectInfo:
        """Returns the object's size and time; raises ObjectNotFoundError."""
        ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None:
        """Removes the object; a missing one is not an error."""
        ...

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Yields every object whose key starts with `prefix`, in key order."""
        ...


@runtime_checkable
class PresigningStore(Protocol):
    """A store that hands out URLs to read or write one object without
    credentials, for pods that must hold none (an S3-compatible store)."""

    def presigned_get_url(self, key: str, expires: timedelta) -> str: ...

    def presigned_put_url(self, key: str, expires: timedelta) -> str: ...
