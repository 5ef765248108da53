"""The object store in an S3-compatible bucket, such as MinIO."""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO, cast

import certifi
import urllib3
from minio import Minio
from minio.error import InvalidResponseError, S3Error, ServerError

from stepforge.services.core.limits import CHUNK_BYTES
from stepforge.services.core.object_store.base import (
    ObjectInfo,
    ObjectNotFoundError,
    ObjectStoreError,
    ObjectStoreUnavailableError,
)
from stepforge.services.core.object_store.keys import (
    is_valid_key,
    validate_key,
    validate_prefix,
)
from stepforge.services.core.object_store.streams import (
    ChunkReader,
    check_chunk_size,
    write_file_atomically,
)

logger = logging.getLogger(__name__)

# An upload of unknown length is buffered one part at a time; S3 allows
# 10,000 parts, so 8 MiB parts cap one object at about 78 GiB.
PART_BYTES = 8 * 1024 * 1024

# An outage should fail a call within seconds; a read may wait longer because a
# store can be slow to assemble a large multipart upload.
CONNECT_TIMEOUT_S = 2.0
READ_TIMEOUT_S = 30.0
RETRIES = 2

_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NoSuchObject", "NotFound"})
_BUCKET_TAKEN_CODES = frozenset({"BucketAlreadyOwnedByYou", "BucketAlreadyExists"})
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_IP_ADDRESS = re.compile(r"\d+\.\d+\.\d+\.\d+")
_ENDPOINT = re.compile(r"[^/\s@?#]+")


class S3ObjectStore:
    """Keys are objects named `prefix + key` in `bucket`, created on first use."""

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        bucket: str,
        *,
        secure: bool = False,
        region: str | None = None,
        prefix: str = "",
    ) -> None:
        _check_endpoint(endpoint)
        if not access_key:
            raise ValueError("access_key: must not be empty")
        if not secret_key:
            raise ValueError("secret_key: must not be empty")
        _check_bucket(bucket)
        if region is not None and not region:
            raise ValueError("region: must not be empty when given")
        self._endpoint = endpoint
        self._bucket = bucket
        self._region = region
        self._prefix = _normalize_prefix(prefix)
        self._client = Minio(
            endpoint,
            access_key=access_key,
            secret_key=secret_key,
            secure=secure,
            region=region,
            http_client=_http_pool(),
        )
        self._bucket_ready = False
        self._bucket_lock = threading.Lock()

    @property
    def bucket(self) -> str:
        return self._bucket

    @property
    def endpoint(self) -> str:
        return self._endpoint

    def describe(self) -> str:
        place = f"{self._bucket}/{self._prefix}" if self._prefix else self._bucket
        return f"s3://{place}@{self._endpoint}"

    def put_file(self, key: str, path: Path) -> None:
        validate_key(key)
        with open(path, "rb") as source:
            self.put_stream(key, iter(lambda: source.read(CHUNK_BYTES), b""))

    def move_file(self, key: str, path: Path) -> None:
        self.put_file(key, path)
        Path(path).unlink(missing_ok=True)

    def put_stream(self, key: str, chunks: Iterable[bytes]) -> int:
        name = self._name(key)
        source = _ChunkSource(chunks)
        with self._errors(key, source):
            self._ensure_bucket()
            # One part in flight at a time keeps memory to a few parts' worth;
            # the client only ever calls read() on the source.
            self._client.put_object(
                self._bucket,
                name,
                cast(BinaryIO, source),
                length=-1,
                part_size=PART_BYTES,
                num_parallel_uploads=1,
            )
        logger.debug("stored %s (%d bytes) in %s", key, source.size, self.describe())
        return source.size

    def iter_chunks(self, key: str, chunk_size: int = CHUNK_BYTES) -> Iterator[bytes]:
        return self._open(key, chunk_size)

    def presigned_get_url(self, key: str, expires: timedelta) -> str:
        """A URL that reads `key` without credentials until `expires` passes."""
        name = self._name(key)
        with self._errors(key):
            self._ensure_bucket()
            return str(
                self._client.presigned_get_object(self._bucket, name, expires=expires)
            )

    def presigned_put_url(self, key: str, expires: timedelta) -> str:
        """A URL that one HTTP PUT stores `key` through, without credentials,
        until `expires` passes."""
        name = self._name(key)
        with self._errors(key):
            self._ensure_bucket()
            return str(
                self._client.presigned_put_object(self._bucket, name, expires=expires)
            )

    def download_file(self, key: str, path: Path) -> None:
        chunks = self._open(key, CHUNK_BYTES)
        try:
            write_file_atomically(Path(path), chunks)
        finally:
            chunks.close()

    def stat(self, key: str) -> ObjectInfo:
        name = self._name(key)
        with self._errors(key):
            self._ensure_bucket()
            found = self._client.stat_object(self._bucket, name)
        if found.size is None or found.last_modified is None:
            raise ObjectStoreError(
                f"{self.describe()}: the store described key {key!r} without "
                "size or modification time"
            )
        return ObjectInfo(key=key, size=found.size, modified_time=found.last_modified)

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except ObjectNotFoundError:
            return False
        return True

    def delete(self, key: str) -> None:
        name = self._name(key)
        try:
            with self._errors(key):
                self._ensure_bucket()
                self._client.remove_object(self._bucket, name)
        except ObjectNotFoundError:
            return

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return self._list(validate_prefix(prefix))

    def _list(self, prefix: str) -> Iterator[ObjectInfo]:
        with self._errors():
            self._ensure_bucket()
            found = self._client.list_objects(
                self._bucket, prefix=self._prefix + prefix, recursive=True
            )
            for item in found:
                name = item.object_name or ""
                key = name[len(self._prefix) :]
                if item.is_dir or not is_valid_key(key):
                    # Foreign objects (console folder markers, odd names) are
                    # not keys of this store.
                    continue
                if item.size is None or item.last_modified is None:
                    continue
                yield ObjectInfo(
                    key=key, size=item.size, modified_time=item.last_modified
                )

    def _open(self, key: str, chunk_size: int) -> ChunkReader:
        name = self._name(key)
        check_chunk_size(chunk_size)
        with self._errors(key):
            self._ensure_bucket()
            response = self._client.get_object(self._bucket, name)

        def read(size: int) -> bytes:
            with self._errors(key):
                return response.read(size)

        def close() -> None:
            response.close()
            response.release_conn()

        return ChunkReader(read, close, chunk_size)

    def _ensure_bucket(self) -> None:
        if self._bucket_ready:
            return
        with self._bucket_lock:
            if self._bucket_ready:
                return
            if not self._client.bucket_exists(self._bucket):
                try:
                    self._client.make_bucket(self._bucket, location=self._region)
                except S3Error as exc:
                    # Another process created it first; that is what we wanted,
                    # if the bucket is ours to use.
                    if exc.code not in _BUCKET_TAKEN_CODES:
                        raise
                    if not self._client.bucket_exists(self._bucket):
                        raise
                logger.info("created bucket %s at %s", self._bucket, self._endpoint)
            self._bucket_ready = True

    @contextmanager
    def _errors(
        self, key: str | None = None, source: _ChunkSource | None = None
    ) -> Iterator[None]:
        """Turns client and network failures into the store's errors."""
        try:
            yield
        except ObjectStoreError:
            raise
        except Exception as exc:
            if source is not None and exc is source.error:
                raise
            mapped = self._translate(exc, key)
            if mapped is None:
                raise
            raise mapped from exc

    def _translate(self, exc: Exception, key: str | None) -> ObjectStoreError | None:
        where = self.describe()
        if isinstance(exc, S3Error):
            if exc.code in _NOT_FOUND_CODES and key is not None:
                return ObjectNotFoundError(f"{where}: no object at key {key!r}")
            if exc.code == "NoSuchBucket":
                self._bucket_ready = False
                return ObjectStoreUnavailableError(
                    f"{where}: the bucket {self._bucket!r} does not exist"
                )
            return ObjectStoreError(
                f"{where}: the store refused the request: {exc.code}: {exc.message}"
            )
        if isinstance(exc, ServerError):
            return ObjectStoreUnavailableError(
                f"{where}: the store failed with HTTP status {exc.status_code}"
            )
        if isinstance(exc, InvalidResponseError):
            return ObjectStoreUnavailableError(
                f"{where}: the endpoint did not answer as an S3 store: {exc}"
            )
        if isinstance(exc, urllib3.exceptions.MaxRetryError):
            return ObjectStoreUnavailableError(
                f"{where}: cannot reach the store: {exc.reason}"
            )
        if isinstance(exc, (urllib3.exceptions.HTTPError, OSError)):
            return ObjectStoreUnavailableError(
                f"{where}: cannot reach the store: {exc}"
            )
        return None

    def _name(self, key: str) -> str:
        return self._prefix + validate_key(key)


