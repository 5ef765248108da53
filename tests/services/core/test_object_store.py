"""Both object stores, held to the same contract through the `object_store` fixture."""

from __future__ import annotations

import hashlib
import os
import tracemalloc
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import boto3  # type: ignore[import-untyped]
import pytest
from support.s3_server import S3Endpoint, free_port

from stepforge.services.core.object_store import (
    ACCESS_KEY_ENV,
    SECRET_KEY_ENV,
    InvalidKeyError,
    LocalObjectStore,
    ObjectNotFoundError,
    ObjectStore,
    ObjectStoreError,
    ObjectStoreUnavailableError,
    S3ObjectStore,
    open_object_store,
)
from stepforge.services.core.object_store.s3 import PART_BYTES
from stepforge.services.core.object_store.streams import write_file_atomically

MiB = 1024 * 1024


class SourceBroke(Exception):
    """Raised by a test's chunk iterator to stand for a failing upload source."""


def pattern(size: int, seed: int = 0) -> bytes:
    """Bytes that differ along their length, so misplaced chunks show."""
    block = hashlib.sha256(str(seed).encode()).digest() * 64
    whole, rest = divmod(size, len(block))
    return block * whole + block[:rest]


def read_all(store: ObjectStore, key: str) -> bytes:
    return b"".join(store.iter_chunks(key))


def keys_of(store: ObjectStore, prefix: str = "") -> list[str]:
    return [info.key for info in store.list(prefix)]


def failing_chunks(good_bytes: int) -> Iterator[bytes]:
    sent = 0
    while sent < good_bytes:
        chunk = pattern(min(MiB, good_bytes - sent), seed=sent)
        sent += len(chunk)
        yield chunk
    raise SourceBroke("the source broke midway")


def test_put_file_round_trips_through_iter_chunks(
    object_store: ObjectStore, tmp_path: Path
) -> None:
    data = pattern(3 * MiB + 17)
    source = tmp_path / "source.bin"
    source.write_bytes(data)

    object_store.put_file("steps/one/archive.tar.gz", source)

    assert read_all(object_store, "steps/one/archive.tar.gz") == data


def test_move_file_stores_the_content_and_takes_the_file(
    object_store: ObjectStore, tmp_path: Path
) -> None:
    data = pattern(2 * MiB + 5)
    source = tmp_path / "output.bin"
    source.write_bytes(data)
    object_store.put_file("outputs/kept", source)

    object_store.move_file("outputs/moved", source)

    assert read_all(object_store, "outputs/moved") == data
    assert read_all(object_store, "outputs/kept") == data
    assert not source.exists()


def test_move_file_within_the_local_store_renames_without_copying(
    tmp_path: Path,
) -> None:
    store = LocalObjectStore(tmp_path / "store")
    source = tmp_path / "output.bin"
    source.write_bytes(pattern(MiB))
    inode = source.stat().st_ino

    store.move_file("outputs/moved", source)

    assert (tmp_path / "store" / "outputs" / "moved").stat().st_ino == inode
    assert [info.key for info in store.list()] == ["outputs/moved"]


def test_put_stream_returns_byte_count_and_stores_content(
    object_store: ObjectStore,
) -> None:
    chunks = [pattern(size, seed=i) for i, size in enumerate([5, 0, MiB, 1, 70_000])]

    count = object_store.put_stream("logs/build.txt", iter(chunks))

    assert count == sum(len(chunk) for chunk in chunks)
    assert read_all(object_store, "logs/build.txt") == b"".join(chunks)


def test_put_stream_of_nothing_stores_an_empty_object(
    object_store: ObjectStore,
) -> None:
    assert object_store.put_stream("empty", iter([])) == 0

    assert object_store.stat("empty").size == 0
    assert read_all(object_store, "empty") == b""


def test_iter_chunks_yields_at_most_chunk_size(object_store: ObjectStore) -> None:
    data = pattern(10_000)
    object_store.put_stream("k", [data])

    chunks = list(object_store.iter_chunks("k", chunk_size=3000))

    assert all(0 < len(chunk) <= 3000 for chunk in chunks)
    assert b"".join(chunks) == data


@pytest.mark.parametrize("chunk_size", [0, -1])
def test_iter_chunks_rejects_a_chunk_size_below_one(
    object_store: ObjectStore, chunk_size: int
) -> None:
    object_store.put_stream("k", [b"data"])

    with pytest.raises(ValueError, match="chunk_size"):
        object_store.iter_chunks("k", chunk_size=chunk_size)


