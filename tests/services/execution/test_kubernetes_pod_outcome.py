"""How a finished pod ends its execution, in the local backend's words."""

from __future__ import annotations

import signal

import pytest

from stepforge.services.execution import local_backend
from stepforge.services.execution.limits import Limits
from stepforge.services.execution.pod_outcome import (
    exit_reason,
    result_outcome,
    termination_reason,
)
from stepforge.v1 import execution_pb2

LIMITS = Limits(memory_bytes=1024, cpu_seconds=7, open_files=64, output_bytes=99)


def _stored(name: str, size: int) -> bool:
    return (name, size) == ("file", 3)


def test_a_succeeded_result_gives_its_json_and_file_outputs() -> None:
    result = {
        "status": "succeeded",
        "outputs": {
            "number": {"kind": "json", "value": [1, 2]},
            "file": {"kind": "file", "path": "/x", "size": 3, "sha256": "ab"},
        },
    }

    outcome = result_outcome(result, 0, _stored)

    assert outcome.status == execution_pb2.EXECUTION_STATUS_SUCCEEDED
    assert outcome.outputs["number"].json == "[1, 2]"
    assert outcome.outputs["file"].file.size_bytes == 3
    assert outcome.outputs["file"].file.sha256 == "ab"


def test_a_file_output_missing_from_the_store_fails_the_execution() -> None:
    result = {
        "status": "succeeded",
        "outputs": {"other": {"kind": "file", "size": 5, "sha256": "cd"}},
    }

    outcome = result_outcome(result, 0, _stored)

    assert outcome.status == execution_pb2.EXECUTION_STATUS_FAILED
    assert outcome.reason.startswith("output 'other' is not in the object store")


def test_a_failed_result_gives_its_reason() -> None:
    outcome = result_outcome(
        {"status": "failed", "reason": "KeyError: 'x'"}, 1, _stored
    )

    assert outcome.status == execution_pb2.EXECUTION_STATUS_FAILED
    assert outcome.reason == "KeyError: 'x'"


@pytest.mark.parametrize("returncode", [-signal.SIGKILL, -signal.SIGTERM, 3, 0])
def test_exit_reasons_read_as_the_local_backends(returncode: int) -> None:
    container_code = 128 - returncode if returncode < 0 else returncode

    assert exit_reason(container_code) == local_backend._exit_reason(returncode)


def test_a_container_killed_for_memory_names_the_limit() -> None:
    reason = termination_reason({"exitCode": 137, "reason": "OOMKilled"}, LIMITS)

    assert reason.startswith("the step used more than its memory limit of 1024 bytes")


def test_a_step_past_its_cpu_time_names_the_limit() -> None:
    reason = termination_reason({"exitCode": 128 + signal.SIGXCPU}, LIMITS)

    assert reason == "the step used more than its CPU time limit of 7 s"


def test_the_termination_message_comes_before_the_exit_status() -> None:
    terminated = {"exitCode": 3, "message": "input 'x': cannot download it\n"}

    assert termination_reason(terminated, LIMITS) == "input 'x': cannot download it"
    assert termination_reason({"exitCode": 3}, LIMITS) == (
        "the step's process exited with status 3 before it reported a result"
    )


def test_a_pod_that_left_no_trace_says_so() -> None:
    assert termination_reason(None, LIMITS) == (
        "the step's pod ended without reporting a result"
    )
