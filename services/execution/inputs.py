"""Checking a run's inputs against the step's declared inputs, before anything runs."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from stepforge.services.core.errors import FieldViolation, InvalidArgument
from stepforge.services.core.limits import MAX_JSON_VALUE_BYTES
from stepforge.services.core.names import short_name
from stepforge.services.core.step_spec import json_type_problem
from stepforge.v1 import common_pb2, execution_pb2


@dataclass(frozen=True)
class CheckedInputs:
    """The values a run starts with, defaults applied, and the file inputs whose
    content the caller streams."""

    values: dict[str, execution_pb2.ExecutionValue]
    streamed_files: tuple[str, ...]


def check_inputs(
    step: common_pb2.Step,
    json_inputs: Mapping[str, str],
    file_inputs: Sequence[str],
) -> CheckedInputs:
    """Raises InvalidArgument naming every input that breaks a rule."""
    declared = {item.name: item for item in step.inputs}
    violations: list[FieldViolation] = []
    values: dict[str, execution_pb2.ExecutionValue] = {}

    for name, text in sorted(json_inputs.items()):
        field = f"inputs.{name}"
        item = declared.get(name)
        if item is None:
            violations.append(FieldViolation(field, _unknown(step, name)))
        elif item.data_type == common_pb2.DATA_TYPE_FILE:
            violations.append(
                FieldViolation(field, "is a file input; send its content as a file")
            )
        else:
            problem = _json_problem(text, item.data_type)
            if problem:
                violations.append(FieldViolation(field, problem))
            else:
                values[name] = execution_pb2.ExecutionValue(json=text)

    for index, name in enumerate(file_inputs):
        field = f"inputs.{name}"
        item = declared.get(name)
        if item is None:
            violations.append(FieldViolation(field, _unknown(step, name)))
        elif item.data_type != common_pb2.DATA_TYPE_FILE:
            violations.append(
                FieldViolation(
                    field, f"is a {_type_name(item.data_type)} input, not a file"
                )
            )
        elif name in file_inputs[:index]:
            violations.append(FieldViolation(field, "is sent twice"))

    given = set(json_inputs) | set(file_inputs)
    for item in step.inputs:
        if item.name in given:
            continue
        default = _default(item)
        if default is not None:
            values[item.name] = default
        elif item.is_required:
            violations.append(
                FieldViolation(f"inputs.{item.name}", "is required and has no default")
            )
        elif item.data_type != common_pb2.DATA_TYPE_FILE:
            # A missing optional JSON input reaches the function as None; a
            # missing file input as an empty stream.
            values[item.name] = execution_pb2.ExecutionValue(json="null")

    if violations:
        raise InvalidArgument.many(violations)
    return CheckedInputs(values=values, streamed_files=tuple(file_inputs))


def _json_problem(text: str, data_type: int) -> str | None:
    if len(text.encode()) > MAX_JSON_VALUE_BYTES:
        return f"must be at most {MAX_JSON_VALUE_BYTES:,} bytes serialized"
    try:
        value = json.loads(text)
    except ValueError:
        return "must be valid JSON text"
    if value is None:
        return "must not be null; leave the input out instead"
    return json_type_problem(value, data_type)


def _default(item: common_pb2.StepInput) -> execution_pb2.ExecutionValue | None:
    kind = item.WhichOneof("default_value")
    if kind == "default_json":
        return execution_pb2.ExecutionValue(json=item.default_json)
    if kind == "default_file_content":
        content = item.default_file_content
        return execution_pb2.ExecutionValue(
            file=execution_pb2.StoredFile(
                size_bytes=len(content), sha256=hashlib.sha256(content).hexdigest()
            )
        )
    return None


def _unknown(step: common_pb2.Step, name: str) -> str:
    names = ", ".join(item.name for item in step.inputs) or "none"
    return f"is not an input of step {short_name(step.name)!r} (its inputs: {names})"


def _type_name(data_type: int) -> str:
    return common_pb2.DataType.Name(data_type).removeprefix("DATA_TYPE_").lower()  # type: ignore[arg-type]
