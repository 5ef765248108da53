"""Server-side checks of a requested step: names, function, inputs, outputs."""

from __future__ import annotations

import json
import keyword
import math
import posixpath
from collections.abc import Sequence
from typing import Any

from stepforge.services.core.container_config import (
    FIELDS,
    check_container_config,
    check_mask,
)
from stepforge.services.core.errors import FieldViolation
from stepforge.services.core.limits import MAX_JSON_VALUE_BYTES
from stepforge.services.core.names import STEP_NAME_RULE, parse_step_resource_name
from stepforge.v1 import common_pb2

_MAX_DESCRIPTION = 10_000
_MAX_IOS = 200
_KNOWN_DATA_TYPES = frozenset(common_pb2.DataType.values()) - {
    common_pb2.DATA_TYPE_UNSPECIFIED
}


def check_step(
    step: common_pb2.Step, mask_paths: Sequence[str], field: str
) -> list[FieldViolation]:
    """Every rule a new step breaks, each naming its field."""
    violations = []
    if parse_step_resource_name(step.name) is None:
        violations.append(
            FieldViolation(
                f"{field}.name",
                f"must be steps/{{step}} with a name of {STEP_NAME_RULE}",
            )
        )
    violations.extend(
        _check_function_path(step.function_path, f"{field}.function_path")
    )
    if not _is_identifier(step.function_name):
        violations.append(
            FieldViolation(f"{field}.function_name", "must be a Python function name")
        )
    if len(step.description) > _MAX_DESCRIPTION:
        violations.append(
            FieldViolation(
                f"{field}.description", f"must be at most {_MAX_DESCRIPTION} characters"
            )
        )
    violations.extend(_check_ios(step.inputs, f"{field}.inputs"))
    violations.extend(_check_ios(step.outputs, f"{field}.outputs"))
    violations.extend(check_mask(mask_paths, "container_config_mask", FIELDS))
    violations.extend(
        check_container_config(
            step.container_config, f"{field}.container_config", for_project=False
        )
    )
    return violations


def _check_function_path(value: str, field: str) -> list[FieldViolation]:
    if not value:
        return [FieldViolation(field, "is required")]
    normalized = posixpath.normpath(value)
    if value.startswith("/") or normalized.startswith("..") or "\\" in value:
        return [FieldViolation(field, "must be a relative path inside the code folder")]
    if not value.endswith(".py"):
        return [FieldViolation(field, "must name a .py file")]
    return []


def _check_ios(
    ios: Sequence[common_pb2.StepInput | common_pb2.StepOutput], field: str
) -> list[FieldViolation]:
    if len(ios) > _MAX_IOS:
        return [FieldViolation(field, f"must hold at most {_MAX_IOS} entries")]
    violations = []
    seen: set[str] = set()
    for index, io in enumerate(ios):
        path = f"{field}[{index}]"
        if not _is_identifier(io.name):
            violations.append(
                FieldViolation(f"{path}.name", "must be a Python identifier")
            )
        elif io.name in seen:
            violations.append(
                FieldViolation(f"{path}.name", f"{io.name!r} is declared twice")
            )
        seen.add(io.name)
        if io.data_type not in _KNOWN_DATA_TYPES:
            violations.append(
                FieldViolation(
                    f"{path}.data_type", "must be a known DataType, not UNSPECIFIED"
                )
            )
        if len(io.description) > _MAX_DESCRIPTION:
            violations.append(
                FieldViolation(
                    f"{path}.description",
                    f"must be at most {_MAX_DESCRIPTION} characters",
                )
            )
        violations.extend(_check_default(io, f"{path}.default_value"))
    return violations


def _check_default(
    io: common_pb2.StepInput | common_pb2.StepOutput, field: str
) -> list[FieldViolation]:
    kind = io.WhichOneof("default_value")
    if kind is None:
        return []
    is_file = io.data_type == common_pb2.DATA_TYPE_FILE
    if kind == "default_file_content":
        if not is_file:
            return [FieldViolation(field, "file content is a default for FILE only")]
        size = len(io.default_file_content)
    else:
        if is_file:
            return [FieldViolation(field, "a FILE default is file content, not JSON")]
        size = len(io.default_json.encode())
        try:
            value = json.loads(io.default_json)
        except ValueError:
            return [FieldViolation(field, "must be valid JSON")]
        problem = json_type_problem(value, io.data_type)
        if problem:
            return [FieldViolation(field, problem)]
    if size > MAX_JSON_VALUE_BYTES:
        return [
            FieldViolation(
                field, f"must be at most {MAX_JSON_VALUE_BYTES} bytes serialized"
            )
        ]
    return []


def json_type_problem(value: Any, data_type: int) -> str | None:
    """Why `value` does not have `data_type`, or None when it does."""
    if data_type == common_pb2.DATA_TYPE_STRING and not isinstance(value, str):
        return "must be a string"
    if data_type == common_pb2.DATA_TYPE_NUMBER and (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (isinstance(value, float) and not math.isfinite(value))
    ):
        return "must be a number (a boolean is not a number)"
    if data_type == common_pb2.DATA_TYPE_BOOLEAN and not isinstance(value, bool):
        return "must be a boolean"
    if data_type == common_pb2.DATA_TYPE_ARRAY and not isinstance(value, list):
        return "must be an array"
    return None


def _is_identifier(name: str) -> bool:
    return name.isidentifier() and not keyword.iskeyword(name)
