"""PipelineCalls: the pipeline and execution calls of StepforgeSdk."""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from datetime import timedelta, timezone
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, TypeVar, overload

import grpc
from google.protobuf import timestamp_pb2

from stepforge._output_file import ExecutionOutputFile
from stepforge._rules import (
    CHUNK_BYTES,
    MAX_JSON_VALUE_BYTES,
    STEP_NAME_RULE,
    is_valid_step_name,
)
from stepforge.errors import (
    ExecutionFailedError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    StepforgeError,
    translate_rpc_error,
)
from stepforge.v1 import (
    common_pb2,
    execution_pb2,
    execution_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
)

_T = TypeVar("_T")
_ChunkSource = Callable[[], Iterator[bytes]]

# The longest wait asked of WaitExecution; a service may answer sooner.
_MAX_WAIT_S = 30.0
# Room, beyond the wait, for the answer of a WaitExecution call to come back.
_WAIT_CALL_MARGIN_S = 30.0
# When a service answers a wait early without the execution having ended, the
# SDK pauses before asking again, backing off, so that it does not spin.
_FIRST_POLL_S = 0.05
_MAX_POLL_S = 1.0
_PAGE_SIZE = 500

STATUS_NAMES = {
    execution_pb2.EXECUTION_STATUS_PENDING: "Pending",
    execution_pb2.EXECUTION_STATUS_RUNNING: "Running",
    execution_pb2.EXECUTION_STATUS_SUCCEEDED: "Succeeded",
    execution_pb2.EXECUTION_STATUS_FAILED: "Failed",
    execution_pb2.EXECUTION_STATUS_CANCELLED: "Cancelled",
}
_ENDED = frozenset(
    {
        execution_pb2.EXECUTION_STATUS_SUCCEEDED,
        execution_pb2.EXECUTION_STATUS_FAILED,
        execution_pb2.EXECUTION_STATUS_CANCELLED,
    }
)
LOG_STREAM_NAMES = {
    execution_pb2.LOG_STREAM_STDOUT: "stdout",
    execution_pb2.LOG_STREAM_STDERR: "stderr",
    execution_pb2.LOG_STREAM_SYSTEM: "system",
}
_PIPELINE_PREFIX = "pipelines/"
_STEP_PREFIX = "steps/"
_EXECUTION_PREFIX = "executions/"
_BINARY_TYPES = (bytes, bytearray, memoryview)


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
        _check_name("pipeline_name", pipeline_name)
        _check_name("step_name", step_name)
        pipeline = registry_pb2.Pipeline(
            name=_PIPELINE_PREFIX + pipeline_name, step=_STEP_PREFIX + step_name
        )
        created = self._call(
            self._registry.CreatePipeline,
            registry_pb2.CreatePipelineRequest(pipeline=pipeline),
        )
        return _pipeline_to_dict(created)

    def get_pipeline(self, pipeline_name: str) -> dict[str, Any] | None:
        """Returns the pipeline as create_pipeline does, or None when it does
        not exist."""
        _check_name("pipeline_name", pipeline_name)
        try:
            pipeline = self._get_pipeline(pipeline_name)
        except NotFoundError:
            return None
        return _pipeline_to_dict(pipeline)

    def list_pipelines(self) -> list[dict[str, Any]]:
        """Returns every pipeline of the environment, ordered by name."""
        request = registry_pb2.ListPipelinesRequest(page_size=_PAGE_SIZE)
        pipelines: list[dict[str, Any]] = []
        while True:
            page = self._call(self._registry.ListPipelines, request)
            pipelines.extend(_pipeline_to_dict(item) for item in page.pipelines)
            if not page.next_page_token:
                return pipelines
            request.page_token = page.next_page_token

    def delete_pipeline(self, pipeline_name: str) -> None:
        """Deletes the pipeline; its executions must all have ended."""
        _check_name("pipeline_name", pipeline_name)
        self._call(
            self._registry.DeletePipeline,
            registry_pb2.DeletePipelineRequest(name=_PIPELINE_PREFIX + pipeline_name),
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
        _check_name("pipeline_name", pipeline_name)
        if not isinstance(wait, bool):
            raise InvalidArgumentError.for_field("wait", "must be True or False")
        timeout = _run_timeout(timeout_s)
        given = _parse_inputs(inputs)
        # Only a str is ambiguous: a path for a FILE input, text for the others.
        ambiguous = any(isinstance(value, str) for _, value, _ in given)
        declared_files = (
            self._declared_file_inputs(pipeline_name) if ambiguous else set()
        )
        header = execution_pb2.RunPipelineHeader(
            pipeline=_PIPELINE_PREFIX + pipeline_name
        )
        if timeout is not None:
            header.timeout.FromTimedelta(timeout)
        files: list[tuple[str, _ChunkSource]] = []
        for name, value, json_text in given:
            if json_text is not None and name not in declared_files:
                header.json_inputs[name] = json_text
            else:
                files.append((name, _file_source(name, value)))
        header.file_inputs.extend(name for name, _ in files)

        requests = _RunRequests(header, files)
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
        execution_id = _execution_id(execution.name)
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
        return _execution_to_dict(self._get_execution(execution_id))

    def list_pipeline_executions(self, pipeline_name: str) -> list[dict[str, Any]]:
        """Returns every execution of the pipeline, newest first."""
        _check_name("pipeline_name", pipeline_name)
        request = execution_pb2.ListExecutionsRequest(
            pipeline=_PIPELINE_PREFIX + pipeline_name, page_size=_PAGE_SIZE
        )
        executions: list[dict[str, Any]] = []
        while True:
            page = self._call(self._execution.ListExecutions, request)
            executions.extend(_execution_to_dict(item) for item in page.executions)
            if not page.next_page_token:
                return executions
            request.page_token = page.next_page_token

    def get_pipeline_execution_output(
        self,
        execution_id: str,
        output_name: str,
        path: str | os.PathLike[str] | None = None,
    ) -> Any:
        """Returns a JSON output's value, or a FILE output as an
        ExecutionOutputFile; with `path`, writes a FILE output there and
        returns the path."""
        _check_execution_id(execution_id)
        if not isinstance(output_name, str) or not output_name:
            raise InvalidArgumentError.for_field(
                "output_name", "is required and must be a string"
            )
        target = _output_target(path)
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
        source = self._output_value(execution.name, output_name, value)
        _write_atomically(source, target)
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
        _check_execution_id(execution_id)
        if not isinstance(follow, bool):
            raise InvalidArgumentError.for_field("follow", "must be True or False")
        call = self._call(
            self._execution.ReadExecutionLogs,
            execution_pb2.ReadExecutionLogsRequest(
                name=_EXECUTION_PREFIX + execution_id, follow=follow
            ),
            timeout=None,
        )
        lines = _log_dicts(call)
        return lines if follow else list(lines)

    def cancel_pipeline_execution(self, execution_id: str) -> dict[str, Any]:
        """Cancels an execution that has not ended; returns it."""
        _check_execution_id(execution_id)
        execution = self._call(
            self._execution.CancelExecution,
            execution_pb2.CancelExecutionRequest(name=_EXECUTION_PREFIX + execution_id),
        )
        return _execution_to_dict(execution)

    def delete_pipeline_execution(self, execution_id: str) -> None:
        """Deletes an ended execution with its inputs, outputs and logs."""
        _check_execution_id(execution_id)
        self._call(
            self._execution.DeleteExecution,
            execution_pb2.DeleteExecutionRequest(name=_EXECUTION_PREFIX + execution_id),
        )

    # Helpers.

    def _get_pipeline(self, pipeline_name: str) -> registry_pb2.Pipeline:
        return self._call(
            self._registry.GetPipeline,
            registry_pb2.GetPipelineRequest(name=_PIPELINE_PREFIX + pipeline_name),
        )

    def _get_execution(self, execution_id: str) -> execution_pb2.Execution:
        _check_execution_id(execution_id)
        return self._call(
            self._execution.GetExecution,
            execution_pb2.GetExecutionRequest(name=_EXECUTION_PREFIX + execution_id),
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


class _RunRequests:
    """The RunPipeline request stream: the header, then each file's chunks.

    Keeps the error that stopped it, which gRPC only reports as a cancelled
    call.
    """

    def __init__(
        self,
        header: execution_pb2.RunPipelineHeader,
        files: list[tuple[str, _ChunkSource]],
    ) -> None:
        self._header = header
        self._files = files
        self.error: Exception | None = None

    def __iter__(self) -> Iterator[execution_pb2.RunPipelineRequest]:
        try:
            yield execution_pb2.RunPipelineRequest(header=self._header)
            for input_name, chunks in self._files:
                for data in chunks():
                    yield execution_pb2.RunPipelineRequest(
                        file_chunk=execution_pb2.FileChunk(
                            input_name=input_name, data=data
                        )
                    )
        except Exception as error:
            self.error = error
            raise


def _parse_inputs(
    inputs: Mapping[str, Any] | None,
) -> list[tuple[str, Any, str | None]]:
    """Each input as (name, value, JSON text); the text is None for a value
    that can only be a file. Sends nothing."""
    if inputs is None:
        return []
    if not isinstance(inputs, Mapping):
        raise InvalidArgumentError.for_field(
            "inputs", "must be a mapping of input name to value"
        )
    parsed = []
    for name, value in inputs.items():
        if not isinstance(name, str) or not name:
            raise InvalidArgumentError.for_field(
                "inputs", f"names must be non-empty strings, got {name!r}"
            )
        if isinstance(value, io.TextIOBase):
            raise InvalidArgumentError.for_field(
                f"inputs.{name}", "is a text stream: open the file in binary mode"
            )
        parsed.append(
            (name, value, None if _is_file(value) else _json_text(name, value))
        )
    return parsed


def _is_file(value: Any) -> bool:
    return isinstance(value, (os.PathLike, *_BINARY_TYPES)) or callable(
        getattr(value, "read", None)
    )


def _json_text(name: str, value: Any) -> str:
    field = f"inputs.{name}"
    try:
        text = json.dumps(
            value, allow_nan=False, ensure_ascii=False, separators=(",", ":")
        )
    except (TypeError, ValueError, RecursionError) as error:
        raise InvalidArgumentError.for_field(
            field, f"must be a JSON value or a file: {error}"
        ) from None
    size = len(text.encode("utf-8"))
    if size > MAX_JSON_VALUE_BYTES:
        raise InvalidArgumentError.for_field(
            field,
            f"must be at most {MAX_JSON_VALUE_BYTES:,} bytes once serialized, "
            f"got {size:,}",
        )
    return text


def _file_source(name: str, value: Any) -> _ChunkSource:
    """What streams a FILE input; checks a local path exists before anything
    is sent."""
    field = f"inputs.{name}"
    if isinstance(value, (str, os.PathLike)):
        shown = os.fsdecode(value)
        path = Path(shown)
        if not path.is_file():
            raise InvalidArgumentError.for_field(
                field, f"is a FILE input, and {shown!r} is not a local file"
            )
        return partial(_path_chunks, field, path)
    if isinstance(value, _BINARY_TYPES):
        return partial(_content_chunks, bytes(value))
    if callable(getattr(value, "read", None)):
        return partial(_reader_chunks, field, value)
    raise InvalidArgumentError.for_field(
        field,
        "is a FILE input: give a path (str or os.PathLike), a binary file "
        f"object or bytes, not {type(value).__name__}",
    )


def _path_chunks(field: str, path: Path) -> Iterator[bytes]:
    try:
        handle = open(path, "rb")
    except OSError as error:
        raise InvalidArgumentError.for_field(
            field, f"cannot be read: {error}"
        ) from None
    with handle:
        yield from _reader_chunks(field, handle)


def _reader_chunks(field: str, reader: Any) -> Iterator[bytes]:
    while True:
        data = reader.read(CHUNK_BYTES)
        if isinstance(data, (bytearray, memoryview)):
            data = bytes(data)
        if not isinstance(data, bytes):
            raise InvalidArgumentError.for_field(
                field,
                "must be a binary file object whose read returns bytes, "
                f"got {type(data).__name__}",
            )
        if not data:
            return
        yield from _content_chunks(data)


def _content_chunks(content: bytes) -> Iterator[bytes]:
    for start in range(0, len(content), CHUNK_BYTES):
        yield content[start : start + CHUNK_BYTES]


def _run_timeout(timeout_s: Any) -> timedelta | None:
    if timeout_s is None:
        return None
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)):
        raise InvalidArgumentError.for_field("timeout_s", "must be a number of seconds")
    if not math.isfinite(timeout_s) or timeout_s <= 0:
        raise InvalidArgumentError.for_field(
            "timeout_s", f"must be more than 0 seconds, got {timeout_s}"
        )
    try:
        return timedelta(seconds=timeout_s)
    except OverflowError:
        raise InvalidArgumentError.for_field(
            "timeout_s", f"is too large, got {timeout_s}"
        ) from None


