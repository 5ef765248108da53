"""Following every Job of a label selector with one watch: listed first, then
watched from that list's resourceVersion, reconnected from the last event
seen, and listed again when the server no longer has that version (410)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from stepforge.services.kubernetes.api import KubeApi, Watch, WatchExpired

logger = logging.getLogger(__name__)

# `(event type, Job as a dict)`: ADDED, MODIFIED or DELETED; a listing reports
# each Job it holds as ADDED, and as DELETED each one it no longer holds.
JobEvent = Callable[[str, dict[str, Any]], None]

# The server closes a watch after this long; a fresh one starts at once.
WATCH_TIMEOUT_S = 300
RETRY_MIN_S = 0.2
RETRY_MAX_S = 10.0


class JobWatcher:
    """Calls `on_event` for every change of a Job in the namespace of `kube`
    that matches `label_selector`, from one thread, in the order the server
    reports them."""

    def __init__(
        self,
        kube: KubeApi,
        label_selector: str,
        on_event: JobEvent,
        *,
        watch_timeout_s: int = WATCH_TIMEOUT_S,
    ) -> None:
        self._kube = kube
        self._selector = label_selector
        self._on_event = on_event
        self._watch_timeout_s = watch_timeout_s
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._watch: Watch | None = None
        self._known: dict[str, dict[str, Any]] = {}
        # The resourceVersion of the last listing or event delivered; None
        # until the first listing and after an expiry.
        self._version: str | None = None
        self._thread = threading.Thread(
            target=self._loop, name="job-watch", daemon=True
        )
        # How many times the Jobs were listed: once, plus once per expiry.
        self.lists = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stopping.set()
        with self._lock:
            watch = self._watch
        if watch is not None:
            watch.interrupt()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _loop(self) -> None:
        delay = RETRY_MIN_S
        while not self._stopping.is_set():
            try:
                version = self._version
                if version is None:
                    version = self._relist()
                self._watch_from(version)
                delay = RETRY_MIN_S
            except Exception as error:
                if self._stopping.is_set():
                    return
                if isinstance(error, WatchExpired):
                    logger.info("the Job watch's version expired; listing again")
                    self._version = None
                    continue
                logger.warning(
                    "the Job watch failed (%s); reconnecting in %.1f s", error, delay
                )
                self._stopping.wait(delay)
                delay = min(delay * 2, RETRY_MAX_S)

    def _relist(self) -> str:
        listing = self._kube.list_jobs(self._selector)
        self.lists += 1
        current = {item["metadata"]["name"]: item for item in listing.items}
        for name in sorted(set(self._known) - set(current)):
            self._deliver("DELETED", self._known[name])
        for item in current.values():
            self._deliver("ADDED", item)
        self._version = listing.resource_version
        return listing.resource_version

    def _watch_from(self, version: str) -> None:
        """Delivers events until the watch ends, the last one's version kept
        so that a broken watch resumes after it."""
        watch = self._kube.watch_jobs(self._selector, version, self._watch_timeout_s)
        with self._lock:
            self._watch = watch
        if self._stopping.is_set():
            watch.interrupt()
        try:
            for kind, job in watch.events():
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    self._deliver(kind, job)
                self._version = job.get("metadata", {}).get(
                    "resourceVersion", self._version
                )
        finally:
            with self._lock:
                self._watch = None
            watch.close()

    def _deliver(self, kind: str, job: dict[str, Any]) -> None:
        name = job["metadata"]["name"]
        if kind == "DELETED":
            self._known.pop(name, None)
        else:
            self._known[name] = job
        try:
            self._on_event(kind, job)
        except Exception:
            logger.exception("handling a %s event of Job %s failed", kind, name)
