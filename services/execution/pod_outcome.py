"""How a finished pod ends its execution: from the result it stored, or from
how its container ended when it stored none. The reasons read as the local
backend's do, so the backend never shows through."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from stepforge.services.execution.limits import Limits
from stepforge.v1 import execution_pb2

SUCCEEDED = execution_pb2.EXECUTION_STATUS_SUCCEEDED
FAILED = execution_pb2.EXECUTION_STATUS_FAILED

# `(output name, size) -> whether the store holds that output at that size`.
OutputCheck = Callable[[str, int], bool]


@dataclass(frozen=True)
class Outcome:
    status: execution_pb2.ExecutionStatus.ValueType
    reason: str = ""
    outputs: dict[str, execution_pb2.ExecutionValue] = field(default_factory=dict)


def result_outcome(
    result: Any, exit_code: int | None, output_stored: OutputCheck
) -> Outcome:
    """The end the runner's `result` gives: its outputs, or its reason."""
    if not isinstance(result, dict):
        return Outcome(FAILED, "the pod stored a result that is not a JSON object")
    if result.get("status") != "succeeded":
        return Outcome(FAILED, str(result.get("reason") or exit_reason(exit_code)))
    outputs: dict[str, execution_pb2.ExecutionValue] = {}
    for name, value in dict(result.get("outputs") or {}).items():
        if value.get("kind") == "json":
            outputs[name] = execution_pb2.ExecutionValue(
                json=json.dumps(value.get("value"))
            )
            continue
        size = int(value.get("size", -1))
        if not output_stored(name, size):
            return Outcome(
                FAILED,
                f"output {name!r} is not in the object store as the pod reported "
                f"it ({size} bytes)",
            )
        outputs[name] = execution_pb2.ExecutionValue(
            file=execution_pb2.StoredFile(
                size_bytes=size, sha256=str(value.get("sha256", ""))
            )
        )
    return Outcome(SUCCEEDED, outputs=outputs)


def termination_reason(terminated: Mapping[str, Any] | None, limits: Limits) -> str:
    """Why a container that stored no result failed, from its terminated
    state: the kernel's or the cluster's verdict first, then the reason
    pod_entry wrote, then its exit status."""
    if terminated is None:
        return "the step's pod ended without reporting a result"
    exit_code = terminated.get("exitCode")
    if terminated.get("reason") == "OOMKilled":
        return (
            f"the step used more than its memory limit of {limits.memory_bytes} "
            "bytes (the container was killed for it)"
        )
    if exit_code == 128 + signal.SIGXCPU:
        return f"the step used more than its CPU time limit of {limits.cpu_seconds} s"
    message = str(terminated.get("message") or "").strip()
    if message:
        return message
    return exit_reason(exit_code if isinstance(exit_code, int) else None)


def exit_reason(exit_code: int | None) -> str:
    """The local backend's words for a process that reported no result; a
    container reports a signal as 128 plus its number."""
    if exit_code is None:
        ending = "ended"
    elif exit_code > 128 and _signal_name(exit_code - 128):
        ending = f"was killed by {_signal_name(exit_code - 128)}"
    else:
        ending = f"exited with status {exit_code}"
    return f"the step's process {ending} before it reported a result"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return ""
