"""Pipeline, execution and log-line messages as the dicts the SDK returns."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, Callable

import grpc
from google.protobuf import timestamp_pb2

from stepforge._resource_names import (
    EXECUTION_PREFIX,
    PIPELINE_PREFIX,
    STEP_PREFIX,
    short_name,
)
from stepforge._times import iso_time
from stepforge.errors import translate_rpc_error
from stepforge.v1 import execution_pb2, registry_pb2

STATUS_NAMES = {
    execution_pb2.EXECUTION_STATUS_PENDING: "Pending",
    execution_pb2.EXECUTION_STATUS_RUNNING: "Running",
    execution_pb2.EXECUTION_STATUS_SUCCEEDED: "Succeeded",
    execution_pb2.EXECUTION_STATUS_FAILED: "Failed",
    execution_pb2.EXECUTION_STATUS_CANCELLED: "Cancelled",
}
LOG_STREAM_NAMES = {
    execution_pb2.LOG_STREAM_STDOUT: "stdout",
    execution_pb2.LOG_STREAM_STDERR: "stderr",
    execution_pb2.LOG_STREAM_SYSTEM: "system",
}


def pipeline_to_dict(pipeline: registry_pb2.Pipeline) -> dict[str, Any]:
    """The pipeline as `pipeline_name`, `step_name` and `created_at`."""
    return {
        "pipeline_name": short_name(pipeline.name, PIPELINE_PREFIX),
        "step_name": short_name(pipeline.step, STEP_PREFIX),
        "created_at": (
            iso_time(pipeline.create_time) if pipeline.HasField("create_time") else None
        ),
    }


def execution_to_dict(execution: execution_pb2.Execution) -> dict[str, Any]:
    """The execution's status, times, inputs, outputs and GPU devices; a FILE
    value as `size_bytes` and `sha256`, an unset time as None."""

    def at(timestamp: timestamp_pb2.Timestamp, is_set: bool) -> str | None:
        return iso_time(timestamp) if is_set else None

    return {
        "execution_id": execution_id_of(execution.name),
        "pipeline_name": short_name(execution.pipeline, PIPELINE_PREFIX),
        "step_name": short_name(execution.step, STEP_PREFIX),
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


def log_dicts(
    call: grpc.CallIterator[execution_pb2.LogLine],
) -> Iterator[dict[str, Any]]:
    """Each log line of the call as `timestamp`, `stream` and `message`."""
    # grpc-stubs leaves Call.cancel untyped; held as a typed callable.
    cancel: Callable[[], object] = call.cancel
    try:
        for line in call:
            yield {
                "timestamp": iso_time(line.time) if line.HasField("time") else None,
                "stream": LOG_STREAM_NAMES.get(line.stream),
                "message": line.text,
            }
    except grpc.RpcError as error:
        raise translate_rpc_error(error) from None
    finally:
        # A caller that stops early ends the stream rather than leave it open.
        cancel()


def execution_id_of(execution_name: str) -> str:
    """The execution id in `executions/{id}`; other names come back unchanged."""
    return short_name(execution_name, EXECUTION_PREFIX)


def _value_to_dict(value: execution_pb2.ExecutionValue) -> Any:
    if value.WhichOneof("kind") == "file":
        return {"size_bytes": value.file.size_bytes, "sha256": value.file.sha256}
    return json.loads(value.json)
