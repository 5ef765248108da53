"""PipelineCalls: the pipeline and execution calls of StepforgeSdk."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Mapping
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, Callable, Literal, Protocol, TypeVar, overload

from stepforge._execution_dict import (
    STATUS_NAMES,
    execution_id_of,
    execution_to_dict,
    log_dicts,
    pipeline_to_dict,
)
from stepforge._files import write_atomically
from stepforge._output_file import ExecutionOutputFile
from stepforge._pipeline_arguments import (
    check_execution_id,
    check_name,
    output_target,
    run_timeout,
)
from stepforge._resource_names import EXECUTION_PREFIX, PIPELINE_PREFIX, STEP_PREFIX
from stepforge._rules import CHUNK_BYTES
from stepforge._run_inputs import parse_inputs, run_requests
from stepforge.errors import (
    ExecutionFailedError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    StepforgeError,
)
from stepforge.v1 import (
    common_pb2,
    execution_pb2,
    execution_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
)


class _Page(Protocol):
    """A List response, as far as following its pages needs."""

    @property
    def next_page_token(self) -> str: ...


_T = TypeVar("_T")
_P = TypeVar("_P", bound=_Page)

# The longest wait asked of WaitExecution; a service may answer sooner.
_MAX_WAIT_S = 30.0
# Room, beyond the wait, for the answer of a WaitExecution call to come back.
_WAIT_CALL_MARGIN_S = 30.0
# When a service answers a wait early without the execution having ended, the
# SDK pauses before asking again, backing off, so that it does not spin.
_FIRST_POLL_S = 0.05
_MAX_POLL_S = 1.0
_PAGE_SIZE = 500

_ENDED = frozenset(
    {
        execution_pb2.EXECUTION_STATUS_SUCCEEDED,
        execution_pb2.EXECUTION_STATUS_FAILED,
        execution_pb2.EXECUTION_STATUS_CANCELLED,
    }
)


class PipelineCalls:
    """Creates pipelines, runs them and reads what their executions did."""

    _registry: registry_pb2_grpc.RegistryServiceStub
    _execution: execution_pb2_grpc.ExecutionServiceStub
    _metadata: tuple[tuple[str, str], ...]

    if TYPE_CHECKING:

        def _call(
            self,
            method: Callable[..., _T],
            request: Any,
            *,
            timeout: float | None = ...,
        ) -> _T: ...

    # Pipelines.

    def create_pipeline(self, pipeline_name: str, step_name: str) -> dict[str, Any]:
        """Creates a pipeline that runs the step; returns `pipeline_name`,
        `step_name` and `created_at`."""
        check_name("pipeline_name", pipeline_name)
        check_name("step_name", step_name)
        pipeline = registry_pb2.Pipeline(
            name=PIPELINE_PREFIX + pipeline_name, step=STEP_PREFIX + step_name
        )
        created = self._call(
            self._registry.CreatePipeline,
            registry_pb2.CreatePipelineRequest(pipeline=pipeline),
        )
        return pipeline_to_dict(created)

    def get_pipeline(self, pipeline_name: str) -> dict[str, Any] | None:
        """Returns the pipeline as create_pipeline does, or None when it does
        not exist."""
        check_name("pipeline_name", pipeline_name)
        try:
            pipeline = self._get_pipeline(pipeline_name)
        except NotFoundError:
            return None
        return pipeline_to_dict(pipeline)

    def list_pipelines(self) -> list[dict[str, Any]]:
        """Returns every pipeline of the environment, ordered by name."""
        request = registry_pb2.ListPipelinesRequest(page_size=_PAGE_SIZE)
        return [
            pipeline_to_dict(item)
            for page in self._pages(self._registry.ListPipelines, request)
            for item in page.pipelines
        ]

    def delete_pipeline(self, pipeline_name: str) -> None:
        """Deletes the pipeline; its executions must all have ended."""
        check_name("pipeline_name", pipeline_name)
        self._call(
            self._registry.DeletePipeline,
            registry_pb2.DeletePipelineRequest(name=PIPELINE_PREFIX + pipeline_name),
        )

    # Executions.

    def run_pipeline(
        self,
        pipeline_name: str,
        inputs: Mapping[str, Any] | None = None,
        wait: bool = True,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """Runs the pipeline; returns `execution_id` and `outputs`.

        A FILE input is a local path (str or os.PathLike), a binary file object
        or bytes; it is streamed, never held whole in memory. Any other input
        is a JSON value. With `wait`, returns once the execution succeeded,
        FILE outputs as ExecutionOutputFile objects, and raises
        ExecutionFailedError when it failed or was cancelled; without, returns
        at once with empty `outputs`. `timeout_s` bounds the run once started.
        """
        check_name("pipeline_name", pipeline_name)
        if not isinstance(wait, bool):
            raise InvalidArgumentError.for_field("wait", "must be True or False")
        timeout = run_timeout(timeout_s)
        given = parse_inputs(inputs)
        # Only a str is ambiguous: a path for a FILE input, text for the others.
        ambiguous = any(isinstance(value, str) for _, value, _ in given)
        declared_files = (
            self._declared_file_inputs(pipeline_name) if ambiguous else set()
        )
        requests = run_requests(pipeline_name, given, declared_files, timeout)
        try:
            execution = self._call(
                self._execution.RunPipeline, iter(requests), timeout=None
            )
        except StepforgeError:
            # gRPC reports a failed request stream as a bare cancellation; the
            # error that stopped it says what went wrong.
            if requests.error is not None:
                raise requests.error from None
            raise
        execution_id = execution_id_of(execution.name)
        if not wait:
            return {"execution_id": execution_id, "outputs": {}}
        ended = self._wait_for_end(execution.name)
        if ended.status != execution_pb2.EXECUTION_STATUS_SUCCEEDED:
            raise ExecutionFailedError(
                execution_id, STATUS_NAMES[ended.status], ended.failure_reason
            )
        return {
            "execution_id": execution_id,
            "outputs": {
                name: self._output_value(ended.name, name, value)
                for name, value in ended.outputs.items()
            },
        }

    def get_pipeline_execution(self, execution_id: str) -> dict[str, Any]:
        """Returns the execution: its status, times, inputs and outputs (a
        FILE one as `size_bytes` and `sha256`) and GPU devices."""
        return execution_to_dict(self._get_execution(execution_id))

    def list_pipeline_executions(self, pipeline_name: str) -> list[dict[str, Any]]:
        """Returns every execution of the pipeline, newest first."""
        check_name("pipeline_name", pipeline_name)
        request = execution_pb2.ListExecutionsRequest(
            pipeline=PIPELINE_PREFIX + pipeline_name, page_size=_PAGE_SIZE
        )
        return [
            execution_to_dict(item)
            for page in self._pages(self._execution.ListExecutions, request)
            for item in page.executions
        ]

    def get_pipeline_execution_output(
        self,
        execution_id: str,
        output_name: str,
        path: str | os.PathLike[str] | None = None,
    ) -> Any:
        """Returns a JSON output's value, or a FILE output as an
        ExecutionOutputFile; with `path`, writes a FILE output there and
        returns the path."""
        check_execution_id(execution_id)
        if not isinstance(output_name, str) or not output_name:
            raise InvalidArgumentError.for_field(
                "output_name", "is required and must be a string"
            )
        target = output_target(path)
        execution = self._get_execution(execution_id)
        if output_name not in execution.outputs:
            status = STATUS_NAMES.get(execution.status, "in an unknown state")
            if execution.status != execution_pb2.EXECUTION_STATUS_SUCCEEDED:
                raise FailedPreconditionError(
                    f"execution {execution_id} is {status}; its outputs are set "
                    "once it has succeeded"
                )
            known = ", ".join(sorted(execution.outputs)) or "none"
            raise InvalidArgumentError.for_field(
                "output_name",
                f"execution {execution_id} has no output {output_name!r}; "
                f"its outputs are: {known}",
            )
        value = execution.outputs[output_name]
        if target is None:
            return self._output_value(execution.name, output_name, value)
        if value.WhichOneof("kind") != "file":
            raise InvalidArgumentError.for_field(
                "path", f"applies to FILE outputs only, and {output_name!r} is JSON"
            )
        with self._output_value(execution.name, output_name, value) as source:
            write_atomically(iter(partial(source.read, CHUNK_BYTES), b""), target)
        return str(target)

    @overload
    def get_pipeline_execution_logs(
        self, execution_id: str, follow: Literal[False] = ...
    ) -> list[dict[str, Any]]: ...

    @overload
    def get_pipeline_execution_logs(
        self, execution_id: str, follow: Literal[True]
    ) -> Iterator[dict[str, Any]]: ...

    @overload
    def get_pipeline_execution_logs(
        self, execution_id: str, follow: bool
    ) -> list[dict[str, Any]] | Iterator[dict[str, Any]]: ...

    def get_pipeline_execution_logs(
        self, execution_id: str, follow: bool = False
    ) -> list[dict[str, Any]] | Iterator[dict[str, Any]]:
        """Returns the log lines (`timestamp`, `stream`, `message`) so far; with
        `follow`, an iterator of them that goes on until the execution ends."""
        check_execution_id(execution_id)
        if not isinstance(follow, bool):
            raise InvalidArgumentError.for_field("follow", "must be True or False")
        call = self._call(
            self._execution.ReadExecutionLogs,
            execution_pb2.ReadExecutionLogsRequest(
                name=EXECUTION_PREFIX + execution_id, follow=follow
            ),
            timeout=None,
        )
        lines = log_dicts(call)
        return lines if follow else list(lines)

    def cancel_pipeline_execution(self, execution_id: str) -> dict[str, Any]:
        """Cancels an execution that has not ended; returns it."""
        check_execution_id(execution_id)
        execution = self._call(
            self._execution.CancelExecution,
            execution_pb2.CancelExecutionRequest(name=EXECUTION_PREFIX + execution_id),
        )
        return execution_to_dict(execution)

    def delete_pipeline_execution(self, execution_id: str) -> None:
        """Deletes an ended execution with its inputs, outputs and logs."""
        check_execution_id(execution_id)
        self._call(
            self._execution.DeleteExecution,
            execution_pb2.DeleteExecutionRequest(name=EXECUTION_PREFIX + execution_id),
        )

    # Helpers.

    def _pages(self, method: Callable[..., _P], request: Any) -> Iterator[_P]:
        """Each page a List call answers, following its page tokens."""
        while True:
            page = self._call(method, request)
            yield page
            if not page.next_page_token:
                return
            request.page_token = page.next_page_token

    def _get_pipeline(self, pipeline_name: str) -> registry_pb2.Pipeline:
        return self._call(
            self._registry.GetPipeline,
            registry_pb2.GetPipelineRequest(name=PIPELINE_PREFIX + pipeline_name),
        )

    def _get_execution(self, execution_id: str) -> execution_pb2.Execution:
        check_execution_id(execution_id)
        return self._call(
            self._execution.GetExecution,
            execution_pb2.GetExecutionRequest(name=EXECUTION_PREFIX + execution_id),
        )

    def _declared_file_inputs(self, pipeline_name: str) -> set[str]:
        """The FILE inputs of the pipeline's step, so that a str given for one
        is read as a path rather than sent as JSON."""
        pipeline = self._get_pipeline(pipeline_name)
        step = self._call(
            self._registry.GetStep, registry_pb2.GetStepRequest(name=pipeline.step)
        )
        return {
            declared.name
            for declared in step.inputs
            if declared.data_type == common_pb2.DATA_TYPE_FILE
        }

    def _wait_for_end(self, execution_name: str) -> execution_pb2.Execution:
        delay = _FIRST_POLL_S
        while True:
            request = execution_pb2.WaitExecutionRequest(name=execution_name)
            request.timeout.FromTimedelta(timedelta(seconds=_MAX_WAIT_S))
            asked_at = time.monotonic()
            execution = self._call(
                self._execution.WaitExecution,
                request,
                timeout=_MAX_WAIT_S + _WAIT_CALL_MARGIN_S,
            )
            if execution.status in _ENDED:
                return execution
            if time.monotonic() - asked_at < _MAX_WAIT_S:
                time.sleep(delay)
                delay = min(delay * 2, _MAX_POLL_S)
            else:
                delay = _FIRST_POLL_S

    def _output_value(
        self, execution_name: str, output_name: str, value: execution_pb2.ExecutionValue
    ) -> Any:
        if value.WhichOneof("kind") != "file":
            return json.loads(value.json)
        request = execution_pb2.ReadExecutionOutputRequest(
            name=execution_name, output_name=output_name
        )
        return ExecutionOutputFile(
            lambda: self._call(
                self._execution.ReadExecutionOutput, request, timeout=None
            ),
            output_name,
            size_bytes=value.file.size_bytes,
            sha256=value.file.sha256,
        )