def test_stat_reports_size_and_an_aware_time(object_store: ObjectStore) -> None:
    object_store.put_stream("a/b.bin", [b"x" * 1234])

    info = object_store.stat("a/b.bin")

    assert info.key == "a/b.bin"
    assert info.size == 1234
    assert isinstance(info.modified_time, datetime)
    assert info.modified_time.tzinfo is not None


def test_exists_follows_puts_and_deletes(object_store: ObjectStore) -> None:
    assert not object_store.exists("k")
    object_store.put_stream("k", [b"v"])
    assert object_store.exists("k")
    object_store.delete("k")
    assert not object_store.exists("k")


def test_missing_key_raises_object_not_found(
    object_store: ObjectStore, tmp_path: Path
) -> None:
    object_store.put_stream("dir/present", [b"v"])
    destination = tmp_path / "out.bin"

    with pytest.raises(ObjectNotFoundError, match="missing"):
        object_store.stat("dir/missing")
    with pytest.raises(ObjectNotFoundError, match="missing"):
        object_store.iter_chunks("dir/missing")
    with pytest.raises(ObjectNotFoundError, match="missing"):
        object_store.download_file("dir/missing", destination)
    with pytest.raises(ObjectNotFoundError):
        object_store.stat("dir")  # a folder of keys is no object
    assert not destination.exists()


def test_delete_is_idempotent(object_store: ObjectStore) -> None:
    object_store.delete("never/stored")
    object_store.put_stream("k", [b"v"])

    object_store.delete("k")
    object_store.delete("k")

    assert keys_of(object_store) == []


def test_list_yields_keys_with_prefix_in_key_order(object_store: ObjectStore) -> None:
    # '-' and '.' sort before '/', which sorts before letters: a naive folder walk
    # would put "a/..." before "a-c" and "a.b".
    keys = ["b", "a/x", "a-c", "a/b/c", "a.b", "ab", "c/d", "a/b0"]
    for index, key in enumerate(keys):
        object_store.put_stream(key, [b"x" * index])

    assert keys_of(object_store) == sorted(keys)
    assert keys_of(object_store, "a/") == ["a/b/c", "a/b0", "a/x"]
    assert keys_of(object_store, "a/b") == ["a/b/c", "a/b0"]
    assert keys_of(object_store, "a") == sorted(k for k in keys if k.startswith("a"))
    assert keys_of(object_store, "zz") == []
    sizes = {info.key: info.size for info in object_store.list()}
    assert sizes == {key: index for index, key in enumerate(keys)}


def test_put_replaces_an_existing_object(object_store: ObjectStore) -> None:
    object_store.put_stream("k", [pattern(200_000, seed=1)])

    object_store.put_stream("k", [b"short"])

    assert read_all(object_store, "k") == b"short"
    assert object_store.stat("k").size == 5
    assert keys_of(object_store) == ["k"]


@pytest.mark.parametrize(
    "key",
    ["../x", "/abs", "a//b", "", "a/../b", "a/", "a/./b", ".", "sp ace", "caf\u00e9"]
    + [".tmp/x", "a\\b", "x" * 256],
)
def test_invalid_keys_are_rejected(
    object_store: ObjectStore, tmp_path: Path, key: str
) -> None:
    source = tmp_path / "source.bin"
    source.write_bytes(b"v")
    calls: list[Callable[[], object]] = [
        lambda: object_store.put_stream(key, [b"v"]),
        lambda: object_store.put_file(key, source),
        lambda: object_store.iter_chunks(key),
        lambda: object_store.download_file(key, tmp_path / "out"),
        lambda: object_store.stat(key),
        lambda: object_store.exists(key),
        lambda: object_store.delete(key),
    ]
    for call in calls:
        with pytest.raises(InvalidKeyError, match="^key "):
            call()
    assert keys_of(object_store) == []


@pytest.mark.parametrize("prefix", ["/a", "../", "a//", "a b"])
def test_invalid_list_prefixes_are_rejected(
    object_store: ObjectStore, prefix: str
) -> None:
    with pytest.raises(InvalidKeyError, match="^prefix "):
        object_store.list(prefix)


def test_download_file_replaces_the_destination_whole(
    object_store: ObjectStore, tmp_path: Path
) -> None:
    data = pattern(2 * MiB + 3)
    object_store.put_stream("k", [data])
    destination = tmp_path / "out" / "file.bin"
    destination.parent.mkdir()
    destination.write_bytes(b"previous content")

    object_store.download_file("k", destination)

    assert destination.read_bytes() == data
    assert os.listdir(destination.parent) == ["file.bin"]


