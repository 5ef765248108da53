"""The execution service's gRPC servicer."""

from __future__ import annotations

import base64
import logging
import uuid
from collections.abc import Iterator
from datetime import timedelta

import grpc
from google.protobuf import empty_pb2, timestamp_pb2

from stepforge.services.core.auth import (
    bearer_token,
    current_environment,
    current_principal,
)
from stepforge.services.core.durations import duration_seconds
from stepforge.services.core.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from stepforge.services.core.names import (
    EXECUTIONS,
    PIPELINES,
    parse_resource_name,
    resource_rule,
    short_name,
)
from stepforge.services.core.object_store import ObjectStore
from stepforge.services.core.registry_client import RegistryClient
from stepforge.services.execution.backend import ExecutionBackend
from stepforge.services.execution.file_inputs import receive_file_inputs
from stepforge.services.execution.inputs import check_inputs
from stepforge.services.execution.lifecycle import Lifecycle
from stepforge.services.execution.limits import DEFAULT_TIMEOUT_S
from stepforge.services.execution.logs import LogBook
from stepforge.services.execution.object_keys import execution_prefix, output_key
from stepforge.services.execution.store import (
    ACTIVE_STATUSES,
    ExecutionStore,
    StoredExecution,
    StoredLine,
)
from stepforge.v1 import common_pb2, execution_pb2, execution_pb2_grpc

logger = logging.getLogger(__name__)

MAX_WAIT_S = 60.0
MAX_TIMEOUT = timedelta(days=7)
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
_LOG_PAGE = 1000
# How long a follower waits for new lines before it checks the execution again.
_FOLLOW_POLL_S = 1.0
# How long a cancel call waits for the execution to stop before it answers.
_CANCEL_WAIT_S = 10.0


