"""Executions held to their limits end to end, on the local backend.

The suite starts with low platform defaults; executions whose environment sets
no limits of its own run under them."""

from __future__ import annotations

import resource
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from support.step_code import write_step_code
from support.suite import SuiteUnderTest, running_suite
from support.waiting import eventually, process_alive

from stepforge import ExecutionFailedError, Input, Output
from stepforge.services.execution import limits
from stepforge.services.execution.limits import MIB, Limits

# A language that asks for a GPU; the device itself is declared through
# STEPFORGE_GPUS, as in test_gpu_executions.
GPU_LANGUAGE = "python-cuda:3.11-12.4"
LOW_LIMITS = Limits(
    memory_bytes=300 * MIB, cpu_seconds=1, open_files=1024, output_bytes=1 * MIB
)


@pytest.fixture
def suite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SuiteUnderTest]:
    monkeypatch.setattr(limits, "DEFAULT_LIMITS", LOW_LIMITS)
    with running_suite(tmp_path / "data") as running:
        yield running


@pytest.fixture
def code(tmp_path: Path) -> Path:
    return write_step_code(tmp_path / "code")


def make_pipeline(
    suite: SuiteUnderTest,
    folder: Path,
    function: str,
    inputs: Sequence[Input] = (),
    outputs: Sequence[Output] = (),
) -> str:
    suite.sdk.create_step(
        step_name=function,
        function_path="steps.py",
        function_name=function,
        container_config={"local_folder": str(folder)},
        inputs=list(inputs),
        outputs=list(outputs),
    )
    suite.sdk.create_pipeline(pipeline_name=function, step_name=function)
    return function


def test_output_past_the_limit_fails_and_kills_the_process_group(
    suite: SuiteUnderTest, code: Path, tmp_path: Path
) -> None:
    pipeline = make_pipeline(
        suite,
        code,
        "floods",
        inputs=[Input("size", "number"), Input("marker", "string")],
    )
    marker = tmp_path / "child.pid"

    with pytest.raises(ExecutionFailedError) as raised:
        suite.sdk.run_pipeline(
            pipeline,
            inputs={"size": 2 * MIB, "marker": str(marker)},
            timeout_s=60,
        )

    assert raised.value.reason == (
        "the step wrote more than its output limit of 1048576 bytes"
    )
    assert eventually(lambda: not process_alive(int(marker.read_text())))
    logs = suite.sdk.get_pipeline_execution_logs(raised.value.execution_id)
    stored = sum(
        len(line["message"]) + 1 for line in logs if line["stream"] == "stdout"
    )
    assert 0 < stored <= 1 * MIB
    assert (
        "system",
        "limits: memory 300.0 MiB, cpu 1 s, open files 1024, output 1.0 MiB",
    ) in {(line["stream"], line["message"]) for line in logs}


def test_cpu_time_past_the_limit_fails_naming_the_limit(
    suite: SuiteUnderTest, code: Path
) -> None:
    pipeline = make_pipeline(suite, code, "spins")

    with pytest.raises(ExecutionFailedError) as raised:
        suite.sdk.run_pipeline(pipeline, timeout_s=60)

    assert raised.value.reason == "the step used more than its CPU time limit of 1 s"


def test_memory_past_the_limit_keeps_the_runners_reason(
    suite: SuiteUnderTest, code: Path
) -> None:
    pipeline = make_pipeline(
        suite,
        code,
        "allocates",
        inputs=[Input("megabytes", "number")],
        outputs=[Output("size", "number")],
    )

    fits = suite.sdk.run_pipeline(pipeline, inputs={"megabytes": 50})
    with pytest.raises(ExecutionFailedError) as raised:
        suite.sdk.run_pipeline(pipeline, inputs={"megabytes": 600})

    assert fits["outputs"]["size"] == 50 * MIB
    assert raised.value.reason == (
        f"MemoryError: the step used more than its memory limit of {300 * MIB} bytes"
    )


def test_a_gpu_step_has_no_address_space_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: Path
) -> None:
    monkeypatch.setattr(limits, "DEFAULT_LIMITS", LOW_LIMITS)
    monkeypatch.setenv("STEPFORGE_GPUS", "0")
    outputs = [Output("memory", "number"), Output("open_files", "number")]
    with running_suite(tmp_path / "data") as suite:
        for name, language in (("cpu", None), ("gpu", GPU_LANGUAGE)):
            config: dict[str, object] = {"local_folder": str(code)}
            if language:
                config["language"] = language
            suite.sdk.create_step(
                step_name=name,
                function_path="steps.py",
                function_name="rlimits",
                container_config=config,
                outputs=outputs,
            )
            suite.sdk.create_pipeline(pipeline_name=name, step_name=name)
        on_cpu = suite.sdk.run_pipeline("cpu")
        on_gpu = suite.sdk.run_pipeline("gpu")
        gpu_logs = suite.sdk.get_pipeline_execution_logs(on_gpu["execution_id"])

    assert on_cpu["outputs"] == {"memory": 300 * MIB, "open_files": 1024}
    assert on_gpu["outputs"] == {
        "memory": resource.getrlimit(resource.RLIMIT_AS)[0],
        "open_files": 1024,
    }
    assert "limits: memory not limited, cpu 1 s, open files 1024, output 1.0 MiB" in [
        line["message"] for line in gpu_logs
    ]
