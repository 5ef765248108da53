"""Copying a pod's log into the execution's log, line by line."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stepforge.services.execution.limits import OutputBudget
from stepforge.services.execution.logs import LogBook
from stepforge.services.execution.pod_logs import READ_CHUNK_BYTES, PodLogFollower
from stepforge.services.execution.store import ExecutionStore
from stepforge.v1 import execution_pb2

NAME = "executions/abc"


class _Log:
    def __init__(self, pieces: list[bytes]) -> None:
        self._pieces = list(pieces)

    def read1(self, size: int) -> bytes:
        if not self._pieces:
            return b""
        piece = self._pieces.pop(0)
        if len(piece) > size:
            self._pieces.insert(0, piece[size:])
        return piece[:size]

    def release_conn(self) -> None:
        return None

    def shutdown(self) -> None:
        self._pieces.clear()


class _Core:
    def __init__(self, *pieces: bytes) -> None:
        self.pieces = list(pieces)
        self.requests: list[dict[str, Any]] = []

    def read_namespaced_pod_log(self, pod: str, namespace: str, **options: Any) -> _Log:
        self.requests.append({"pod": pod, "namespace": namespace, **options})
        return _Log(self.pieces)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ExecutionStore]:
    store = ExecutionStore(tmp_path / "executions.db")
    yield store
    store.close()


@pytest.fixture
def book(store: ExecutionStore) -> Iterator[LogBook]:
    book = LogBook(store)
    yield book
    book.stop()


def _follow(
    book: LogBook,
    store: ExecutionStore,
    core: _Core,
    skip: int = 0,
    limit: int = 10**9,
) -> tuple[int, list[tuple[int, str]], bool]:
    """Follows the log to its end: lines seen, lines stored, budget exceeded."""
    exceeded: list[bool] = []
    budget = OutputBudget(limit, on_exceeded=lambda: exceeded.append(True))
    follower = PodLogFollower(core, "ns", "step", book, NAME, budget)
    seen = follower.follow("pod-1", skip)
    book.flush()
    lines = [(line.stream, line.text) for line in store.lines(NAME, 0, 1000)]
    return seen, lines, bool(exceeded)


def test_lines_split_across_pieces_are_stored_whole_as_stdout(
    book: LogBook, store: ExecutionStore
) -> None:
    core = _Core(b"first li", b"ne\nsecond\r\nthi", b"rd")

    seen, lines, _ = _follow(book, store, core)

    stdout = execution_pb2.LOG_STREAM_STDOUT
    assert lines == [(stdout, "first line"), (stdout, "second"), (stdout, "third")]
    assert seen == 3
    assert core.requests[0]["follow"] is True
    assert core.requests[0]["container"] == "step"


def test_lines_already_stored_are_skipped_by_count(
    book: LogBook, store: ExecutionStore
) -> None:
    seen, lines, _ = _follow(book, store, _Core(b"a\nb\nc\nd\n"), skip=2)

    assert [text for _, text in lines] == ["c", "d"]
    assert seen == 4


def test_a_line_longer_than_a_chunk_is_stored_cut_and_counted_once(
    book: LogBook, store: ExecutionStore
) -> None:
    long_line = b"x" * (READ_CHUNK_BYTES + 10) + b"\n"

    seen, lines, _ = _follow(book, store, _Core(long_line, b"next\n"))

    assert seen == 2
    assert [text for _, text in lines][-1] == "next"
    assert len(lines) == 2


def test_output_past_the_budget_is_counted_not_stored(
    book: LogBook, store: ExecutionStore
) -> None:
    seen, lines, exceeded = _follow(book, store, _Core(b"12345\n" * 4), limit=13)

    assert exceeded
    assert [text for _, text in lines] == ["12345", "12345"]
    assert seen == 4