class ExecutionServicer(execution_pb2_grpc.ExecutionServiceServicer):
    def __init__(
        self,
        registry: RegistryClient,
        store: ExecutionStore,
        logs: LogBook,
        lifecycle: Lifecycle,
        backend: ExecutionBackend,
        objects: ObjectStore,
    ) -> None:
        self._registry = registry
        self._store = store
        self._logs = logs
        self._lifecycle = lifecycle
        self._backend = backend
        self._objects = objects

    def recover(self) -> None:
        """Settles what a previous start left: executions that were in flight,
        and pipeline run records of executions that have ended."""
        active = self._store.active()
        self._backend.recover(active)
        for run in self._registry.pipeline_runs():
            stored = self._store.get(run.execution)
            if stored is None or stored.execution.status not in ACTIVE_STATUSES:
                self._lifecycle.release_pipeline(run.environment, run.execution)

    def RunPipeline(
        self,
        request_iterator: Iterator[execution_pb2.RunPipelineRequest],
        context: grpc.ServicerContext,
    ) -> execution_pb2.Execution:
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("payload") != "header":
            raise InvalidArgument("header", "the first message must hold the header")
        header = first.header
        if parse_resource_name(PIPELINES, header.pipeline) is None:
            raise InvalidArgument("header.pipeline", resource_rule(PIPELINES))
        timeout_s = duration_seconds(header.timeout)
        if not 0 <= timeout_s <= MAX_TIMEOUT.total_seconds():
            raise InvalidArgument(
                "header.timeout", f"must be between 0 and {MAX_TIMEOUT}"
            )

        token = bearer_token(context.invocation_metadata()) or ""
        environment = current_environment()
        pipeline = self._registry.get_pipeline(token, header.pipeline)
        step = self._registry.get_step(token, pipeline.step)
        if step.status != common_pb2.STEP_STATUS_READY:
            status = common_pb2.StepStatus.Name(step.status).removeprefix(
                "STEP_STATUS_"
            )
            raise FailedPrecondition(
                f"header.pipeline: its step {short_name(pipeline.step)!r} is "
                f"{status.lower()}, not ready"
            )
        checked = check_inputs(step, header.json_inputs, list(header.file_inputs))

        name = f"{EXECUTIONS}/{uuid.uuid4().hex}"
        # Claimed before any byte is read, so the pipeline cannot be deleted
        # under a run that is still uploading.
        self._registry.acquire_pipeline_run(environment, pipeline.name, name)
        try:
            files = receive_file_inputs(
                request_iterator, checked.streamed_files, self._objects, name
            )
            execution = execution_pb2.Execution(
                name=name,
                pipeline=pipeline.name,
                step=step.name,
                status=execution_pb2.EXECUTION_STATUS_PENDING,
                create_time=_now(),
            )
            execution.timeout.FromTimedelta(
                timedelta(seconds=timeout_s or DEFAULT_TIMEOUT_S)
            )
            # Fixed when accepted: a later change of the environment's limits
            # applies to later runs only.
            execution.limits.CopyFrom(current_principal().limits)
            for key, value in checked.values.items():
                execution.inputs[key].CopyFrom(value)
            for key, stored_file in files.items():
                execution.inputs[key].file.CopyFrom(stored_file)
            self._store.insert(environment, execution, step)
        except BaseException:
            self._remove_objects(name)
            self._lifecycle.release_pipeline(environment, name)
            raise
        logger.info(
            "execution %s of %s accepted in environment %s",
            name,
            pipeline.name,
            environment,
        )
        self._backend.submit(StoredExecution(environment, execution, step))
        return execution

    def GetExecution(
        self, request: execution_pb2.GetExecutionRequest, context: grpc.ServicerContext
    ) -> execution_pb2.Execution:
        return self._own(request.name).execution

    def WaitExecution(
        self, request: execution_pb2.WaitExecutionRequest, context: grpc.ServicerContext
    ) -> execution_pb2.Execution:
        wait_s = duration_seconds(request.timeout)
        if not 0 <= wait_s <= MAX_WAIT_S:
            raise InvalidArgument("timeout", f"must be between 0 and {MAX_WAIT_S:g} s")
        execution = self._own(request.name).execution
        if execution.status not in ACTIVE_STATUSES:
            return execution
        self._lifecycle.wait(request.name, wait_s)
        return self._own(request.name).execution

    def ListExecutions(
        self,
        request: execution_pb2.ListExecutionsRequest,
        context: grpc.ServicerContext,
    ) -> execution_pb2.ListExecutionsResponse:
        if (
            request.pipeline
            and parse_resource_name(PIPELINES, request.pipeline) is None
        ):
            raise InvalidArgument("pipeline", resource_rule(PIPELINES))
        if request.page_size < 0:
            raise InvalidArgument("page_size", "must not be negative")
        size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        rows = self._store.page(
            current_environment(),
            request.pipeline,
            _decode_page_token(request.page_token),
            size + 1,
        )
        response = execution_pb2.ListExecutionsResponse(
            executions=[execution for _, execution in rows[:size]]
        )
        if len(rows) > size:
            response.next_page_token = _encode_page_token(rows[size - 1][0])
        return response

    def ReadExecutionOutput(
        self,
        request: execution_pb2.ReadExecutionOutputRequest,
        context: grpc.ServicerContext,
    ) -> Iterator[execution_pb2.ReadExecutionOutputResponse]:
        stored = self._own(request.name)
        execution = stored.execution
        declared = {output.name: output for output in stored.step.outputs}
        output = declared.get(request.output_name)
        if output is None:
            names = ", ".join(declared) or "none"
            raise InvalidArgument(
                "output_name",
                f"{request.output_name!r} is not an output of the step "
                f"(its outputs: {names})",
            )
        if output.data_type != common_pb2.DATA_TYPE_FILE:
            raise FailedPrecondition(
                f"output_name: {request.output_name!r} is a JSON output; "
                "read it from the execution's outputs"
            )
        if execution.status != execution_pb2.EXECUTION_STATUS_SUCCEEDED:
            raise FailedPrecondition(
                f"name: execution {short_name(request.name)!r} has not succeeded, "
                "so it has no outputs"
            )
        for chunk in self._objects.iter_chunks(
            output_key(request.name, request.output_name)
        ):
            yield execution_pb2.ReadExecutionOutputResponse(data=chunk)

    def ReadExecutionLogs(
        self,
        request: execution_pb2.ReadExecutionLogsRequest,
        context: grpc.ServicerContext,
    ) -> Iterator[execution_pb2.LogLine]:
        self._own(request.name)
        if request.from_sequence < 0:
            raise InvalidArgument("from_sequence", "must not be negative")
        sequence = request.from_sequence
        while True:
            # Whether it ended is read before the lines, so no line written
            # before the end can be missed.
            ended = self._own(request.name).execution.status not in ACTIVE_STATUSES
            lines = self._store.lines(request.name, sequence, _LOG_PAGE)
            for line in lines:
                yield _log_line(line)
            if lines:
                sequence = lines[-1].sequence + 1
                continue
            if not request.follow or ended or not context.is_active():
                return
            self._logs.wait_for_lines(_FOLLOW_POLL_S)

    def CancelExecution(
        self,
        request: execution_pb2.CancelExecutionRequest,
        context: grpc.ServicerContext,
    ) -> execution_pb2.Execution:
        self._own(request.name)
        self._lifecycle.cancel_pending_or_raise(request.name)
        if self._backend.cancel(request.name):
            self._lifecycle.wait(request.name, _CANCEL_WAIT_S)
        else:
            self._lifecycle.finish(
                request.name, execution_pb2.EXECUTION_STATUS_CANCELLED, "cancelled"
            )
        return self._own(request.name).execution

    def DeleteExecution(
        self,
        request: execution_pb2.DeleteExecutionRequest,
        context: grpc.ServicerContext,
    ) -> empty_pb2.Empty:
        execution = self._own(request.name).execution
        if execution.status in ACTIVE_STATUSES:
            raise FailedPrecondition(
                f"name: execution {short_name(request.name)!r} has not ended; "
                "cancel it first"
            )
        self._remove_objects(request.name)
        self._store.delete(request.name)
        logger.info("execution %s deleted", request.name)
        return empty_pb2.Empty()

    def _own(self, name: str) -> StoredExecution:
        """The execution, when it belongs to the caller's environment; others'
        are NOT_FOUND, so names do not leak."""
        if parse_resource_name(EXECUTIONS, name) is None:
            raise InvalidArgument("name", resource_rule(EXECUTIONS))
        stored = self._store.get(name)
        if stored is None or stored.environment != current_environment():
            raise NotFound(f"name: execution {short_name(name)!r} does not exist")
        return stored

    def _remove_objects(self, name: str) -> None:
        for info in list(self._objects.list(execution_prefix(name))):
            self._objects.delete(info.key)


def _log_line(line: StoredLine) -> execution_pb2.LogLine:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(line.time_ns)
    return execution_pb2.LogLine(
        sequence=line.sequence,
        time=stamp,
        stream=line.stream,  # type: ignore[arg-type]
        text=line.text,
    )


def _now() -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.GetCurrentTime()
    return stamp


def _encode_page_token(seq: int) -> str:
    return base64.urlsafe_b64encode(str(seq).encode()).decode()


def _decode_page_token(token: str) -> int | None:
    if not token:
        return None
    try:
        seq = int(base64.urlsafe_b64decode(token.encode()).decode())
    except ValueError:
        seq = 0
    # Row numbers are positive and fit SQLite's 64-bit integers.
    if not 0 < seq < 2**63:
        raise InvalidArgument("page_token", "is not a token this service issued")
    return seq
