"""What one execution may use: the platform's defaults, the merge with what its
environment sets, and the count of what the step writes to its log."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, fields

from stepforge.services.core.durations import duration_seconds
from stepforge.v1 import common_pb2, execution_pb2

MIB = 1024 * 1024
GIB = 1024 * MIB
# How long an execution may run when it was given no timeout.
DEFAULT_TIMEOUT_S = 3600.0


def execution_timeout_s(execution: execution_pb2.Execution) -> float:
    """The execution's timeout, or the default one when it has none."""
    seconds = duration_seconds(execution.timeout)
    return seconds if seconds > 0 else DEFAULT_TIMEOUT_S


@dataclass(frozen=True)
class Limits:
    """The limits one run is held to; every field is positive."""

    memory_bytes: int
    cpu_seconds: int
    open_files: int
    output_bytes: int

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if type(value) is not int or value <= 0:
                raise ValueError(
                    f"limits.{item.name} must be a positive integer, not {value!r}"
                )

    def for_runner(self, limit_memory: bool = True) -> dict[str, int]:
        """The spec's `limits`: what the runner sets on its own process."""
        spec = {"cpu_seconds": self.cpu_seconds, "open_files": self.open_files}
        if limit_memory:
            spec["memory_bytes"] = self.memory_bytes
        return spec

    def describe(self, limit_memory: bool = True) -> str:
        memory = _binary_size(self.memory_bytes) if limit_memory else "not limited"
        return (
            f"memory {memory}, cpu {self.cpu_seconds} s, "
            f"open files {self.open_files}, output {_binary_size(self.output_bytes)}"
        )


DEFAULT_LIMITS = Limits(
    # Address space, not resident memory: runtimes reserve more than they touch,
    # so this sits well above what a typical data step uses, while one runaway
    # step still fails alone instead of pushing the host into swap.
    memory_bytes=8 * GIB,
    # As long as the default wall-clock timeout, so a step busy on one core is
    # never cut short by it; one spinning on several cores is stopped sooner.
    cpu_seconds=3600,
    # Linux's usual soft limit, the one most libraries are written against; a
    # step that leaks descriptors fails in its own process, not the host's.
    open_files=1024,
    # Every line is kept in the execution store; far more than anyone reads,
    # and it bounds what one chatty step adds to the database.
    output_bytes=100 * MIB,
)


def effective_limits(
    requested: common_pb2.ExecutionLimits, defaults: Limits | None = None
) -> Limits:
    """`requested` with each zero field taken from `defaults`, which are the
    platform's (`DEFAULT_LIMITS`) when None."""
    base = DEFAULT_LIMITS if defaults is None else defaults
    values: dict[str, int] = {}
    for item in fields(Limits):
        value = getattr(requested, item.name)
        if value < 0:
            raise ValueError(
                f"limits.{item.name} must be zero (the platform default) or "
                f"positive, not {value}"
            )
        values[item.name] = value or getattr(base, item.name)
    return Limits(**values)


class OutputBudget:
    """Counts the bytes a step writes across its streams; the first write past
    `limit` calls `on_exceeded`, once."""

    def __init__(self, limit: int, on_exceeded: Callable[[], None]) -> None:
        self.limit = limit
        self._on_exceeded = on_exceeded
        self._spent = 0
        self._lock = threading.Lock()

    @property
    def exceeded(self) -> bool:
        with self._lock:
            return self._spent > self.limit

    def spend(self, size: int) -> bool:
        """Counts `size` bytes; False once the total is past the limit."""
        with self._lock:
            crossed = self._spent <= self.limit < self._spent + size
            self._spent += size
            within = self._spent <= self.limit
        if crossed:
            self._on_exceeded()
        return within


def _binary_size(size: int) -> str:
    for unit, scale in (("GiB", GIB), ("MiB", MIB), ("KiB", 1024)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"
