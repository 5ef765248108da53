"""A queue of keys to process, each possibly after a delay, as controllers use."""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from typing import Generic, TypeVar

Key = TypeVar("Key")


class WorkQueue(Generic[Key]):
    """Keys become ready at their due time; `get` waits for the next one."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._heap: list[tuple[float, int, Key]] = []
        self._order = itertools.count()
        self._closed = False

    def add(self, key: Key, delay_s: float = 0.0) -> None:
        with self._lock:
            due = time.monotonic() + max(0.0, delay_s)
            heapq.heappush(self._heap, (due, next(self._order), key))
            self._lock.notify_all()

    def get(self) -> Key | None:
        """The next due key, or None once closed."""
        with self._lock:
            while not self._closed:
                if self._heap:
                    wait = self._heap[0][0] - time.monotonic()
                    if wait <= 0:
                        return heapq.heappop(self._heap)[2]
                else:
                    wait = None
                self._lock.wait(timeout=wait)
            return None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify_all()
