"""An in-process stand-in for the registry and execution services, recording
what the SDK sends, for the SDK's pipeline tests."""

from __future__ import annotations

import hashlib
import json
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
from google.protobuf import empty_pb2, timestamp_pb2

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
