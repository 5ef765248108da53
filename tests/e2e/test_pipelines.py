"""Pipelines and executions end to end, on the local backend."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path

import pytest
from support.step_code import write_step_code
from support.suite import SuiteUnderTest, running_suite
from support.waiting import eventually, process_alive

from stepforge import (
    ExecutionFailedError,
    FailedPreconditionError,
    Input,
    InvalidArgumentError,
    NotFoundError,
    Output,
)


def make_pipeline(
    suite: SuiteUnderTest,
    folder: Path,
    function: str,
    inputs: Sequence[Input] = (),
    outputs: Sequence[Output] = (),
    language: str | None = None,
) -> str:
    config: dict[str, object] = {"local_folder": str(folder)}
    if language:
        config["language"] = language
    suite.sdk.create_step(
        step_name=function.replace(" ", "_"),
        function_path="steps.py",
        function_name=function,
        container_config=config,
        inputs=list(inputs),
        outputs=list(outputs),
    )
    pipeline = f"{function}-pipeline"
    suite.sdk.create_pipeline(pipeline_name=pipeline, step_name=function)
    return pipeline


@pytest.fixture
def code(tmp_path: Path) -> Path:
    return write_step_code(tmp_path / "code")


@pytest.fixture
def echo_pipeline(suite: SuiteUnderTest, code: Path) -> str:
    return make_pipeline(
        suite,
        code,
        "echo",
        inputs=[
            Input("text", "string", is_required=True),
            Input("count", "number", default_value=2),
        ],
        outputs=[Output("echoed", "string")],
    )


def test_run_pipeline_returns_outputs_and_keeps_logs(
    suite: SuiteUnderTest, echo_pipeline: str
) -> None:
    result = suite.sdk.run_pipeline(echo_pipeline, inputs={"text": "ab"})

    assert result["outputs"] == {"echoed": "abab"}
    execution = suite.sdk.get_pipeline_execution(result["execution_id"])
    assert execution["status"] == "Succeeded"
    assert execution["inputs"] == {"text": "ab", "count": 2}
    assert execution["created_at"] <= execution["started_at"] <= execution["ended_at"]
    logs = suite.sdk.get_pipeline_execution_logs(result["execution_id"])
    by_stream = {(line["stream"], line["message"]) for line in logs}
    assert ("stdout", "echo says ab") in by_stream
    assert ("stderr", "to stderr") in by_stream
    assert all(line["timestamp"] for line in logs)


def test_pipelines_can_be_read_listed_and_deleted(
    suite: SuiteUnderTest, echo_pipeline: str
) -> None:
    sdk = suite.sdk
    pipeline = sdk.get_pipeline(echo_pipeline)
    assert pipeline is not None and pipeline["step_name"] == "echo"
    assert [p["pipeline_name"] for p in sdk.list_pipelines()] == [echo_pipeline]

    with pytest.raises(FailedPreconditionError, match=echo_pipeline):
        sdk.delete_step("echo")

    sdk.delete_pipeline(echo_pipeline)
    assert sdk.get_pipeline(echo_pipeline) is None
    sdk.delete_step("echo")


def test_the_documented_three_input_example_runs_end_to_end(
    suite: SuiteUnderTest, code: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = make_pipeline(
        suite,
        code,
        "seed_example",
        inputs=[
            Input("input1", "string", is_required=True),
            Input("input2", "file"),
            Input("input3", "number"),
        ],
        outputs=[Output("prediction", "file", default_value="default,content,here")],
    )
    (tmp_path / "data.csv").write_text("a,b\n1,2\n")
    monkeypatch.chdir(tmp_path)

    result = suite.sdk.run_pipeline(
        pipeline, inputs={"input1": "abc", "input2": "data.csv", "input3": 3}
    )

    assert result["outputs"]["prediction"].read() == b"A,B\n1,2\n"
    saved = suite.sdk.get_pipeline_execution_output(
        result["execution_id"], "prediction", path=str(tmp_path / "out.csv")
    )
    assert Path(saved).read_bytes() == b"A,B\n1,2\n"
    logs = suite.sdk.get_pipeline_execution_logs(result["execution_id"])
    assert any(line["message"] == "input1 abc bytes 8 input3 3" for line in logs)


@pytest.mark.parametrize(
    ("inputs", "named", "rule"),
    [
        pytest.param(
            {"text": "a", "nope": 1}, "inputs.nope", "not an input", id="unknown"
        ),
        pytest.param({}, "inputs.text", "required", id="missing"),
        pytest.param({"text": "a", "count": True}, "inputs.count", "number", id="bool"),
        pytest.param({"text": 5}, "inputs.text", "string", id="wrong type"),
        pytest.param({"text": "x" * 60_001}, "inputs.text", "60,000", id="too large"),
    ],
)
def test_bad_inputs_are_refused_before_anything_runs(
    suite: SuiteUnderTest,
    echo_pipeline: str,
    inputs: dict[str, object],
    named: str,
    rule: str,
) -> None:
    with pytest.raises(InvalidArgumentError) as raised:
        suite.sdk.run_pipeline(echo_pipeline, inputs=inputs)

    assert named in str(raised.value) and rule in str(raised.value)
    assert suite.sdk.list_pipeline_executions(echo_pipeline) == []


def test_missing_optional_inputs_are_none_or_an_empty_stream(
    local_suite: SuiteUnderTest, code: Path
) -> None:
    pipeline = make_pipeline(
        local_suite,
        code,
        "defaults",
        inputs=[
            Input("text", "string"),
            Input("blob", "file"),
            Input("number", "number", default_value=7),
        ],
        outputs=[
            Output("text", "string"),
            Output("blob_size", "number"),
            Output("number", "number"),
        ],
    )

    result = local_suite.sdk.run_pipeline(pipeline)

    assert result["outputs"] == {"text": None, "blob_size": 0, "number": 7}


@pytest.mark.parametrize(
    ("kind", "content"),
    [
        ("bytes", b"from bytes"),
        ("path", b"from a path"),
        ("missing", b"fallback"),
    ],
)
def test_file_outputs_come_back_as_streams(
    local_suite: SuiteUnderTest, code: Path, kind: str, content: bytes
) -> None:
    pipeline = make_pipeline(
        local_suite,
        code,
        "outputs_as",
        inputs=[Input("kind", "string")],
        outputs=[Output("file", "file", default_value=b"fallback")],
    )

    result = local_suite.sdk.run_pipeline(pipeline, inputs={"kind": kind})

    assert result["outputs"]["file"].read() == content


def test_a_file_object_output_is_streamed(
    local_suite: SuiteUnderTest, code: Path
) -> None:
    pipeline = make_pipeline(
        local_suite,
        code,
        "outputs_as",
        inputs=[Input("kind", "string")],
        outputs=[Output("file", "file")],
    )

    result = local_suite.sdk.run_pipeline(pipeline, inputs={"kind": "file object"})

    assert result["outputs"]["file"].read() == (code / "steps.py").read_bytes()


@pytest.mark.parametrize(
    ("kind", "reason"),
    [("undeclared", "surprise"), ("wrong type", "file")],
)
def test_bad_outputs_fail_the_execution_naming_the_output(
    local_suite: SuiteUnderTest, code: Path, kind: str, reason: str
) -> None:
    pipeline = make_pipeline(
        local_suite,
        code,
        "outputs_as",
        inputs=[Input("kind", "string")],
        outputs=[Output("file", "file")],
    )

    with pytest.raises(ExecutionFailedError) as raised:
        local_suite.sdk.run_pipeline(pipeline, inputs={"kind": kind})

    assert reason in raised.value.reason


def test_an_exception_fails_the_run_with_its_message_and_traceback(
    local_suite: SuiteUnderTest, code: Path
) -> None:
    pipeline = make_pipeline(
        local_suite, code, "fails", inputs=[Input("message", "string")]
    )

    with pytest.raises(ExecutionFailedError) as raised:
        local_suite.sdk.run_pipeline(pipeline, inputs={"message": "model diverged"})

    assert raised.value.reason == "RuntimeError: model diverged"
    logs = local_suite.sdk.get_pipeline_execution_logs(raised.value.execution_id)
    messages = [line["message"] for line in logs if line["stream"] == "stderr"]
    assert "Traceback (most recent call last):" in messages
    execution = local_suite.sdk.get_pipeline_execution(raised.value.execution_id)
    assert execution["status"] == "Failed"
    assert execution["failure_reason"] == "RuntimeError: model diverged"


@pytest.fixture
def sleeps_pipeline(local_suite: SuiteUnderTest, code: Path) -> str:
    return make_pipeline(
        local_suite,
        code,
        "sleeps",
        inputs=[Input("seconds", "number"), Input("marker", "string")],
    )


def test_timeout_kills_the_whole_process_group(
    local_suite: SuiteUnderTest, sleeps_pipeline: str, tmp_path: Path
) -> None:
    marker = tmp_path / "child.pid"

    with pytest.raises(ExecutionFailedError, match="timed out after 1 s"):
        local_suite.sdk.run_pipeline(
            sleeps_pipeline,
            inputs={"seconds": 60, "marker": str(marker)},
            timeout_s=1,
        )

    child = int(marker.read_text())
    assert eventually(lambda: not process_alive(child))


def test_cancel_kills_a_running_execution(
    local_suite: SuiteUnderTest, sleeps_pipeline: str, tmp_path: Path
) -> None:
    marker = tmp_path / "child.pid"
    sdk = local_suite.sdk
    started = sdk.run_pipeline(
        sleeps_pipeline, inputs={"seconds": 60, "marker": str(marker)}, wait=False
    )
    execution_id = started["execution_id"]
    assert eventually(marker.exists)

    with pytest.raises(FailedPreconditionError, match=sleeps_pipeline):
        sdk.delete_pipeline(sleeps_pipeline)
    cancelled = sdk.cancel_pipeline_execution(execution_id)

    assert cancelled["status"] == "Cancelled"
    assert eventually(lambda: not process_alive(int(marker.read_text())))
    with pytest.raises(FailedPreconditionError):
        sdk.cancel_pipeline_execution(execution_id)
    sdk.delete_pipeline_execution(execution_id)
    with pytest.raises(NotFoundError):
        sdk.get_pipeline_execution(execution_id)
    sdk.delete_pipeline(sleeps_pipeline)


def test_logs_can_be_followed_while_the_step_runs(
    local_suite: SuiteUnderTest, sleeps_pipeline: str, tmp_path: Path
) -> None:
    sdk = local_suite.sdk
    started = sdk.run_pipeline(
        sleeps_pipeline,
        inputs={"seconds": 1.5, "marker": str(tmp_path / "m")},
        wait=False,
    )

    followed: Iterator[dict[str, str]] = sdk.get_pipeline_execution_logs(
        started["execution_id"], follow=True
    )
    first_tick = next(line for line in followed if line["message"].startswith("tick"))
    status_at_first_tick = sdk.get_pipeline_execution(started["execution_id"])["status"]
    rest = [line["message"] for line in followed]

    assert first_tick["message"] == "tick 0"
    assert status_at_first_tick == "Running"
    assert "tick 14" in rest
    assert rest[-1] == "execution succeeded"


def test_executions_wait_in_order_beyond_the_concurrency_limit(
    tmp_path: Path, code: Path
) -> None:
    with running_suite(tmp_path / "data", max_executions=1) as suite:
        pipeline = make_pipeline(
            suite,
            code,
            "stamp",
            inputs=[Input("label", "number")],
            outputs=[
                Output("label", "number"),
                Output("started", "number"),
                Output("ended", "number"),
            ],
        )
        ids = [
            suite.sdk.run_pipeline(pipeline, inputs={"label": index}, wait=False)[
                "execution_id"
            ]
            for index in range(4)
        ]
        for execution_id in ids:
            assert eventually(partial(_succeeded, suite, execution_id))
        runs = [
            {
                name: suite.sdk.get_pipeline_execution_output(execution_id, name)
                for name in ("label", "started", "ended")
            }
            for execution_id in ids
        ]

    assert [run["label"] for run in sorted(runs, key=lambda run: run["started"])] == [
        0,
        1,
        2,
        3,
    ]
    for earlier, later in zip(runs, runs[1:]):
        assert earlier["ended"] <= later["started"]


def _succeeded(suite: SuiteUnderTest, execution_id: str) -> bool:
    return suite.sdk.get_pipeline_execution(execution_id)["status"] == "Succeeded"


def test_the_step_sees_no_service_secret(
    local_suite: SuiteUnderTest, code: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = make_pipeline(
        local_suite,
        code,
        "environment",
        outputs=[Output("variables", "array"), Output("cuda", "string")],
    )

    result = local_suite.sdk.run_pipeline(pipeline)

    variables = result["outputs"]["variables"]
    assert not [
        name
        for name in variables
        if "TOKEN" in name or "S3" in name or "SECRET" in name
    ]
    assert "STEPFORGE_EXECUTION_ID" in variables
    assert result["outputs"]["cuda"] == ""


def test_stopping_the_suite_fails_its_running_executions(
    tmp_path: Path, code: Path
) -> None:
    marker = tmp_path / "child.pid"
    with running_suite(tmp_path / "data") as suite:
        pipeline = make_pipeline(
            suite,
            code,
            "sleeps",
            inputs=[Input("seconds", "number"), Input("marker", "string")],
        )
        started = suite.sdk.run_pipeline(
            pipeline, inputs={"seconds": 60, "marker": str(marker)}, wait=False
        )
        assert eventually(marker.exists)

    with running_suite(tmp_path / "data") as suite:
        execution = suite.sdk.get_pipeline_execution(started["execution_id"])
        suite.sdk.delete_pipeline(pipeline)

    assert execution["status"] == "Failed"
    assert execution["failure_reason"] == "stopped with the execution service"
    assert eventually(lambda: not process_alive(int(marker.read_text())))


def test_json_output_over_the_limit_fails_naming_it(
    local_suite: SuiteUnderTest, code: Path
) -> None:
    pipeline = make_pipeline(
        local_suite,
        code,
        "grow",
        inputs=[Input("size", "number")],
        outputs=[Output("data", "string")],
    )

    fits = local_suite.sdk.run_pipeline(pipeline, inputs={"size": 59_998})
    with pytest.raises(ExecutionFailedError) as raised:
        local_suite.sdk.run_pipeline(pipeline, inputs={"size": 59_999})

    assert len(fits["outputs"]["data"]) == 59_998
    assert "data" in raised.value.reason and "60000" in raised.value.reason.replace(
        ",", ""
    )


def test_file_input_given_as_a_file_object(
    local_suite: SuiteUnderTest, code: Path
) -> None:
    pipeline = make_pipeline(
        local_suite,
        code,
        "seed_example",
        inputs=[
            Input("input1", "string"),
            Input("input2", "file"),
            Input("input3", "number"),
        ],
        outputs=[Output("prediction", "file")],
    )

    result = local_suite.sdk.run_pipeline(
        pipeline,
        inputs={"input1": "x", "input2": io.BytesIO(b"stream me"), "input3": 1},
    )

    assert result["outputs"]["prediction"].read() == b"STREAM ME"
    listed = local_suite.sdk.list_pipeline_executions(pipeline)
    assert [item["execution_id"] for item in listed] == [result["execution_id"]]
    assert json.dumps(listed[0]["inputs"]["input2"]["size_bytes"]) == "9"