class _ChunkSource:
    """A file-like view of a chunk iterator, for a client that reads whole parts.

    Each read returns the full size asked for (short only at the end), so the
    client never grows a part by many small appends.
    """

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._pending = memoryview(b"")
        self.size = 0
        self.error: BaseException | None = None

    def read(self, size: int = -1) -> bytes:
        pieces: list[bytes | memoryview] = []
        wanted = size
        while wanted != 0:
            if not self._pending:
                try:
                    chunk = next(self._chunks)
                except StopIteration:
                    break
                except BaseException as exc:
                    self.error = exc
                    raise
                self._pending = memoryview(chunk).cast("B")
                continue
            take = len(self._pending) if wanted < 0 else min(wanted, len(self._pending))
            pieces.append(self._pending[:take])
            self._pending = self._pending[take:]
            if wanted > 0:
                wanted -= take
        data = b"".join(pieces)
        self.size += len(data)
        return data


def _http_pool() -> urllib3.PoolManager:
    return urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT_S, read=READ_TIMEOUT_S),
        retries=urllib3.Retry(
            total=RETRIES,
            backoff_factor=0.2,
            status_forcelist=(500, 502, 503, 504),
        ),
        maxsize=10,
        cert_reqs="CERT_REQUIRED",
        ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
    )


def _check_endpoint(endpoint: str) -> None:
    if not isinstance(endpoint, str) or not _ENDPOINT.fullmatch(endpoint):
        raise ValueError(
            f"endpoint {endpoint!r}: must be host or host:port, without scheme, "
            "credentials or path"
        )


def _check_bucket(bucket: str) -> None:
    if (
        not isinstance(bucket, str)
        or not _BUCKET_NAME.fullmatch(bucket)
        or ".." in bucket
        or _IP_ADDRESS.fullmatch(bucket)
    ):
        raise ValueError(
            f"bucket {bucket!r}: must be 3 to 63 lowercase letters, digits, '.' or "
            "'-', start and end with a letter or digit, and not look like an IP "
            "address"
        )


def _normalize_prefix(prefix: str) -> str:
    validate_prefix(prefix)
    if prefix and not prefix.endswith("/"):
        return prefix + "/"
    return prefix
