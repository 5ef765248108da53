"""Presigned URLs: how pods without credentials read and write one object."""

from __future__ import annotations

import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest

from stepforge.services.core.object_store import (
    LocalObjectStore,
    PresigningStore,
    S3ObjectStore,
)


def put(url: str, body: bytes) -> int:
    request = urllib.request.Request(
        url,
        data=body,
        method="PUT",
        headers={"Content-Type": "application/octet-stream"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return int(response.status)


def test_a_presigned_put_stores_what_the_store_then_reads(
    s3_store: S3ObjectStore,
) -> None:
    url = s3_store.presigned_put_url("runs/a/out.bin", timedelta(minutes=5))

    assert put(url, b"written by a pod") == 200
    assert b"".join(s3_store.iter_chunks("runs/a/out.bin")) == b"written by a pod"


def test_a_presigned_get_reads_the_object_without_credentials(
    s3_store: S3ObjectStore, tmp_path: Path
) -> None:
    source = tmp_path / "in.bin"
    source.write_bytes(b"\x00input bytes\xff")
    s3_store.put_file("runs/a/in.bin", source)

    url = s3_store.presigned_get_url("runs/a/in.bin", timedelta(minutes=5))

    assert "X-Amz-Signature=" in url
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == b"\x00input bytes\xff"


def test_presigned_urls_refuse_invalid_keys(s3_store: S3ObjectStore) -> None:
    with pytest.raises(ValueError, match="key"):
        s3_store.presigned_get_url("../escape", timedelta(minutes=1))


def test_only_the_s3_store_presigns(s3_store: S3ObjectStore, tmp_path: Path) -> None:
    assert isinstance(s3_store, PresigningStore)
    assert not isinstance(LocalObjectStore(tmp_path), PresigningStore)
