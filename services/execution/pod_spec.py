"""What a pod needs to run one execution: the spec pod_entry.py reads, with a
presigned URL for every object it fetches or stores."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Protocol

from stepforge.services.core.limits import MAX_JSON_VALUE_BYTES
from stepforge.services.core.object_store import ObjectStore, PresigningStore
from stepforge.services.execution.object_keys import (
    execution_prefix,
    input_key,
    output_key,
)
from stepforge.services.execution.runner_spec import runner_inputs, runner_outputs
from stepforge.services.execution.store import StoredExecution
from stepforge.v1 import common_pb2

POD_SPEC_PROTOCOL = 1
# Linux refuses a single environment string over 128 KiB; past this size the
# JSON input values travel through the object store instead.
INLINE_SPEC_LIMIT = 96 * 1024


class PresigningObjectStore(ObjectStore, PresigningStore, Protocol):
    """An object store that also hands out presigned URLs."""


def result_key(execution: str) -> str:
    """Where the pod stores the runner's result."""
    return f"{_pod_prefix(execution)}result.json"


def values_key(execution: str) -> str:
    """Where JSON input values too large for the pod's environment go."""
    return f"{_pod_prefix(execution)}values.json"


def output_default_key(execution: str, output_name: str) -> str:
    """Where the default content of a file output waits for the pod."""
    return f"{_pod_prefix(execution)}defaults/{output_name}"


def build_pod_spec(
    run: StoredExecution,
    objects: PresigningObjectStore,
    runner_limits: dict[str, int],
    expires: timedelta,
    transfer: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """The pod spec of `run`. Default file contents are stored first, so the
    pod fetches every file the same way; raises ValueError when the spec
    cannot fit in the pod's environment."""
    execution, step = run.execution, run.step
    name = execution.name

    def place_input(item: str, source: str | bytes | None) -> dict[str, Any]:
        if source is None:
            return {"kind": "file", "url": None}
        if isinstance(source, bytes):
            # Stored first, so the pod fetches every file the same way.
            key = input_key(name, item)
            objects.put_stream(key, [source])
            source = key
        return {"kind": "file", "url": objects.presigned_get_url(source, expires)}

    def place_output_default(output: str, content: bytes) -> dict[str, Any]:
        key = output_default_key(name, output)
        objects.put_stream(key, [content])
        return {"kind": "file", "url": objects.presigned_get_url(key, expires)}

    inputs = runner_inputs(run, objects, place_input)
    outputs = runner_outputs(run, place_output_default)
    for entry, output in zip(outputs, step.outputs):
        if output.data_type == common_pb2.DATA_TYPE_FILE:
            entry["url"] = objects.presigned_put_url(
                output_key(name, output.name), expires
            )

    spec: dict[str, Any] = {
        "protocol": POD_SPEC_PROTOCOL,
        "function_path": step.function_path,
        "function_name": step.function_name,
        "inputs": inputs,
        "outputs": outputs,
        "result_url": objects.presigned_put_url(result_key(name), expires),
        "max_json_bytes": MAX_JSON_VALUE_BYTES,
        "limits": runner_limits,
    }
    if transfer:
        spec["transfer"] = dict(transfer)
    if len(encode_pod_spec(spec)) > INLINE_SPEC_LIMIT:
        _move_values_out(spec, objects, name, expires)
    size = len(encode_pod_spec(spec))
    if size > INLINE_SPEC_LIMIT:
        raise ValueError(
            f"the pod spec of the execution is {size} bytes, over the "
            f"{INLINE_SPEC_LIMIT} bytes a pod's environment can carry"
        )
    return spec


def encode_pod_spec(spec: dict[str, Any]) -> str:
    """The spec as the pod's STEPFORGE_POD_SPEC variable holds it."""
    return json.dumps(spec, separators=(",", ":"))


def _move_values_out(
    spec: dict[str, Any], objects: PresigningObjectStore, name: str, expires: timedelta
) -> None:
    values = {
        input_name: ref.pop("value")
        for input_name, ref in spec["inputs"].items()
        if ref["kind"] == "json"
    }
    key = values_key(name)
    objects.put_stream(key, [json.dumps(values).encode()])
    spec["values_url"] = objects.presigned_get_url(key, expires)


def _pod_prefix(execution: str) -> str:
    return f"{execution_prefix(execution)}pod/"