def _output_target(path: Any) -> Path | None:
    if path is None:
        return None
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise InvalidArgumentError.for_field(
            "path", "must be a non-empty str or os.PathLike"
        )
    target = Path(os.fsdecode(path))
    if target.is_dir():
        raise InvalidArgumentError.for_field(
            "path", f"{str(target)!r} is a folder; give the path of a file"
        )
    if not target.parent.is_dir():
        raise InvalidArgumentError.for_field(
            "path", f"its folder {str(target.parent)!r} does not exist"
        )
    return target


def _write_atomically(source: ExecutionOutputFile, target: Path) -> None:
    # Written beside the target and renamed, so a failed download leaves no
    # truncated file.
    handle = tempfile.NamedTemporaryFile(
        dir=target.parent, prefix=f".{target.name}.", suffix=".part", delete=False
    )
    try:
        with source, handle:
            shutil.copyfileobj(source, handle, CHUNK_BYTES)
        os.replace(handle.name, target)
    except BaseException:
        os.unlink(handle.name)
        raise


def _log_dicts(
    call: grpc.CallIterator[execution_pb2.LogLine],
) -> Iterator[dict[str, Any]]:
    # grpc-stubs leaves Call.cancel untyped; held as a typed callable.
    cancel: Callable[[], object] = call.cancel
    try:
        for line in call:
            yield {
                "timestamp": _iso_time(line.time) if line.HasField("time") else None,
                "stream": LOG_STREAM_NAMES.get(line.stream),
                "message": line.text,
            }
    except grpc.RpcError as error:
        raise translate_rpc_error(error) from None
    finally:
        # A caller that stops early ends the stream rather than leave it open.
        cancel()


