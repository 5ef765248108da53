"""The log of one build: timestamped lines, capped from the front."""

from __future__ import annotations

import threading
import time
from collections import deque

from stepforge.services.core.limits import MAX_BUILD_LOG_BYTES


class BuildLog:
    """Collects what a build did; safe to write from several threads."""

    def __init__(self, earlier: str = "", max_bytes: int = MAX_BUILD_LOG_BYTES) -> None:
        """`earlier` is the text of a log to continue, kept as it was."""
        self._lines: deque[str] = deque(earlier.splitlines())
        self._size = sum(len(line) + 1 for line in self._lines)
        self._max_bytes = max_bytes
        self._dropped = 0
        self._lock = threading.Lock()

    def write(self, message: str) -> None:
        """Adds one line per line of `message`, each stamped with UTC time."""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        with self._lock:
            for text in message.rstrip("\n").split("\n"):
                line = f"{stamp} {text}"
                self._lines.append(line)
                self._size += len(line) + 1
            while self._size > self._max_bytes and len(self._lines) > 1:
                self._size -= len(self._lines.popleft()) + 1
                self._dropped += 1

    def text(self) -> str:
        with self._lock:
            head = [f"[{self._dropped} earlier lines dropped]"] if self._dropped else []
            return "\n".join(head + list(self._lines))
