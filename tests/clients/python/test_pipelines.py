"""The SDK's pipeline and execution calls, against an in-process fake service."""

from __future__ import annotations

import hashlib
import io
import json
import queue
import stat
import threading
import tracemalloc
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar

import grpc
import pytest
from google.protobuf import empty_pb2, timestamp_pb2

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
    registry_pb2,
    registry_pb2_grpc,
)

MIB = 1024 * 1024
TOKEN = "secret-token"
CREATED = timestamp_pb2.Timestamp(seconds=1_700_000_000)
CREATED_ISO = "2023-11-14T22:13:20+00:00"
SUCCEEDED = execution_pb2.EXECUTION_STATUS_SUCCEEDED
FILE = common_pb2.DATA_TYPE_FILE
STRING = common_pb2.DATA_TYPE_STRING

_M = TypeVar("_M")


# The fake service.


@dataclass
class Plan:
    """How the fake ends the executions of one pipeline."""

    status: execution_pb2.ExecutionStatus.ValueType = SUCCEEDED
    json_outputs: dict[str, Any] = field(default_factory=dict)
    file_outputs: dict[str, bytes] = field(default_factory=dict)
    reason: str = ""
    # WaitExecution answers Running this many times before the end.
    running_waits: int = 0


@dataclass
class ReceivedRun:
    header: execution_pb2.RunPipelineHeader | None = None
    # (input name, chunk size) in arrival order.
    chunk_sizes: list[tuple[str, int]] = field(default_factory=list)
    content: dict[str, bytearray] = field(default_factory=dict)
    header_came_first: bool = True
    authorization: str = ""


