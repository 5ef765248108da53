"""The inputs and outputs parts of the runner's spec, wherever the step runs.

Both backends describe a run to the runner the same way; they differ only in
where a file lands (a path on this host, a presigned URL for a pod), which the
callers decide through the `place_*` callbacks.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Union

from stepforge.services.core.object_store import ObjectStore
from stepforge.services.execution.object_keys import input_key
from stepforge.services.execution.store import StoredExecution
from stepforge.v1 import common_pb2

# (input name, its content: the key of the stored input, the step's default
# content, or None when the caller gave no file) -> where the runner finds it.
PlaceInput = Callable[[str, Union[str, bytes, None]], dict[str, Any]]
# (output name, its default content) -> where the runner finds that default.
PlaceOutputDefault = Callable[[str, bytes], dict[str, Any]]


def runner_inputs(
    run: StoredExecution, objects: ObjectStore, place: PlaceInput
) -> dict[str, dict[str, Any]]:
    """Every declared input: a JSON value, or a file the runner opens. A file
    input the caller left out is None; one whose execution stored no content
    uses the step's default content."""
    execution, step = run.execution, run.step
    inputs: dict[str, dict[str, Any]] = {}
    for item in step.inputs:
        value = execution.inputs.get(item.name)
        if item.data_type != common_pb2.DATA_TYPE_FILE:
            text = value.json if value is not None else "null"
            inputs[item.name] = {"kind": "json", "value": json.loads(text)}
            continue
        source: str | bytes | None = None
        if value is not None and value.HasField("file"):
            source = input_key(execution.name, item.name)
            has_default = item.WhichOneof("default_value") == "default_file_content"
            if has_default and not objects.exists(source):
                source = item.default_file_content
        inputs[item.name] = place(item.name, source)
    return inputs


def runner_outputs(
    run: StoredExecution, place_default: PlaceOutputDefault
) -> list[dict[str, Any]]:
    """Every declared output with its type and default, in declared order."""
    outputs = []
    for output in run.step.outputs:
        default: dict[str, Any] | None = None
        kind = output.WhichOneof("default_value")
        if kind == "default_json":
            default = {"kind": "json", "value": json.loads(output.default_json)}
        elif kind == "default_file_content":
            default = place_default(output.name, output.default_file_content)
        outputs.append(
            {
                "name": output.name,
                "data_type": data_type_name(output.data_type),
                "default": default,
            }
        )
    return outputs


def data_type_name(data_type: int) -> str:
    """`DATA_TYPE_NUMBER` -> `number`, as the runner names types."""
    name = common_pb2.DataType.Name(data_type)  # type: ignore[arg-type]
    return name.removeprefix("DATA_TYPE_").lower()
