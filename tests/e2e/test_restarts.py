"""Executions across a crash of `stepforge up`."""

from __future__ import annotations

import signal
from pathlib import Path

from support.s3_server import free_port
from support.step_code import write_step_code
from support.suite import suite_process
from support.waiting import eventually, process_alive

from stepforge import Input


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
        assert eventually(marker.exists)
        sdk.close()
        first.stop(signal.SIGKILL)
    step_child = int(marker.read_text())
    assert process_alive(step_child)

    with suite_process(data_dir, port) as second:
        with second.sdk() as sdk:
            execution = sdk.get_pipeline_execution(started["execution_id"])
            sdk.delete_pipeline("sleepy")

    assert execution["status"] == "Failed"
    assert (
        execution["failure_reason"]
        == "interrupted by a restart of the execution service"
    )
    assert eventually(lambda: not process_alive(step_child))
