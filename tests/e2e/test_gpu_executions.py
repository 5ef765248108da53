"""GPU steps on the local backend: one device each, queued while all are busy.

No GPU is attached to the machines that run these tests, so the devices are
declared through STEPFORGE_GPUS, which the service reads instead of asking
the driver; the allocation, the queueing and what the step sees are real.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.step_code import write_step_code
from support.suite import SuiteUnderTest, running_suite

from stepforge import ExecutionFailedError, Input, Output

GPU_LANGUAGE = "python-cuda:3.11-12.4"


def gpu_suite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gpus: str, **settings: object
) -> Iterator[SuiteUnderTest]:
    monkeypatch.setenv("STEPFORGE_GPUS", gpus)
    with running_suite(tmp_path / "data", **settings) as suite:
        code = write_step_code(tmp_path / "code")
        for function, outputs in (
            ("environment", [Output("variables", "array"), Output("cuda", "string")]),
            (
                "stamp",
                [
                    Output("label", "number"),
                    Output("started", "number"),
                    Output("ended", "number"),
                ],
            ),
        ):
            suite.sdk.create_step(
                step_name=function,
                function_path="steps.py",
                function_name=function,
                container_config={"local_folder": str(code), "language": GPU_LANGUAGE},
                inputs=[Input("label", "number")] if function == "stamp" else [],
                outputs=outputs,
            )
            suite.sdk.create_pipeline(pipeline_name=function, step_name=function)
        yield suite


def test_a_gpu_step_gets_its_own_device(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for suite in gpu_suite(tmp_path, monkeypatch, "3"):
        result = suite.sdk.run_pipeline("environment")
        execution = suite.sdk.get_pipeline_execution(result["execution_id"])

    assert result["outputs"]["cuda"] == "3"
    assert execution["gpu_devices"] == ["3"]


def test_gpu_steps_queue_while_every_device_is_busy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for suite in gpu_suite(tmp_path, monkeypatch, "0", max_executions=4):
        first = suite.sdk.run_pipeline("stamp", inputs={"label": 1}, wait=False)
        second = suite.sdk.run_pipeline("stamp", inputs={"label": 2})
        ended_first = suite.sdk.get_pipeline_execution_output(
            first["execution_id"], "ended"
        )
        started_second = second["outputs"]["started"]

    assert started_second >= ended_first


def test_a_gpu_step_fails_at_once_on_a_host_without_gpus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for suite in gpu_suite(tmp_path, monkeypatch, "none"):
        with pytest.raises(ExecutionFailedError) as raised:
            suite.sdk.run_pipeline("environment")

    assert "needs a GPU" in raised.value.reason


def test_gpu_steps_can_fall_back_to_the_cpu_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for suite in gpu_suite(tmp_path, monkeypatch, "none", gpu_fallback_to_cpu=True):
        result = suite.sdk.run_pipeline("environment")
        logs = suite.sdk.get_pipeline_execution_logs(result["execution_id"])

    assert result["outputs"]["cuda"] == ""
    assert any(
        line["stream"] == "system" and line["message"].startswith("warning:")
        for line in logs
    )
