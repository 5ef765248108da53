"""Executions across a crash of `stepforge up`."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from support.s3_server import free_port
from support.step_code import write_step_code
from support.suite import suite_process

from stepforge import Input


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def _eventually(condition: object, timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_a_crash_fails_running_executions_and_kills_their_processes(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    code = write_step_code(tmp_path / "code")
    marker = tmp_path / "child.pid"
    port = free_port()

    with suite_process(data_dir, port) as first:
        sdk = first.sdk()
        sdk.create_step(
            function_path="steps.py",
            function_name="sleeps",
            container_config={"local_folder": str(code)},
            inputs=[Input("seconds", "number"), Input("marker", "string")],
        )
        sdk.create_pipeline(pipeline_name="sleepy", step_name="sleeps")
        started = sdk.run_pipeline(
            "sleepy", inputs={"seconds": 120, "marker": str(marker)}, wait=False
        )
        assert _eventually(marker.exists)
        sdk.close()
        first.stop(signal.SIGKILL)
    step_child = int(marker.read_text())
    assert _alive(step_child)

    with suite_process(data_dir, port) as second:
        with second.sdk() as sdk:
            execution = sdk.get_pipeline_execution(started["execution_id"])
            sdk.delete_pipeline("sleepy")

    assert execution["status"] == "Failed"
    assert (
        execution["failure_reason"]
        == "interrupted by a restart of the execution service"
    )
    assert _eventually(lambda: not _alive(step_child))
