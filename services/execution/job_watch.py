"""Following every Job of a label selector with one watch: listed first, then
watched from that list's resourceVersion, reconnected from the last event
seen, and listed again when the server no longer has that version (410)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

logger = logging.getLogger(__name__)

# `(event type, Job as a dict)`: ADDED, MODIFIED or DELETED; a listing reports
# each Job it holds as ADDED, and as DELETED each one it no longer holds.
JobEvent = Callable[[str, dict[str, Any]], None]

# The server closes a watch after this long; a fresh one starts at once.
WATCH_TIMEOUT_S = 300
CONNECT_TIMEOUT_S = 5.0
# A watch that stays silent past its own timeout has lost its connection.
READ_TIMEOUT_S = WATCH_TIMEOUT_S + 30.0
REQUEST_TIMEOUT_S = 30.0
RETRY_MIN_S = 0.2
RETRY_MAX_S = 10.0
_READ_BYTES = 64 * 1024


class GoneError(Exception):
    """The server no longer holds the resourceVersion the watch asked for."""


class JobWatcher:
    """Calls `on_event` for every change of a Job in `namespace` that matches
    `label_selector`, from one thread, in the order the server reports them."""

    def __init__(
        self,
        batch_api: Any,
        namespace: str,
        label_selector: str,
        on_event: JobEvent,
        *,
        watch_timeout_s: int = WATCH_TIMEOUT_S,
    ) -> None:
        self._batch = batch_api
        self._namespace = namespace
        self._selector = label_selector
        self._on_event = on_event
        self._watch_timeout_s = watch_timeout_s
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._response: Any = None
        self._known: dict[str, dict[str, Any]] = {}
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
            response = self._response
        if response is not None:
            _interrupt(response)
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _loop(self) -> None:
        version: str | None = None
        delay = RETRY_MIN_S
        while not self._stopping.is_set():
            try:
                if version is None:
                    version = self._relist()
                version = self._watch(version)
                delay = RETRY_MIN_S
            except Exception as error:
                if self._stopping.is_set():
                    return
                if isinstance(error, GoneError) or getattr(error, "status", 0) == 410:
                    logger.info("the Job watch's version expired; listing again")
                    version = None
                    continue
                logger.warning(
                    "the Job watch failed (%s); reconnecting in %.1f s", error, delay
                )
                self._stopping.wait(delay)
                delay = min(delay * 2, RETRY_MAX_S)

    def _relist(self) -> str:
        response = self._batch.list_namespaced_job(
            self._namespace,
            label_selector=self._selector,
            _preload_content=False,
            _request_timeout=(CONNECT_TIMEOUT_S, REQUEST_TIMEOUT_S),
        )
        listing = json.loads(response.data)
        self.lists += 1
        current = {item["metadata"]["name"]: item for item in listing["items"]}
        for name in sorted(set(self._known) - set(current)):
            self._deliver("DELETED", self._known[name])
        for item in current.values():
            self._deliver("ADDED", item)
        version: str = listing["metadata"]["resourceVersion"]
        return version

    def _watch(self, version: str) -> str:
        """Delivers events until the server ends the watch; returns the last
        resourceVersion seen."""
        response = self._batch.list_namespaced_job(
            self._namespace,
            label_selector=self._selector,
            watch=True,
            resource_version=version,
            allow_watch_bookmarks=True,
            timeout_seconds=self._watch_timeout_s,
            _preload_content=False,
            _request_timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S),
        )
        with self._lock:
            self._response = response
        if self._stopping.is_set():
            _interrupt(response)
        try:
            for line in _lines(response):
                event = json.loads(line)
                kind, job = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if job.get("code") == 410:
                        raise GoneError()
                    raise RuntimeError(f"the watch answered {job.get('message')}")
                version = job.get("metadata", {}).get("resourceVersion", version)
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    self._deliver(kind, job)
        finally:
            with self._lock:
                self._response = None
            response.release_conn()
        return version

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


def _lines(response: Any) -> Iterator[bytes]:
    """The lines of a streamed response, as they arrive."""
    pending = b""
    while True:
        chunk = response.read1(_READ_BYTES)
        if not chunk:
            break
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            if line.strip():
                yield line
    if pending.strip():
        yield pending


def _interrupt(response: Any) -> None:
    """Makes a read blocked on `response` in another thread return."""
    try:
        response.shutdown()
    except Exception:
        logger.debug("shutting a stream down failed", exc_info=True)
