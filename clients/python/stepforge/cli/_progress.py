"""A text progress bar on a terminal for uploads and downloads that last."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import IO, Any, Callable

# A transfer shorter than this draws nothing, so quick commands stay quiet.
DELAY_S = 0.5
INTERVAL_S = 0.1
BAR_CHARS = 30
_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


class Progress:
    """Counts the bytes of one transfer and, while it lasts, draws a bar on
    `stream` (standard error by default).

    Nothing is drawn unless the stream is a terminal and the transfer has
    lasted `delay_s`. `measure`, when given, reports bytes done by itself
    (for a transfer this process cannot count), and the larger of it and the
    count is shown.
    """

    def __init__(
        self,
        label: str,
        total: int | None = None,
        *,
        measure: Callable[[], int] | None = None,
        stream: IO[str] | None = None,
        delay_s: float = DELAY_S,
        interval_s: float = INTERVAL_S,
    ) -> None:
        self.label = label
        self.total = total
        self._measure = measure
        self._stream = sys.stderr if stream is None else stream
        self._delay_s = delay_s
        self._interval_s = interval_s
        self._done = 0
        self._stopped = threading.Event()
        self._drawer: threading.Thread | None = None
        self._drawn_chars = 0
        self._line_ended = False

    @property
    def done(self) -> int:
        """Bytes transferred so far."""
        measured = self._measure() if self._measure is not None else 0
        return max(self._done, measured)

    def advance(self, count: int) -> None:
        self._done += count

    def set_done(self, done: int) -> None:
        self._done = done

    def track(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        """Yields the chunks, counting them."""
        for chunk in chunks:
            self.advance(len(chunk))
            yield chunk

    def reader(self, source: IO[bytes]) -> ProgressReader:
        """`source` as a binary file whose reads are counted."""
        return ProgressReader(source, self)

    def __enter__(self) -> Progress:
        # An empty transfer has nothing to show, however long what wraps it.
        if self.total != 0 and _is_terminal(self._stream):
            self._drawer = threading.Thread(
                target=self._draw_until_stopped, name="progress", daemon=True
            )
            self._drawer.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stopped.set()
        if self._drawer is None:
            return
        self._drawer.join()
        if self._drawn_chars and not self._line_ended:
            if exc_type is None:
                self._draw()
            self._end_line()

    def _draw_until_stopped(self) -> None:
        if self._stopped.wait(self._delay_s):
            return
        while not self._line_ended:
            self._draw()
            if self.total is not None and self.done >= self.total:
                # The bar ends with the transfer even when the command goes on,
                # such as a run that waits for its execution after the upload.
                self._end_line()
                return
            if self._stopped.wait(self._interval_s):
                return

    def _draw(self) -> None:
        line = render(self.label, self.done, self.total)
        padding = " " * max(0, self._drawn_chars - len(line))
        self._stream.write(f"\r{line}{padding}")
        self._stream.flush()
        self._drawn_chars = len(line)

    def _end_line(self) -> None:
        self._stream.write("\n")
        self._stream.flush()
        self._line_ended = True


class ProgressReader:
    """A binary file whose reads advance a Progress."""

    def __init__(self, source: IO[bytes], progress: Progress) -> None:
        self._source = source
        self._progress = progress

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        self._progress.advance(len(data))
        return data


def render(label: str, done: int, total: int | None) -> str:
    """One line of progress: a bar, the percentage and the sizes when the
    total is known, the bytes done alone when it is not."""
    if total is None or total <= 0:
        return f"{label} {format_size(done)}"
    fraction = min(done / total, 1.0)
    filled = int(fraction * BAR_CHARS)
    bar = "#" * filled + "-" * (BAR_CHARS - filled)
    sizes = f"{format_size(done)} / {format_size(total)}"
    return f"{label} [{bar}] {fraction:4.0%} {sizes}"


def format_size(count: int) -> str:
    """A byte count in binary units: 512 B, 1.5 MiB."""
    size = float(count)
    for unit in _UNITS:
        if size < 1024 or unit == _UNITS[-1]:
            break
        size /= 1024
    return f"{count} B" if unit == "B" else f"{size:.1f} {unit}"


def _is_terminal(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except ValueError:
        return False  # a closed stream
