"""Container logs: the lines a container wrote, with their times, followable."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .meta import format_time_ns

# A kubelet splits longer lines, as the CRI log format does.
MAX_LINE_BYTES = 16 * 1024


@dataclass(frozen=True)
class LogLine:
    """One line (or the unterminated tail) of a container's output."""

    time_ns: int
    stream: str  # "stdout" or "stderr"
    data: bytes

    def render(self, timestamps: bool) -> bytes:
        """The line as the log endpoint returns it."""
        if not timestamps:
            return self.data
        return format_time_ns(self.time_ns).encode() + b" " + self.data


@dataclass(frozen=True)
class LogQuery:
    """Which lines a log request wants."""

    stream: str = "All"  # All, Stdout or Stderr
    since_ns: int | None = None
    tail_lines: int | None = None

    def selects(self, line: LogLine) -> bool:
        if self.stream != "All" and line.stream != self.stream.lower():
            return False
        return self.since_ns is None or line.time_ns >= self.since_ns


class ContainerLog:
    """The output of one run of one container."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._lines: list[LogLine] = []
        self._closed = False

    def append(self, stream: str, data: bytes) -> None:
        with self._lock:
            self._lines.append(LogLine(time.time_ns(), stream, data))
            self._lock.notify_all()

    def close(self) -> None:
        """The container ended: followers stop after the last line."""
        with self._lock:
            self._closed = True
            self._lock.notify_all()

    def read(self, query: LogQuery) -> list[LogLine]:
        """The lines written so far that `query` selects."""
        return self._snapshot(query)[0]

    def follow(
        self, query: LogQuery, stop: Callable[[], bool] = lambda: False
    ) -> Iterator[LogLine]:
        """The selected lines, waiting for more until the container ends or
        `stop()` is true."""
        backlog, position = self._snapshot(query)
        yield from backlog
        while True:
            with self._lock:
                while position >= len(self._lines) and not self._closed:
                    if stop():
                        return
                    self._lock.wait(timeout=1.0)
                fresh = self._lines[position:]
                position = len(self._lines)
                closed = self._closed
            for line in fresh:
                if query.selects(line):
                    yield line
            if closed and not fresh:
                return

    def _snapshot(self, query: LogQuery) -> tuple[list[LogLine], int]:
        with self._lock:
            written = list(self._lines)
        lines = [line for line in written if query.selects(line)]
        if query.tail_lines is not None:
            lines = (
                lines[len(lines) - query.tail_lines :] if query.tail_lines > 0 else []
            )
        return lines, len(written)