def _pipeline_to_dict(pipeline: registry_pb2.Pipeline) -> dict[str, Any]:
    return {
        "pipeline_name": _short_name(pipeline.name, _PIPELINE_PREFIX),
        "step_name": _short_name(pipeline.step, _STEP_PREFIX),
        "created_at": (
            _iso_time(pipeline.create_time)
            if pipeline.HasField("create_time")
            else None
        ),
    }


def _execution_to_dict(execution: execution_pb2.Execution) -> dict[str, Any]:
    def at(timestamp: timestamp_pb2.Timestamp, is_set: bool) -> str | None:
        return _iso_time(timestamp) if is_set else None

    return {
        "execution_id": _execution_id(execution.name),
        "pipeline_name": _short_name(execution.pipeline, _PIPELINE_PREFIX),
        "step_name": _short_name(execution.step, _STEP_PREFIX),
        "status": STATUS_NAMES.get(execution.status),
        "created_at": at(execution.create_time, execution.HasField("create_time")),
        "started_at": at(execution.start_time, execution.HasField("start_time")),
        "ended_at": at(execution.end_time, execution.HasField("end_time")),
        "failure_reason": execution.failure_reason or None,
        "inputs": {
            name: _value_to_dict(value) for name, value in execution.inputs.items()
        },
        "outputs": {
            name: _value_to_dict(value) for name, value in execution.outputs.items()
        },
        "gpu_devices": list(execution.gpu_devices),
    }


def _value_to_dict(value: execution_pb2.ExecutionValue) -> Any:
    if value.WhichOneof("kind") == "file":
        return {"size_bytes": value.file.size_bytes, "sha256": value.file.sha256}
    return json.loads(value.json)


def _iso_time(timestamp: timestamp_pb2.Timestamp) -> str:
    return timestamp.ToDatetime(tzinfo=timezone.utc).isoformat()


def _short_name(resource_name: str, prefix: str) -> str:
    if resource_name.startswith(prefix):
        return resource_name[len(prefix) :]
    return resource_name


def _execution_id(execution_name: str) -> str:
    return _short_name(execution_name, _EXECUTION_PREFIX)


def _check_name(field: str, name: Any) -> None:
    if not isinstance(name, str) or not is_valid_step_name(name):
        raise InvalidArgumentError.for_field(field, f"must be {STEP_NAME_RULE}")


def _check_execution_id(execution_id: Any) -> None:
    if not isinstance(execution_id, str) or not execution_id or "/" in execution_id:
        raise InvalidArgumentError.for_field(
            "execution_id", "must be a non-empty execution id without '/'"
        )
