"""Copying a pod's log into the execution's log, line by line, as the fake
cluster streams it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from support.kube_jobs import container_state, host_cluster, kube_api, shell_job
from support.waiting import eventually

from stepforge.services.execution.limits import OutputBudget
from stepforge.services.execution.logs import LogBook
from stepforge.services.execution.pod_logs import READ_CHUNK_BYTES, PodLogFollower
from stepforge.services.execution.store import ExecutionStore
from stepforge.services.kubernetes.api import KubeApi, Stream
from stepforge.v1 import execution_pb2

NAME = "executions/abc"
NAMESPACE = "logs"
STDOUT = execution_pb2.LOG_STREAM_STDOUT


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[KubeApi]:
    with host_cluster(tmp_path) as cluster:
        yield kube_api(cluster.kubeconfig, NAMESPACE)


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


class _Follow:
    """Follows one pod's log into the execution's log."""

    def __init__(
        self, kube: KubeApi, book: LogBook, store: ExecutionStore, limit: int
    ) -> None:
        self.exceeded = False
        budget = OutputBudget(limit, on_exceeded=self._exceeded)
        self.follower = PodLogFollower(kube, "main", book, NAME, budget)
        self._book = book
        self._store = store

    def __call__(self, pod: str, skip: int = 0) -> int:
        return self.follower.follow(pod, skip)

    def lines(self) -> list[tuple[int, str]]:
        self._book.flush()
        return [(line.stream, line.text) for line in self._store.lines(NAME, 0, 1000)]

    def _exceeded(self) -> None:
        self.exceeded = True


def _pod_of(kube: KubeApi, job: str, script: str) -> str:
    """Runs `script` in a Job; its pod's name once the container started."""
    kube.create_job(shell_job(job, script))

    def started() -> bool:
        pods = kube.job_pods(job)
        return bool(pods) and bool(
            {"running", "terminated"} & set(container_state(pods[-1]))
        )

    assert eventually(started)
    return str(kube.job_pods(job)[-1]["metadata"]["name"])


def test_stdout_and_stderr_lines_are_stored_as_stdout(
    kube: KubeApi, book: LogBook, store: ExecutionStore
) -> None:
    pod = _pod_of(kube, "both", "echo out; echo err >&2")
    follow = _Follow(kube, book, store, 10**9)

    seen = follow(pod)

    assert sorted(follow.lines()) == [(STDOUT, "err"), (STDOUT, "out")]
    assert seen == 2


def test_lines_already_stored_are_skipped_by_count(
    kube: KubeApi, book: LogBook, store: ExecutionStore
) -> None:
    pod = _pod_of(kube, "four", "printf 'a\\nb\\nc\\nd\\n'")
    follow = _Follow(kube, book, store, 10**9)

    seen = follow(pod, skip=2)

    assert [text for _, text in follow.lines()] == ["c", "d"]
    assert seen == 4


def test_a_line_longer_than_a_chunk_is_stored_cut_and_counted_once(
    kube: KubeApi, book: LogBook, store: ExecutionStore
) -> None:
    script = f"head -c {READ_CHUNK_BYTES + 10} /dev/zero | tr '\\0' x; echo; echo next"
    pod = _pod_of(kube, "long", script)
    follow = _Follow(kube, book, store, 10**9)

    seen = follow(pod)

    lines = [text for _, text in follow.lines()]
    assert seen == 2
    assert len(lines) == 2
    assert lines[0].startswith("xxxx") and lines[-1] == "next"


def test_output_past_the_budget_is_counted_not_stored(
    kube: KubeApi, book: LogBook, store: ExecutionStore
) -> None:
    pod = _pod_of(kube, "chatty", "for i in 1 2 3 4; do echo 12345; done")
    follow = _Follow(kube, book, store, 13)

    seen = follow(pod)

    assert follow.exceeded
    assert [text for _, text in follow.lines()] == ["12345", "12345"]
    assert seen == 4


def test_stop_ends_the_stream_of_a_running_pod(
    kube: KubeApi, book: LogBook, store: ExecutionStore
) -> None:
    pod = _pod_of(kube, "sleeper", "echo started; sleep 30")
    follow = _Follow(kube, book, store, 10**9)
    seen: list[int] = []
    thread = threading.Thread(target=lambda: seen.append(follow(pod)))
    thread.start()
    assert eventually(lambda: follow.lines() == [(STDOUT, "started")])

    follow.follower.stop()
    thread.join(10)

    assert seen == [1]
    assert follow(pod, skip=1) == 1


class _Pieces:
    """A streamed answer that arrives in the pieces it was given."""

    def __init__(self, pieces: list[bytes]) -> None:
        self._pieces = list(pieces)

    def read1(self, size: int) -> bytes:
        return self._pieces.pop(0) if self._pieces else b""

    def release_conn(self) -> None:
        return None


class _Splitting:
    """Stands in for the wrapper where a test needs lines split across
    pieces, which the fake cluster, sending a line at a time, never does."""

    def __init__(self, *pieces: bytes) -> None:
        self._pieces = list(pieces)

    def pod_log(self, pod: str, container: str, **options: Any) -> Stream:
        return Stream(_Pieces(self._pieces), "streaming a log", lambda _: None)


def test_lines_split_across_pieces_are_stored_whole(
    book: LogBook, store: ExecutionStore
) -> None:
    kube = cast(KubeApi, _Splitting(b"first li", b"ne\nsecond\r\nthi", b"rd"))
    follow = _Follow(kube, book, store, 10**9)

    seen = follow("pod-1")

    assert follow.lines() == [
        (STDOUT, "first line"),
        (STDOUT, "second"),
        (STDOUT, "third"),
    ]
    assert seen == 3
