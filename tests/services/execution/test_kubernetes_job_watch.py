"""The Job watch: list, then watch from the list's version, resume from the
last event, and list again when the version expired."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from support.waiting import eventually

from stepforge.services.execution.job_watch import JobWatcher


class _Response:
    """A streamed answer, read in the pieces it was given."""

    def __init__(self, data: bytes = b"", pieces: list[bytes] | None = None) -> None:
        self.data = data
        self._pieces = list(pieces or [])

    def read1(self, size: int) -> bytes:
        return self._pieces.pop(0) if self._pieces else b""

    def release_conn(self) -> None:
        return None

    def shutdown(self) -> None:
        return None


class _Batch:
    """Answers the watcher's calls from a script; once it runs out, each call
    waits for the test to end and fails."""

    def __init__(self, script: list[_Response | Exception]) -> None:
        self.script = script
        self.calls: list[dict[str, Any]] = []
        self.done = threading.Event()

    def list_namespaced_job(self, namespace: str, **options: Any) -> _Response:
        self.calls.append(options)
        if not self.script:
            self.done.wait(5)
            raise ConnectionError("the test is over")
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return step


def _job(name: str, version: int) -> dict[str, Any]:
    return {"metadata": {"name": name, "resourceVersion": str(version)}}


def _listing(version: int, *names: str) -> _Response:
    items = [_job(name, version) for name in names]
    body = {"metadata": {"resourceVersion": str(version)}, "items": items}
    return _Response(json.dumps(body).encode())


def _events(*events: dict[str, Any]) -> _Response:
    lines = b"".join(json.dumps(event).encode() + b"\n" for event in events)
    # Split mid-line, as a stream arrives.
    middle = len(lines) // 2 + 1
    return _Response(pieces=[lines[:middle], lines[middle:]])


def _event(kind: str, name: str, version: int) -> dict[str, Any]:
    return {"type": kind, "object": _job(name, version)}


@pytest.fixture
def seen() -> list[tuple[str, str]]:
    return []


@contextmanager
def _watching(batch: _Batch, seen: list[tuple[str, str]]) -> Iterator[JobWatcher]:
    watcher = JobWatcher(
        batch,
        "ns",
        "a=b",
        lambda kind, job: seen.append((kind, job["metadata"]["name"])),
    )
    watcher.start()
    try:
        yield watcher
    finally:
        batch.done.set()
        watcher.stop()


def _watch_calls(batch: _Batch) -> list[dict[str, Any]]:
    return [call for call in batch.calls if call.get("watch")]


def test_the_jobs_are_listed_then_watched_from_the_last_version(
    seen: list[tuple[str, str]],
) -> None:
    batch = _Batch(
        [
            _listing(10, "a"),
            _events(_event("MODIFIED", "a", 11), _event("ADDED", "b", 12)),
        ]
    )
    with _watching(batch, seen):
        assert eventually(lambda: len(_watch_calls(batch)) >= 2, 5)

    assert seen[:3] == [("ADDED", "a"), ("MODIFIED", "a"), ("ADDED", "b")]
    first, second = _watch_calls(batch)[:2]
    assert first["resource_version"] == "10"
    assert second["resource_version"] == "12"
    assert first["label_selector"] == "a=b"


def test_an_expired_version_lists_again_and_reports_what_vanished(
    seen: list[tuple[str, str]],
) -> None:
    gone = {"type": "ERROR", "object": {"code": 410, "message": "too old"}}
    batch = _Batch([_listing(5, "a", "b"), _events(gone), _listing(20, "a")])
    with _watching(batch, seen) as watcher:
        assert eventually(lambda: watcher.lists == 2 and len(seen) == 4, 5)

    assert seen == [("ADDED", "a"), ("ADDED", "b"), ("DELETED", "b"), ("ADDED", "a")]


def test_a_410_answer_to_the_watch_lists_again(
    seen: list[tuple[str, str]],
) -> None:
    batch = _Batch([_listing(5, "a"), ApiException(status=410), _listing(9, "c")])
    with _watching(batch, seen) as watcher:
        assert eventually(lambda: watcher.lists == 2 and len(seen) == 3, 5)

    assert seen == [("ADDED", "a"), ("DELETED", "a"), ("ADDED", "c")]


def test_a_broken_watch_resumes_from_where_it_was(
    seen: list[tuple[str, str]],
) -> None:
    batch = _Batch(
        [
            _listing(3, "a"),
            _events(_event("MODIFIED", "a", 4)),
            ConnectionResetError("dropped"),
        ]
    )
    with _watching(batch, seen) as watcher:
        assert eventually(lambda: len(_watch_calls(batch)) >= 3, 5)
        assert watcher.lists == 1

    versions = [call["resource_version"] for call in _watch_calls(batch)[:3]]
    assert versions == ["3", "4", "4"]
