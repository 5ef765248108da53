"""Fixtures shared by the whole test suite."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from support.s3_server import S3Endpoint, running_s3_server
from support.sdk_only import make_sdk_only_python

from stepforge.services.core.object_store import (
    LocalObjectStore,
    ObjectStore,
    ObjectStoreError,
    S3ObjectStore,
)

# Object stores: one S3 server for the session, a fresh empty store per test.


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Endpoint]:
    with running_s3_server() as server:
        yield server


@pytest.fixture(params=["local", "s3"])
def object_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[ObjectStore]:
    if request.param == "local":
        yield LocalObjectStore(tmp_path / "objects")
        return
    with fresh_s3_store(request.getfixturevalue("s3_server")) as store:
        yield store


@pytest.fixture
def s3_store(s3_server: S3Endpoint) -> Iterator[S3ObjectStore]:
    """An empty bucket of its own on the session's S3 server."""
    with fresh_s3_store(s3_server) as store:
        yield store


@contextmanager
def fresh_s3_store(server: S3Endpoint) -> Iterator[S3ObjectStore]:
    store = S3ObjectStore(
        server.endpoint,
        server.access_key,
        server.secret_key,
        f"test-{uuid.uuid4().hex}",
        region="us-east-1",
    )
    yield store
    # The server keeps objects in memory for the whole session; free them, but
    # a test that broke the store must report its own failure, not this one.
    try:
        for info in store.list():
            store.delete(info.key)
    except ObjectStoreError:
        pass


@pytest.fixture(scope="session")
def sdk_only_python(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A Python with only grpcio and protobuf, and a folder with the SDK's
    source: made once, for every test that proves the SDK needs no more."""
    return make_sdk_only_python(tmp_path_factory.mktemp("sdk-only"))
