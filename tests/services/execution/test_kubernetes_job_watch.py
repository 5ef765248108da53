"""The Job watch on the fake cluster: list, then watch from the list's
version, resume from the last event, and list again when the version
expired."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import pytest
from support.kube_jobs import host_cluster, kube_api, shell_job
from support.waiting import eventually

from stepforge.services.execution.job_watch import JobWatcher
from stepforge.services.kubernetes.api import JobList, KubeApi, Watch

NAMESPACE = "watched"
SELECTOR = "app=watched"
LABELS = {"app": "watched"}


class _Watching:
    """The wrapper, keeping the version each watch asked for; it can make the
    next watch ask the cluster for another version instead."""

    def __init__(self, kube: KubeApi) -> None:
        self.kube = kube
        self.versions: list[str] = []
        # Where in `versions` the watch whose version was replaced stands.
        self.replaced_at: int | None = None
        self._replacement: str | None = None
        self._before: Callable[[], None] | None = None

    def replace_next(
        self, version: str, before: Callable[[], None] | None = None
    ) -> None:
        self._replacement, self._before = version, before

    def list_jobs(self, label_selector: str) -> JobList:
        return self.kube.list_jobs(label_selector)

    def watch_jobs(self, label_selector: str, version: str, timeout_s: int) -> Watch:
        self.versions.append(version)
        if self._replacement is not None:
            if self._before is not None:
                self._before()
            self.replaced_at = len(self.versions) - 1
            version, self._replacement, self._before = self._replacement, None, None
        return self.kube.watch_jobs(label_selector, version, timeout_s)


class _Seen:
    """The events the watcher delivered, as (type, name, resourceVersion)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []
        self._lock = threading.Lock()

    def __call__(self, kind: str, job: dict[str, Any]) -> None:
        metadata = job["metadata"]
        with self._lock:
            self.events.append((kind, metadata["name"], metadata["resourceVersion"]))

    def kinds(self) -> list[tuple[str, str]]:
        with self._lock:
            return [(kind, name) for kind, name, _ in self.events]

    def last_version(self) -> str:
        with self._lock:
            return self.events[-1][2]

    def versions(self) -> set[str]:
        with self._lock:
            return {version for _, _, version in self.events}


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[KubeApi]:
    with host_cluster(tmp_path) as cluster:
        yield kube_api(cluster.kubeconfig, NAMESPACE)


@contextmanager
def _watching(
    watching: _Watching, seen: _Seen, watch_timeout_s: int = 300
) -> Iterator[JobWatcher]:
    watcher = JobWatcher(
        cast(KubeApi, watching), SELECTOR, seen, watch_timeout_s=watch_timeout_s
    )
    watcher.start()
    try:
        yield watcher
    finally:
        watcher.stop()


def test_the_jobs_are_listed_then_watched_from_the_last_event(
    kube: KubeApi,
) -> None:
    kube.create_job(shell_job("a", "sleep 30", labels=LABELS))
    watching, seen = _Watching(kube), _Seen()

    with _watching(watching, seen, watch_timeout_s=1) as watcher:
        assert eventually(lambda: ("ADDED", "a") in seen.kinds())
        kube.create_job(shell_job("b", "sleep 30", labels=LABELS))
        kube.create_job(shell_job("unwatched", "sleep 30"))
        assert eventually(lambda: ("ADDED", "b") in seen.kinds())
        # The server ends each watch after a second; the next one starts
        # from the last event seen, which stays the last once the Jobs settle.
        assert eventually(
            lambda: (
                len(watching.versions) > 2
                and watching.versions[-1] == seen.last_version()
            ),
            10,
        )

    assert seen.kinds()[0] == ("ADDED", "a")
    assert "unwatched" not in {name for _, name in seen.kinds()}
    assert watcher.lists == 1


def test_an_expired_version_lists_again_and_reports_what_vanished(
    kube: KubeApi,
) -> None:
    kube.create_job(shell_job("a", "sleep 30", labels=LABELS))
    kube.create_job(shell_job("b", "sleep 30", labels=LABELS))
    watching, seen = _Watching(kube), _Seen()

    def delete_b() -> None:
        kube.delete_job("b")
        assert eventually(lambda: kube.read_job("b") is None)

    # Older than the first version the fake cluster keeps, as after the
    # server compacted its history.
    watching.replace_next("-1", before=delete_b)

    with _watching(watching, seen) as watcher:
        assert eventually(lambda: watcher.lists == 2 and len(seen.kinds()) >= 4)

    assert seen.kinds()[:4] == [
        ("ADDED", "a"),
        ("ADDED", "b"),
        ("DELETED", "b"),
        ("ADDED", "a"),
    ]


def test_a_failed_watch_is_tried_again_from_the_last_event(kube: KubeApi) -> None:
    watching, seen = _Watching(kube), _Seen()

    with _watching(watching, seen, watch_timeout_s=1) as watcher:
        assert eventually(lambda: len(watching.versions) == 1)
        kube.create_job(shell_job("a", "sleep 30", labels=LABELS))
        assert eventually(lambda: ("ADDED", "a") in seen.kinds())
        # The cluster refuses a malformed version: that watch fails.
        watching.replace_next("not-a-version")
        assert eventually(
            lambda: (
                watching.replaced_at is not None
                and len(watching.versions) > watching.replaced_at + 1
            )
        )

    failed = watching.replaced_at
    assert failed is not None
    assert watching.versions[failed + 1] == watching.versions[failed]
    assert watching.versions[failed] in seen.versions()
    assert watcher.lists == 1
