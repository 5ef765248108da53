"""Conversions between the SDK's inputs and outputs and their messages."""

from __future__ import annotations

import json
from typing import Union

from stepforge.io import (
    INPUT_OUTPUT_TYPES,
    DataTypeLike,
    Input,
    Output,
    encode_default_value,
)
from stepforge.v1 import common_pb2

_DATA_TYPE_TO_PROTO = {
    INPUT_OUTPUT_TYPES.ARRAY: common_pb2.DATA_TYPE_ARRAY,
    INPUT_OUTPUT_TYPES.BOOLEAN: common_pb2.DATA_TYPE_BOOLEAN,
    INPUT_OUTPUT_TYPES.FILE: common_pb2.DATA_TYPE_FILE,
    INPUT_OUTPUT_TYPES.JSON: common_pb2.DATA_TYPE_JSON,
    INPUT_OUTPUT_TYPES.NUMBER: common_pb2.DATA_TYPE_NUMBER,
    INPUT_OUTPUT_TYPES.STRING: common_pb2.DATA_TYPE_STRING,
}
_DATA_TYPE_FROM_PROTO = {value: key for key, value in _DATA_TYPE_TO_PROTO.items()}

_IoMessage = Union[common_pb2.StepInput, common_pb2.StepOutput]


def data_type_to_proto(data_type: DataTypeLike) -> common_pb2.DataType.ValueType:
    """The message value of `data_type`; ValueError for an unknown type."""
    return _DATA_TYPE_TO_PROTO[INPUT_OUTPUT_TYPES(data_type)]


def data_type_from_proto(value: common_pb2.DataType.ValueType) -> INPUT_OUTPUT_TYPES:
    """The SDK type of a message value; ValueError for UNSPECIFIED or unknown."""
    try:
        return _DATA_TYPE_FROM_PROTO[value]
    except KeyError:
        raise ValueError(f"data type {value} has no SDK equivalent") from None


def input_to_proto(step_input: Input) -> common_pb2.StepInput:
    """The StepInput message that declares `step_input`."""
    message = common_pb2.StepInput(
        name=step_input.name,
        data_type=data_type_to_proto(step_input.data_type),
        description=step_input.description,
        is_required=step_input.is_required,
    )
    _set_default(message, f"Input {step_input.name!r}", step_input)
    return message


def output_to_proto(step_output: Output) -> common_pb2.StepOutput:
    """The StepOutput message that declares `step_output`."""
    message = common_pb2.StepOutput(
        name=step_output.name,
        data_type=data_type_to_proto(step_output.data_type),
        description=step_output.description,
    )
    _set_default(message, f"Output {step_output.name!r}", step_output)
    return message


def default_value_from_proto(message: _IoMessage) -> object:
    """The default as a Python value: decoded JSON, file bytes, or None."""
    which = message.WhichOneof("default_value")
    if which == "default_json":
        return json.loads(message.default_json)
    if which == "default_file_content":
        return message.default_file_content
    return None


def _set_default(message: _IoMessage, owner: str, declared: Input | Output) -> None:
    # Encoded again rather than trusted: a list or dict default can have been
    # changed in place since the declaration was checked.
    encoded = encode_default_value(owner, declared.data_type, declared.default_value)
    if isinstance(encoded, bytes):
        message.default_file_content = encoded
    elif encoded is not None:
        message.default_json = encoded
