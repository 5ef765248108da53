"""Execution logs: lines written as they come, stored in batches, followed live."""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict

from stepforge.services.execution.store import ExecutionStore, StoredLine

logger = logging.getLogger(__name__)

# Lines are stored at least this often; a crash loses at most this much of a log.
FLUSH_INTERVAL_S = 0.05
# A single line longer than this is cut, so one runaway print cannot bloat a row.
MAX_LINE_CHARS = 16_384


class LogBook:
    """Buffers the lines of every running execution and stores them in batches,
    waking whoever follows a log when new lines land."""

    def __init__(self, store: ExecutionStore) -> None:
        self._store = store
        self._pending: dict[str, list[StoredLine]] = defaultdict(list)
        self._next_sequence: dict[str, int] = {}
        self._lock = threading.Lock()
        self._landed = threading.Condition(self._lock)
        self._flushing = threading.Lock()
        self._stopped = threading.Event()
        self._flusher = threading.Thread(
            target=self._flush_loop, name="log-flush", daemon=True
        )
        self._flusher.start()

    def write(self, execution: str, stream: int, text: str) -> None:
        if len(text) > MAX_LINE_CHARS:
            text = text[:MAX_LINE_CHARS] + " [line cut]"
        with self._lock:
            sequence = self._next_sequence.get(execution)
            if sequence is None:
                sequence = self._store.next_sequence(execution)
            self._next_sequence[execution] = sequence + 1
            self._pending[execution].append(
                StoredLine(sequence, time.time_ns(), stream, text)
            )

    def close_execution(self, execution: str) -> None:
        """Stores what is buffered for `execution` and forgets its counter."""
        self.flush()
        with self._lock:
            self._next_sequence.pop(execution, None)

    def wait_for_lines(self, timeout_s: float) -> None:
        """Returns when lines were stored, or after `timeout_s`."""
        with self._landed:
            self._landed.wait(timeout_s)

    def flush(self) -> None:
        # One flush at a time, so lines land in sequence order and a follower
        # never sees a later line before an earlier one.
        with self._flushing:
            with self._lock:
                batches = dict(self._pending)
                self._pending.clear()
            for execution, lines in batches.items():
                try:
                    self._store.append_lines(execution, lines)
                except Exception:
                    logger.exception(
                        "could not store %d log lines of %s", len(lines), execution
                    )
            if batches:
                with self._landed:
                    self._landed.notify_all()

    def stop(self) -> None:
        self._stopped.set()
        self._flusher.join(timeout=5)
        self.flush()

    def _flush_loop(self) -> None:
        while not self._stopped.wait(FLUSH_INTERVAL_S):
            self.flush()
