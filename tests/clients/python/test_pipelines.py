"""The SDK's pipeline and execution calls, against an in-process fake service."""

from __future__ import annotations

import hashlib
import io
import json
import stat
import tracemalloc
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any, Callable

import grpc
import pytest
from support.fake_execution_suite import (
    CREATED,
    CREATED_ISO,
    FILE,
    MIB,
    STRING,
    TOKEN,
    FakeSuite,
    Plan,
)

from stepforge import (
    ExecutionFailedError,
    ExecutionOutputFile,
    InvalidArgumentError,
    NotFoundError,
    StepforgeError,
    StepforgeSdk,
)
from stepforge._rules import CHUNK_BYTES
from stepforge.errors import FailedPreconditionError
from stepforge.v1 import (
    common_pb2,
    execution_pb2,
    execution_pb2_grpc,
    registry_pb2_grpc,
)


@pytest.fixture
def fake() -> Iterator[FakeSuite]:
    # The fake implements only the calls these tests make.
    suite = FakeSuite()  # type: ignore[abstract]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    execution_pb2_grpc.add_ExecutionServiceServicer_to_server(suite, server)
    registry_pb2_grpc.add_RegistryServiceServicer_to_server(suite, server)
    suite.port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield suite
    server.stop(None)


@pytest.fixture
def sdk(fake: FakeSuite) -> Iterator[StepforgeSdk]:
    with StepforgeSdk(f"127.0.0.1:{fake.port}", TOKEN) as opened:
        yield opened