def test_atomic_file_write_keeps_the_old_file_when_the_source_fails(
    tmp_path: Path,
) -> None:
    destination = tmp_path / "file.bin"
    destination.write_bytes(b"previous content")

    with pytest.raises(SourceBroke):
        write_file_atomically(destination, failing_chunks(3 * MiB))

    assert destination.read_bytes() == b"previous content"
    assert os.listdir(tmp_path) == ["file.bin"]


@pytest.mark.parametrize(
    "good_bytes", [1000, PART_BYTES + MiB], ids=["one-part", "multipart"]
)
def test_failed_put_stream_leaves_no_object(
    object_store: ObjectStore, good_bytes: int
) -> None:
    with pytest.raises(SourceBroke):
        object_store.put_stream("k", failing_chunks(good_bytes))

    assert not object_store.exists("k")
    assert keys_of(object_store) == []


def test_failed_put_stream_keeps_the_previous_object(
    object_store: ObjectStore,
) -> None:
    object_store.put_stream("k", [b"previous"])

    with pytest.raises(SourceBroke):
        object_store.put_stream("k", failing_chunks(2 * MiB))

    assert read_all(object_store, "k") == b"previous"


def test_large_stream_round_trip_keeps_memory_bounded(
    object_store: ObjectStore,
) -> None:
    total = 64 * MiB
    sent = hashlib.sha256()

    def chunks() -> Iterator[bytes]:
        for index in range(total // MiB):
            chunk = index.to_bytes(4, "big") * (MiB // 4)
            sent.update(chunk)
            yield chunk

    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        count = object_store.put_stream("big", chunks())
        received = hashlib.sha256()
        for chunk in object_store.iter_chunks("big"):
            received.update(chunk)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert count == total
    assert received.digest() == sent.digest()
    assert peak - baseline < 40 * MiB


# The local store only.


def test_local_list_never_shows_unfinished_writes(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    seen_during_write: list[list[str]] = []
    temp_files_during_write: list[list[str]] = []

    def chunks() -> Iterator[bytes]:
        yield b"first half "
        seen_during_write.append(keys_of(store))
        temp_files_during_write.append(os.listdir(store.root / ".tmp"))
        yield b"second half"

    store.put_stream("k", chunks())

    assert seen_during_write == [[]]
    assert len(temp_files_during_write[0]) == 1
    assert keys_of(store) == ["k"]
    assert os.listdir(store.root / ".tmp") == []


def test_local_store_cannot_hold_a_key_and_keys_under_it(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    store.put_stream("a", [b"file"])
    store.put_stream("b/c", [b"file"])

    with pytest.raises(ObjectStoreError, match="'a/x' clashes"):
        store.put_stream("a/x", [b"v"])
    with pytest.raises(ObjectStoreError, match="'b' clashes"):
        store.put_stream("b", [b"v"])

    assert keys_of(store) == ["a", "b/c"]
    assert os.listdir(store.root / ".tmp") == []


def test_local_delete_removes_the_folders_it_empties(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    store.put_stream("a/b/c", [b"v"])
    store.put_stream("a/d", [b"v"])

    store.delete("a/b/c")
    assert not (store.root / "a" / "b").exists()
    assert (store.root / "a").is_dir()

    store.delete("a/d")
    store.put_stream("a", [b"now a file"])
    assert read_all(store, "a") == b"now a file"


def test_local_iter_chunks_closes_the_file_when_dropped_unread(
    tmp_path: Path,
) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    store.put_stream("k", [b"v"])

    # An abandoned reader must not leak its file; an unclosed file would raise a
    # ResourceWarning, which this suite turns into an error.
    reader = store.iter_chunks("k")
    del reader
    store.delete("k")

    assert not store.exists("k")


# The S3 store only.


@pytest.mark.timeout(30)  # short timeouts must fail an outage fast, never hang
def test_s3_store_at_a_closed_port_is_unavailable_naming_it() -> None:
    endpoint = f"127.0.0.1:{free_port()}"
    store = S3ObjectStore(endpoint, "key", "secret", "some-bucket")

    calls: list[Callable[[], object]] = [
        lambda: store.exists("k"),
        lambda: store.put_stream("k", [b"v"]),
        lambda: list(store.list()),
    ]
    for call in calls:
        with pytest.raises(ObjectStoreUnavailableError) as caught:
            call()
        assert endpoint in str(caught.value)
        assert "some-bucket" in str(caught.value)


def test_s3_failed_multipart_put_leaves_no_pending_upload(
    s3_server: S3Endpoint,
) -> None:
    store = open_object_store(s3_server.url("pending-uploads"))
    with pytest.raises(SourceBroke):
        store.put_stream("k", failing_chunks(PART_BYTES + MiB))

    client = boto3.client(
        "s3",
        endpoint_url=f"http://{s3_server.endpoint}",
        aws_access_key_id=s3_server.access_key,
        aws_secret_access_key=s3_server.secret_key,
        region_name="us-east-1",
    )
    pending = client.list_multipart_uploads(Bucket="pending-uploads")
    assert pending.get("Uploads", []) == []


# Opening a store from a URL.


def test_plain_path_and_file_url_open_a_local_store(tmp_path: Path) -> None:
    plain = open_object_store(str(tmp_path / "plain"))
    from_url = open_object_store(f"file://{tmp_path}/url%20dir")
    from_localhost = open_object_store(f"file://localhost{tmp_path}/host")

    assert isinstance(plain, LocalObjectStore)
    assert plain.root == tmp_path / "plain"
    assert isinstance(from_url, LocalObjectStore)
    assert from_url.root == tmp_path / "url dir"
    assert isinstance(from_localhost, LocalObjectStore)
    assert from_localhost.root == tmp_path / "host"


@pytest.mark.parametrize("scheme", ["s3", "minio", "S3"])
def test_s3_url_opens_an_s3_store(scheme: str) -> None:
    store = open_object_store(
        f"{scheme}://AK:S%2FK@store.example:9000/artifacts/team/one?secure=true"
        "&region=eu-west-1"
    )

    assert isinstance(store, S3ObjectStore)
    assert store.bucket == "artifacts"
    assert store.endpoint == "store.example:9000"
    assert store.describe() == "s3://artifacts/team/one/@store.example:9000"


def test_s3_url_works_against_a_real_server(s3_server: S3Endpoint) -> None:
    store = open_object_store(s3_server.url("from-url") + "&region=us-east-1")

    store.put_stream("k", [b"through the url"])

    assert read_all(store, "k") == b"through the url"
    assert store.describe() == f"s3://from-url@{s3_server.endpoint}"


def test_s3_url_takes_missing_keys_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, s3_server: S3Endpoint
) -> None:
    monkeypatch.setenv(ACCESS_KEY_ENV, s3_server.access_key)
    monkeypatch.setenv(SECRET_KEY_ENV, s3_server.secret_key)

    store = open_object_store(f"s3://{s3_server.endpoint}/env-keys")
    store.put_stream("k", [b"v"])

    assert store.exists("k")


def test_s3_url_without_keys_anywhere_names_the_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(ACCESS_KEY_ENV, raising=False)
    monkeypatch.delenv(SECRET_KEY_ENV, raising=False)

    with pytest.raises(ValueError, match=ACCESS_KEY_ENV):
        open_object_store("s3://host:9000/bucket")
    with pytest.raises(ValueError, match=SECRET_KEY_ENV):
        open_object_store("s3://only-access@host:9000/bucket")


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("", "must not be empty"),
        ("http://host/bucket", "scheme must be file, s3 or minio"),
        ("file://server/share", "file:///absolute/path"),
        ("file:///data?x=1", "no host, query or fragment"),
        ("s3://AK:hush123@/bucket", "must name a host"),
        ("s3://AK:hush123@host:port/bucket", "port must be a number"),
        ("s3://AK:hush123@host:9000", "must start with the bucket"),
        ("s3://AK:hush123@host:9000/", "must start with the bucket"),
        ("s3://AK:hush123@host/bucket?secure=maybe", "secure must be true or false"),
        ("s3://AK:hush123@host/bucket?colour=red", "unknown option 'colour'"),
        ("s3://AK:hush123@host/bucket?region=", "region is empty"),
        ("s3://AK:hush123@host/bucket?secure=1&secure=0", "'secure' repeats"),
        ("s3://AK:hush123@host/Bad_Bucket", "bucket 'Bad_Bucket': must be 3 to 63"),
        ("s3://AK:hush123@host/bucket/a//b", "prefix 'a//b'"),
        ("s3://AK:hush123@host/bucket#frag", "no fragment"),
        ("s3://AK:hu/sh123@host/bucket", "percent-encode"),
    ],
)
def test_bad_urls_are_rejected_naming_the_rule(url: str, rule: str) -> None:
    with pytest.raises(ValueError) as caught:
        open_object_store(url)

    assert rule in str(caught.value)
    assert "sh123" not in str(caught.value)
