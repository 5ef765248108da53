from __future__ import annotations

import threading

import pytest

from stepforge.services.execution.limits import (
    DEFAULT_LIMITS,
    GIB,
    MIB,
    Limits,
    OutputBudget,
    effective_limits,
)
from stepforge.v1 import common_pb2


def test_the_platform_defaults() -> None:
    assert DEFAULT_LIMITS == Limits(
        memory_bytes=8 * GIB, cpu_seconds=3600, open_files=1024, output_bytes=100 * MIB
    )


def test_zero_fields_take_the_defaults_and_set_fields_win() -> None:
    requested = common_pb2.ExecutionLimits(cpu_seconds=60, output_bytes=5 * MIB)

    limits = effective_limits(requested)

    assert limits == Limits(
        memory_bytes=8 * GIB, cpu_seconds=60, open_files=1024, output_bytes=5 * MIB
    )


def test_unset_limits_are_the_defaults_given() -> None:
    defaults = Limits(memory_bytes=1, cpu_seconds=2, open_files=3, output_bytes=4)

    assert effective_limits(common_pb2.ExecutionLimits(), defaults) == defaults


def test_a_negative_limit_is_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match=r"limits\.open_files must be zero .* not -1"):
        effective_limits(common_pb2.ExecutionLimits(open_files=-1))


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match=r"limits\.cpu_seconds must be a positive"):
        Limits(memory_bytes=1, cpu_seconds=0, open_files=1, output_bytes=1)


def test_the_runner_gets_every_limit_but_output() -> None:
    assert DEFAULT_LIMITS.for_runner() == {
        "memory_bytes": 8 * GIB,
        "cpu_seconds": 3600,
        "open_files": 1024,
    }
    assert "memory_bytes" not in DEFAULT_LIMITS.for_runner(limit_memory=False)


def test_limits_are_described_in_binary_units() -> None:
    assert DEFAULT_LIMITS.describe() == (
        "memory 8.0 GiB, cpu 3600 s, open files 1024, output 100.0 MiB"
    )
    small = Limits(memory_bytes=1536, cpu_seconds=1, open_files=8, output_bytes=100)
    assert small.describe(limit_memory=False) == (
        "memory not limited, cpu 1 s, open files 8, output 100 B"
    )


def test_output_budget_allows_up_to_the_limit_and_reports_once() -> None:
    calls: list[int] = []
    budget = OutputBudget(10, lambda: calls.append(1))

    assert budget.spend(6) and budget.spend(4)
    assert not budget.exceeded
    assert not budget.spend(1)
    assert not budget.spend(5)
    assert budget.exceeded
    assert calls == [1]


def test_output_budget_counts_every_stream_together() -> None:
    calls: list[int] = []
    budget = OutputBudget(1000, lambda: calls.append(1))
    writers = [
        threading.Thread(target=lambda: [budget.spend(1) for _ in range(600)])
        for _ in range(2)
    ]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()

    assert budget.exceeded
    assert calls == [1]