class GeneratedFile(io.RawIOBase):
    """`size` bytes made up as they are read, so none is ever held whole."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self._left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = min(len(buffer), self._left)
        buffer[:count] = b"\x5a" * count
        self._left -= count
        return count


def _violation_fields(error: StepforgeError) -> list[str]:
    return [violation.field for violation in error.field_violations]


# Pipelines.


def test_create_pipeline_sends_both_names_and_returns_the_pipeline(
    fake: FakeSuite, sdk: StepforgeSdk
) -> None:
    created = sdk.create_pipeline("prices", "clean")

    assert created == {
        "pipeline_name": "prices",
        "step_name": "clean",
        "created_at": CREATED_ISO,
    }
    assert fake.pipelines["pipelines/prices"].step == "steps/clean"


def test_names_are_checked_before_any_request(
    fake: FakeSuite, sdk: StepforgeSdk
) -> None:
    with pytest.raises(InvalidArgumentError) as bad_pipeline:
        sdk.create_pipeline("no spaces", "clean")
    with pytest.raises(InvalidArgumentError) as bad_step:
        sdk.create_pipeline("prices", "a/b")
    with pytest.raises(InvalidArgumentError) as bad_run:
        sdk.run_pipeline("x" * 64)
    with pytest.raises(InvalidArgumentError) as bad_id:
        sdk.get_pipeline_execution("executions/abc")
    with pytest.raises(InvalidArgumentError) as empty_id:
        sdk.get_pipeline_execution_logs("")

    assert _violation_fields(bad_pipeline.value) == ["pipeline_name"]
    assert _violation_fields(bad_step.value) == ["step_name"]
    assert _violation_fields(bad_run.value) == ["pipeline_name"]
    assert _violation_fields(bad_id.value) == ["execution_id"]
    assert _violation_fields(empty_id.value) == ["execution_id"]
    assert fake.calls == []


def test_get_pipeline_returns_none_when_it_does_not_exist(
    fake: FakeSuite, sdk: StepforgeSdk
) -> None:
    fake.add_pipeline("prices", {})

    assert sdk.get_pipeline("missing") is None
    assert sdk.get_pipeline("prices") == {
        "pipeline_name": "prices",
        "step_name": "prices-step",
        "created_at": CREATED_ISO,
    }


def test_list_pipelines_reads_every_page_and_delete_removes_one(
    fake: FakeSuite, sdk: StepforgeSdk
) -> None:
    for name in ("a", "b", "c", "d", "e"):
        fake.add_pipeline(name, {})

    listed = [item["pipeline_name"] for item in sdk.list_pipelines()]
    sdk.delete_pipeline("c")

    assert listed == ["a", "b", "c", "d", "e"]
    assert fake.calls.count("ListPipelines") == 3
    assert "pipelines/c" not in fake.pipelines


# Running: what is sent.


def test_file_input_given_as_a_str_path_streams_in_chunks_of_at_most_1_mib(
    fake: FakeSuite,
    sdk: StepforgeSdk,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake.add_pipeline("prices", {"input1": STRING, "input2": FILE})
    fake.plans["pipelines/prices"] = Plan()
    content = bytes(range(256)) * (3 * MIB // 256) + b"tail"
    (tmp_path / "data.csv").write_bytes(content)
    monkeypatch.chdir(tmp_path)

    sdk.run_pipeline("prices", {"input1": "hello", "input2": "data.csv"}, wait=False)

    (run,) = fake.runs
    assert run.header_came_first
    assert run.header is not None
    assert run.header.pipeline == "pipelines/prices"
    assert dict(run.header.json_inputs) == {"input1": '"hello"'}
    assert list(run.header.file_inputs) == ["input2"]
    assert run.content["input2"] == content
    sizes = [size for name, size in run.chunk_sizes if name == "input2"]
    assert len(sizes) >= 3
    assert max(sizes) <= CHUNK_BYTES
    assert run.authorization == f"Bearer {TOKEN}"


def test_file_objects_paths_and_bytes_stream_in_the_order_given(
    fake: FakeSuite, sdk: StepforgeSdk, tmp_path: Path
) -> None:
    fake.add_pipeline("mix", {"a": FILE, "b": FILE, "c": FILE})
    fake.plans["pipelines/mix"] = Plan()
    path = tmp_path / "b.bin"
    path.write_bytes(b"from a path")

    sdk.run_pipeline(
        "mix",
        {"c": io.BytesIO(b"x" * (CHUNK_BYTES + 5)), "b": path, "a": b"raw bytes"},
        wait=False,
    )

    (run,) = fake.runs
    assert run.header is not None
    assert list(run.header.file_inputs) == ["c", "b", "a"]
    assert [name for name, _ in run.chunk_sizes] == ["c", "c", "b", "a"]
    assert run.content == {
        "c": b"x" * (CHUNK_BYTES + 5),
        "b": b"from a path",
        "a": b"raw bytes",
    }


def test_json_inputs_are_sent_as_json_text(fake: FakeSuite, sdk: StepforgeSdk) -> None:
    fake.add_pipeline("calc", {"n": common_pb2.DATA_TYPE_NUMBER})
    fake.plans["pipelines/calc"] = Plan()

    sdk.run_pipeline(
        "calc",
        {"n": 2.5, "items": [1, "two", None], "flag": True, "deep": {"k": "é"}},
        wait=False,
        timeout_s=90,
    )

    (run,) = fake.runs
    assert run.header is not None
    sent = {name: json.loads(text) for name, text in run.header.json_inputs.items()}
    assert sent == {
        "n": 2.5,
        "items": [1, "two", None],
        "flag": True,
        "deep": {"k": "é"},
    }
    assert list(run.header.file_inputs) == []
    assert run.header.timeout.ToSeconds() == 90


def test_missing_local_file_is_rejected_before_running(
    fake: FakeSuite, sdk: StepforgeSdk, tmp_path: Path
) -> None:
    fake.add_pipeline("prices", {"input2": FILE})

    with pytest.raises(InvalidArgumentError) as as_str:
        sdk.run_pipeline("prices", {"input2": str(tmp_path / "absent.csv")})
    with pytest.raises(InvalidArgumentError) as as_path:
        sdk.run_pipeline("prices", {"input2": tmp_path})

    assert _violation_fields(as_str.value) == ["inputs.input2"]
    assert "absent.csv" in str(as_str.value)
    assert _violation_fields(as_path.value) == ["inputs.input2"]
    assert "RunPipeline" not in fake.calls


def test_bad_inputs_are_rejected_before_any_request(
    fake: FakeSuite, sdk: StepforgeSdk
) -> None:
    with pytest.raises(InvalidArgumentError) as not_json:
        sdk.run_pipeline("prices", {"when": object()})
    with pytest.raises(InvalidArgumentError) as nan:
        sdk.run_pipeline("prices", {"ratio": float("nan")})
    with pytest.raises(InvalidArgumentError) as text_file:
        sdk.run_pipeline("prices", {"input2": io.StringIO("text")})
    with pytest.raises(InvalidArgumentError) as timeout:
        sdk.run_pipeline("prices", timeout_s=0)

    assert _violation_fields(not_json.value) == ["inputs.when"]
    assert _violation_fields(nan.value) == ["inputs.ratio"]
    assert _violation_fields(timeout.value) == ["timeout_s"]
    assert fake.calls == []
    assert _violation_fields(text_file.value) == ["inputs.input2"]


def test_a_failing_file_object_surfaces_its_own_error(
    fake: FakeSuite, sdk: StepforgeSdk
) -> None:
    fake.add_pipeline("prices", {"input2": FILE})
    fake.plans["pipelines/prices"] = Plan()

    class BrokenFile(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, buffer: Any) -> int:
            raise OSError("the disk went away")

    with pytest.raises(OSError, match="the disk went away"):
        sdk.run_pipeline("prices", {"input2": BrokenFile()})

    assert fake.executions == {}


def test_streaming_a_256_mib_input_keeps_memory_bounded(
    fake: FakeSuite, sdk: StepforgeSdk
) -> None:
    fake.add_pipeline("big", {"blob": FILE})
    fake.plans["pipelines/big"] = Plan()
    fake.keep_content = False
    size = 256 * MIB

    tracemalloc.start()
    try:
        sdk.run_pipeline("big", {"blob": GeneratedFile(size)}, wait=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    (run,) = fake.runs
    assert sum(chunk for _, chunk in run.chunk_sizes) == size
    assert peak < 20 * MIB


# Running: what comes back.


def test_run_without_wait_returns_the_id_at_once(
    fake: FakeSuite, sdk: StepforgeSdk
) -> None:
    fake.add_pipeline("prices", {})
    fake.plans["pipelines/prices"] = Plan(running_waits=5)

    result = sdk.run_pipeline("prices", wait=False)

    assert result == {"execution_id": "run-1", "outputs": {}}
    assert "WaitExecution" not in fake.calls


def test_run_with_wait_returns_json_values_and_readable_files(
    fake: FakeSuite, sdk: StepforgeSdk
) -> None:
    fake.add_pipeline("prices", {})
    report = b"line one\nline two\n" * 50_000
    fake.plans["pipelines/prices"] = Plan(
        json_outputs={"total": 42, "labels": ["a", "b"]},
        file_outputs={"report": report},
        running_waits=2,
    )

    result = sdk.run_pipeline("prices")

    assert result["execution_id"] == "run-1"
    outputs = result["outputs"]
    assert outputs["total"] == 42
    assert outputs["labels"] == ["a", "b"]
    assert isinstance(outputs["report"], ExecutionOutputFile)
    assert "ReadExecutionOutput" not in fake.calls
    with outputs["report"] as opened:
        assert opened.read() == report
    assert fake.calls.count("WaitExecution") == 3


def test_failed_execution_raises_with_its_reason(
    fake: FakeSuite, sdk: StepforgeSdk
) -> None:
    fake.add_pipeline("prices", {})
    fake.plans["pipelines/prices"] = Plan(
        status=execution_pb2.EXECUTION_STATUS_FAILED, reason="ZeroDivisionError"
    )

    with pytest.raises(ExecutionFailedError) as raised:
        sdk.run_pipeline("prices")

    assert raised.value.execution_id == "run-1"
    assert raised.value.status == "Failed"
    assert raised.value.reason == "ZeroDivisionError"
    assert str(raised.value) == "execution run-1 failed: ZeroDivisionError"


def test_cancelled_execution_raises_with_status_cancelled(
    fake: FakeSuite, sdk: StepforgeSdk
) -> None:
    fake.add_pipeline("prices", {})
    fake.plans["pipelines/prices"] = Plan(
        status=execution_pb2.EXECUTION_STATUS_CANCELLED
    )

    with pytest.raises(ExecutionFailedError) as raised:
        sdk.run_pipeline("prices")

    assert raised.value.status == "Cancelled"
    assert raised.value.reason == ""


def _finished_run(fake: FakeSuite, sdk: StepforgeSdk, **outputs: Any) -> str:
    fake.add_pipeline("prices", {})
    files = {name: value for name, value in outputs.items() if isinstance(value, bytes)}
    values = {name: value for name, value in outputs.items() if name not in files}
    fake.plans["pipelines/prices"] = Plan(json_outputs=values, file_outputs=files)
    return str(sdk.run_pipeline("prices")["execution_id"])


def test_output_file_reads_in_pieces_lines_and_into_buffers(
    fake: FakeSuite, sdk: StepforgeSdk
) -> None:
    content = b"".join(b"row %d\n" % index for index in range(100_000))
    execution_id = _finished_run(fake, sdk, rows=content)

    opened = sdk.get_pipeline_execution_output(execution_id, "rows")
    first = opened.read(4)
    buffer = bytearray(6)
    filled = opened.readinto(buffer)
    lines = list(opened)
    opened.close()

    assert first == b"row "
    assert len(first) == 4
    assert bytes(buffer[:filled]) == b"0\nrow "
    assert lines[0] == b"1\n"
    assert b"row 0\nrow " + b"".join(lines) == content


def test_closing_an_output_file_early_cancels_its_stream(
    fake: FakeSuite, sdk: StepforgeSdk
) -> None:
    execution_id = _finished_run(fake, sdk, blob=b"z" * (64 * MIB))
    fake.output_chunk_bytes = CHUNK_BYTES

    opened = sdk.get_pipeline_execution_output(execution_id, "blob")
    assert opened.read(10) == b"z" * 10
    opened.close()

    assert fake.output_cancelled.wait(10)
    with pytest.raises(ValueError):
        opened.read(1)


def test_json_output_is_returned_as_its_value(
    fake: FakeSuite, sdk: StepforgeSdk
) -> None:
    execution_id = _finished_run(fake, sdk, total={"sum": 3})

    assert sdk.get_pipeline_execution_output(execution_id, "total") == {"sum": 3}


def test_unknown_output_name_lists_the_outputs(
    fake: FakeSuite, sdk: StepforgeSdk
) -> None:
    execution_id = _finished_run(fake, sdk, total=1, report=b"r")

    with pytest.raises(InvalidArgumentError) as raised:
        sdk.get_pipeline_execution_output(execution_id, "totl")

    assert _violation_fields(raised.value) == ["output_name"]
    assert "report, total" in str(raised.value)


def test_output_of_an_unfinished_execution_is_a_failed_precondition(
    fake: FakeSuite, sdk: StepforgeSdk
) -> None:
    fake.add_pipeline("prices", {})
    fake.plans["pipelines/prices"] = Plan(file_outputs={"report": b"r"})
    execution_id = sdk.run_pipeline("prices", wait=False)["execution_id"]

    with pytest.raises(FailedPreconditionError, match="Pending"):
        sdk.get_pipeline_execution_output(execution_id, "report")


def test_output_to_a_path_is_written_whole_and_atomically(
    fake: FakeSuite, sdk: StepforgeSdk, tmp_path: Path
) -> None:
    content = bytes(range(256)) * 10_000
    execution_id = _finished_run(fake, sdk, model=content)
    target = tmp_path / "model.bin"
    target.write_bytes(b"previous")

    fake.output_abort_after = 2
    with pytest.raises(StepforgeError, match="object store broke"):
        sdk.get_pipeline_execution_output(execution_id, "model", target)
    after_failure = target.read_bytes()
    fake.output_abort_after = None
    written = sdk.get_pipeline_execution_output(execution_id, "model", target)

    assert after_failure == b"previous"
    assert written == str(target)
    assert target.read_bytes() == content
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model.bin"]


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o027, 0o640)], ids=oct)
def test_output_written_to_a_path_gets_the_permissions_of_a_new_file(
    fake: FakeSuite,
    sdk: StepforgeSdk,
    tmp_path: Path,
    set_umask: Callable[[int], None],
    mask: int,
    mode: int,
) -> None:
    execution_id = _finished_run(fake, sdk, model=b"weights")
    target = tmp_path / "model.bin"

    set_umask(mask)
    sdk.get_pipeline_execution_output(execution_id, "model", target)

    assert stat.S_IMODE(target.stat().st_mode) == mode


def test_output_that_does_not_match_its_recorded_digest_is_an_error(
    fake: FakeSuite, sdk: StepforgeSdk
) -> None:
    execution_id = _finished_run(fake, sdk, model=b"the real content")
    fake.file_content[(f"executions/{execution_id}", "model")] = b"tampered content"

    opened = sdk.get_pipeline_execution_output(execution_id, "model")
    with pytest.raises(StepforgeError, match="SHA-256"):
        opened.read()


# Reading executions.


def test_get_pipeline_execution_returns_every_field(
    fake: FakeSuite, sdk: StepforgeSdk
) -> None:
    fake.add_pipeline("prices", {"data": FILE})
    fake.plans["pipelines/prices"] = Plan(
        json_outputs={"total": 7}, file_outputs={"report": b"abc"}
    )
    execution_id = sdk.run_pipeline("prices", {"data": b"12345", "n": 3})[
        "execution_id"
    ]

    execution = sdk.get_pipeline_execution(execution_id)

    assert execution == {
        "execution_id": "run-1",
        "pipeline_name": "prices",
        "step_name": "prices-step",
        "status": "Succeeded",
        "created_at": CREATED_ISO,
        "started_at": CREATED_ISO,
        "ended_at": CREATED_ISO,
        "failure_reason": None,
        "inputs": {
            "n": 3,
            "data": {"size_bytes": 5, "sha256": hashlib.sha256(b"12345").hexdigest()},
        },
        "outputs": {
            "total": 7,
            "report": {"size_bytes": 3, "sha256": hashlib.sha256(b"abc").hexdigest()},
        },
        "gpu_devices": ["0"],
    }


def test_unknown_execution_raises_not_found(sdk: StepforgeSdk) -> None:
    with pytest.raises(NotFoundError):
        sdk.get_pipeline_execution("nope")


def test_list_cancel_and_delete_executions(fake: FakeSuite, sdk: StepforgeSdk) -> None:
    fake.add_pipeline("prices", {})
    fake.plans["pipelines/prices"] = Plan()
    ids = [sdk.run_pipeline("prices", wait=False)["execution_id"] for _ in range(3)]

    listed = sdk.list_pipeline_executions("prices")
    cancelled = sdk.cancel_pipeline_execution(ids[0])
    sdk.delete_pipeline_execution(ids[1])

    assert [item["execution_id"] for item in listed] == list(reversed(ids))
    assert listed[0]["status"] == "Pending"
    assert listed[0]["ended_at"] is None
    assert fake.calls.count("ListExecutions") == 2
    assert cancelled["status"] == "Cancelled"
    assert cancelled["failure_reason"] == "cancelled by the user"
    assert f"executions/{ids[1]}" not in fake.executions


def _log_line(
    sequence: int,
    text: str,
    stream: execution_pb2.LogStream.ValueType = execution_pb2.LOG_STREAM_STDOUT,
) -> execution_pb2.LogLine:
    return execution_pb2.LogLine(
        sequence=sequence,
        time=CREATED,
        stream=stream,
        text=text,
    )


def test_logs_are_returned_as_a_list(fake: FakeSuite, sdk: StepforgeSdk) -> None:
    fake.logs["executions/e1"] = [
        _log_line(0, "starting", execution_pb2.LOG_STREAM_SYSTEM),
        _log_line(1, "hello"),
        _log_line(2, "oops", execution_pb2.LOG_STREAM_STDERR),
    ]

    lines = sdk.get_pipeline_execution_logs("e1")

    assert lines == [
        {"timestamp": CREATED_ISO, "stream": "system", "message": "starting"},
        {"timestamp": CREATED_ISO, "stream": "stdout", "message": "hello"},
        {"timestamp": CREATED_ISO, "stream": "stderr", "message": "oops"},
    ]


def test_followed_logs_arrive_as_they_are_written(
    fake: FakeSuite, sdk: StepforgeSdk
) -> None:
    fake.logs["executions/e1"] = [_log_line(0, "first")]

    lines = sdk.get_pipeline_execution_logs("e1", follow=True)
    first = next(lines)
    fake.live_logs.put(_log_line(1, "second"))
    second = next(lines)
    fake.live_logs.put(None)
    rest = list(lines)

    assert first["message"] == "first"
    assert second["message"] == "second"
    assert rest == []


def test_an_error_while_following_logs_is_translated(
    fake: FakeSuite, sdk: StepforgeSdk
) -> None:
    fake.live_logs.put(_log_line(0, "before"))
    fake.live_logs.put(_log_line(1, "abort"))

    lines = sdk.get_pipeline_execution_logs("e1", follow=True)
    first = next(lines)

    assert first["message"] == "before"
    with pytest.raises(StepforgeError, match="log store went away") as raised:
        next(lines)
    assert raised.value.code is grpc.StatusCode.UNAVAILABLE
