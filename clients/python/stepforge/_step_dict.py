"""A Step message as the dict the SDK returns to its callers."""

from __future__ import annotations

from typing import Any

from stepforge._container_config import container_config_to_dict
from stepforge._io_proto import (
    data_type_from_proto,
    default_value_from_proto,
    input_to_proto,
    output_to_proto,
)
from stepforge._resource_names import STEP_PREFIX, short_name
from stepforge._times import iso_time
from stepforge.v1 import common_pb2

__all__ = ["input_to_proto", "output_to_proto", "step_name_of", "step_to_dict"]

STATUS_NAMES = {
    common_pb2.STEP_STATUS_PENDING: "Pending",
    common_pb2.STEP_STATUS_READY: "Ready",
    common_pb2.STEP_STATUS_FAILED: "Failed",
}
ORIGIN_NAMES = {
    common_pb2.STEP_ORIGIN_LOCAL: "local",
    common_pb2.STEP_ORIGIN_GIT_REPOSITORY: "git_repository",
}


def step_to_dict(step: common_pb2.Step) -> dict[str, Any]:
    """The step as `parameters`, `container_config` and `creation_info`.

    Times are ISO 8601 in UTC; a status or origin the SDK does not know, an
    unset time and an empty commit id are None.
    """
    return {
        "parameters": {
            "step_name": step_name_of(step.name),
            "function_path": step.function_path,
            "function_name": step.function_name,
            "description": step.description,
            "inputs": [
                {
                    "name": step_input.name,
                    "data_type": _data_type_name(step_input.data_type),
                    "description": step_input.description,
                    "is_required": step_input.is_required,
                    "default_value": default_value_from_proto(step_input),
                }
                for step_input in step.inputs
            ],
            "outputs": [
                {
                    "name": step_output.name,
                    "data_type": _data_type_name(step_output.data_type),
                    "description": step_output.description,
                    "default_value": default_value_from_proto(step_output),
                }
                for step_output in step.outputs
            ],
        },
        "container_config": container_config_to_dict(step.container_config),
        "creation_info": {
            "created_at": (
                iso_time(step.create_time) if step.HasField("create_time") else None
            ),
            "updated_at": (
                iso_time(step.update_time) if step.HasField("update_time") else None
            ),
            "commit_id": step.commit_id or None,
            "status": STATUS_NAMES.get(step.status),
            "origin": ORIGIN_NAMES.get(step.origin),
        },
    }


def step_name_of(resource_name: str) -> str:
    """The step name in `steps/{step}`; other names come back unchanged."""
    return short_name(resource_name, STEP_PREFIX)


def _data_type_name(value: common_pb2.DataType.ValueType) -> str | None:
    try:
        return data_type_from_proto(value).value
    except ValueError:
        return None