class FakeSuite(
    execution_pb2_grpc.ExecutionServiceServicer,
    registry_pb2_grpc.RegistryServiceServicer,
):
    """Keeps everything in memory and records what the client sent."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.pipelines: dict[str, registry_pb2.Pipeline] = {}
        self.steps: dict[str, common_pb2.Step] = {}
        self.plans: dict[str, Plan] = {}
        self.runs: list[ReceivedRun] = []
        self.keep_content = True
        self.executions: dict[str, execution_pb2.Execution] = {}
        self.finals: dict[str, execution_pb2.Execution] = {}
        self.running_waits: dict[str, int] = {}
        self.file_content: dict[tuple[str, str], bytes] = {}
        self.output_chunk_bytes = 256 * 1024
        self.output_abort_after: int | None = None
        self.output_cancelled = threading.Event()
        self.logs: dict[str, list[execution_pb2.LogLine]] = {}
        self.live_logs: queue.Queue[execution_pb2.LogLine | None] = queue.Queue()
        self.page_size = 2
        self.port = 0

    def add_pipeline(
        self, name: str, inputs: dict[str, common_pb2.DataType.ValueType]
    ) -> None:
        step = common_pb2.Step(
            name=f"steps/{name}-step",
            inputs=[
                common_pb2.StepInput(name=input_name, data_type=data_type)
                for input_name, data_type in inputs.items()
            ],
        )
        self.steps[step.name] = step
        self.pipelines[f"pipelines/{name}"] = registry_pb2.Pipeline(
            name=f"pipelines/{name}", step=step.name, create_time=CREATED
        )

    def _page(self, ordered: list[_M], page_token: str) -> tuple[list[_M], str]:
        """One page of `ordered` and the token of the next, "" at the end."""
        start = int(page_token or 0)
        end = start + self.page_size
        return ordered[start:end], str(end) if end < len(ordered) else ""

    # Registry.

    def CreatePipeline(
        self, request: registry_pb2.CreatePipelineRequest, context: grpc.ServicerContext
    ) -> registry_pb2.Pipeline:
        self.calls.append("CreatePipeline")
        created = registry_pb2.Pipeline()
        created.CopyFrom(request.pipeline)
        created.create_time.CopyFrom(CREATED)
        self.pipelines[created.name] = created
        return created

    def GetPipeline(
        self, request: registry_pb2.GetPipelineRequest, context: grpc.ServicerContext
    ) -> registry_pb2.Pipeline:
        self.calls.append("GetPipeline")
        return _stored(self.pipelines, request.name, context)

    def ListPipelines(
        self, request: registry_pb2.ListPipelinesRequest, context: grpc.ServicerContext
    ) -> registry_pb2.ListPipelinesResponse:
        self.calls.append("ListPipelines")
        ordered = sorted(self.pipelines.values(), key=lambda item: item.name)
        page, next_page_token = self._page(ordered, request.page_token)
        return registry_pb2.ListPipelinesResponse(
            pipelines=page, next_page_token=next_page_token
        )

    def DeletePipeline(
        self, request: registry_pb2.DeletePipelineRequest, context: grpc.ServicerContext
    ) -> empty_pb2.Empty:
        self.calls.append("DeletePipeline")
        del self.pipelines[request.name]
        return empty_pb2.Empty()

    def GetStep(
        self, request: registry_pb2.GetStepRequest, context: grpc.ServicerContext
    ) -> common_pb2.Step:
        self.calls.append("GetStep")
        return self.steps[request.name]

    # Executions.

    def RunPipeline(
        self,
        request_iterator: Iterator[execution_pb2.RunPipelineRequest],
        context: grpc.ServicerContext,
    ) -> execution_pb2.Execution:
        self.calls.append("RunPipeline")
        run = ReceivedRun(
            authorization=str(dict(context.invocation_metadata())["authorization"])
        )
        self.runs.append(run)
        digests: dict[str, Any] = {}
        sizes: dict[str, int] = {}
        for request in request_iterator:
            if request.HasField("header"):
                run.header_came_first = run.header is None and not run.chunk_sizes
                run.header = request.header
                continue
            chunk = request.file_chunk
            run.chunk_sizes.append((chunk.input_name, len(chunk.data)))
            digests.setdefault(chunk.input_name, hashlib.sha256()).update(chunk.data)
            sizes[chunk.input_name] = sizes.get(chunk.input_name, 0) + len(chunk.data)
            if self.keep_content:
                run.content.setdefault(chunk.input_name, bytearray()).extend(chunk.data)
        assert run.header is not None
        name = f"executions/run-{len(self.runs)}"
        execution = execution_pb2.Execution(
            name=name,
            pipeline=run.header.pipeline,
            step=self.pipelines[run.header.pipeline].step,
            status=execution_pb2.EXECUTION_STATUS_PENDING,
            create_time=CREATED,
        )
        for input_name, text in run.header.json_inputs.items():
            execution.inputs[input_name].json = text
        for input_name in run.header.file_inputs:
            stored = execution.inputs[input_name].file
            stored.size_bytes = sizes.get(input_name, 0)
            stored.sha256 = digests.get(input_name, hashlib.sha256()).hexdigest()
        self.executions[name] = execution
        self.finals[name] = self._final(execution, self.plans[run.header.pipeline])
        self.running_waits[name] = self.plans[run.header.pipeline].running_waits
        return execution

    def _final(
        self, execution: execution_pb2.Execution, plan: Plan
    ) -> execution_pb2.Execution:
        final = execution_pb2.Execution()
        final.CopyFrom(execution)
        final.status = plan.status
        final.failure_reason = plan.reason
        final.start_time.CopyFrom(CREATED)
        final.end_time.CopyFrom(CREATED)
        final.gpu_devices.append("0")
        for output_name, value in plan.json_outputs.items():
            final.outputs[output_name].json = json.dumps(value)
        for output_name, content in plan.file_outputs.items():
            stored = final.outputs[output_name].file
            stored.size_bytes = len(content)
            stored.sha256 = hashlib.sha256(content).hexdigest()
            self.file_content[(execution.name, output_name)] = content
        return final

    def GetExecution(
        self, request: execution_pb2.GetExecutionRequest, context: grpc.ServicerContext
    ) -> execution_pb2.Execution:
        self.calls.append("GetExecution")
        return _stored(self.executions, request.name, context)

    def WaitExecution(
        self, request: execution_pb2.WaitExecutionRequest, context: grpc.ServicerContext
    ) -> execution_pb2.Execution:
        self.calls.append("WaitExecution")
        execution = self.executions[request.name]
        if self.running_waits[request.name] > 0:
            self.running_waits[request.name] -= 1
            execution.status = execution_pb2.EXECUTION_STATUS_RUNNING
            return execution
        self.executions[request.name] = self.finals[request.name]
        return self.finals[request.name]

    def ListExecutions(
        self,
        request: execution_pb2.ListExecutionsRequest,
        context: grpc.ServicerContext,
    ) -> execution_pb2.ListExecutionsResponse:
        self.calls.append("ListExecutions")
        ordered = [
            execution
            for execution in reversed(self.executions.values())
            if execution.pipeline == request.pipeline
        ]
        page, next_page_token = self._page(ordered, request.page_token)
        return execution_pb2.ListExecutionsResponse(
            executions=page, next_page_token=next_page_token
        )

    def ReadExecutionOutput(
        self,
        request: execution_pb2.ReadExecutionOutputRequest,
        context: grpc.ServicerContext,
    ) -> Iterator[execution_pb2.ReadExecutionOutputResponse]:
        self.calls.append("ReadExecutionOutput")
        context.add_callback(self._note_output_end(context))
        content = self.file_content[(request.name, request.output_name)]
        step = self.output_chunk_bytes
        for index, start in enumerate(range(0, len(content), step)):
            if index == self.output_abort_after:
                context.abort(grpc.StatusCode.INTERNAL, "the object store broke")
            yield execution_pb2.ReadExecutionOutputResponse(
                data=content[start : start + step]
            )

    def _note_output_end(self, context: grpc.ServicerContext) -> Any:
        def ended() -> None:
            if not context.is_active():
                self.output_cancelled.set()

        return ended

    def ReadExecutionLogs(
        self,
        request: execution_pb2.ReadExecutionLogsRequest,
        context: grpc.ServicerContext,
    ) -> Iterator[execution_pb2.LogLine]:
        self.calls.append("ReadExecutionLogs")
        yield from self.logs.get(request.name, [])
        if not request.follow:
            return
        while True:
            line = self.live_logs.get(timeout=10)
            if line is None:
                return
            if line.text == "abort":
                context.abort(grpc.StatusCode.UNAVAILABLE, "the log store went away")
            yield line

    def CancelExecution(
        self,
        request: execution_pb2.CancelExecutionRequest,
        context: grpc.ServicerContext,
    ) -> execution_pb2.Execution:
        self.calls.append("CancelExecution")
        execution = self.executions[request.name]
        execution.status = execution_pb2.EXECUTION_STATUS_CANCELLED
        execution.failure_reason = "cancelled by the user"
        return execution

    def DeleteExecution(
        self,
        request: execution_pb2.DeleteExecutionRequest,
        context: grpc.ServicerContext,
    ) -> empty_pb2.Empty:
        self.calls.append("DeleteExecution")
        del self.executions[request.name]
        return empty_pb2.Empty()


def _stored(store: dict[str, _M], name: str, context: grpc.ServicerContext) -> _M:
    if name not in store:
        context.abort(grpc.StatusCode.NOT_FOUND, f"{name} does not exist")
    return store[name]


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
