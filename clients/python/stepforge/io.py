"""The inputs and outputs a step declares, and the values they may hold."""

from __future__ import annotations

import copy
import json
import keyword
import math
from dataclasses import dataclass
from enum import Enum
from typing import Any, Union

from stepforge._rules import MAX_JSON_VALUE_BYTES
from stepforge.errors import FieldViolation, InvalidArgumentError

__all__ = ["INPUT_OUTPUT_TYPES", "Input", "Output"]


class INPUT_OUTPUT_TYPES(str, Enum):
    """The types an input or output can have; every one but FILE is JSON."""

    ARRAY = "array"
    BOOLEAN = "boolean"
    FILE = "file"
    JSON = "json"
    NUMBER = "number"
    STRING = "string"

    def __str__(self) -> str:
        return self.value


DataTypeLike = Union[INPUT_OUTPUT_TYPES, str]


@dataclass(frozen=True, init=False, repr=False)
class Input:
    """An input of a step: a parameter of its function."""

    name: str
    data_type: INPUT_OUTPUT_TYPES
    description: str
    is_required: bool
    default_value: Any

    def __init__(
        self,
        name: str,
        data_type: DataTypeLike = INPUT_OUTPUT_TYPES.STRING,
        description: str = "",
        is_required: bool = False,
        default_value: Any = None,
    ) -> None:
        owner = _check_name("Input", name)
        checked_type = _check_data_type(owner, data_type)
        _check_description(owner, description)
        if not isinstance(is_required, bool):
            raise _invalid(
                owner, "is_required", _got("must be True or False", is_required)
            )
        encode_default_value(owner, checked_type, default_value)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "data_type", checked_type)
        object.__setattr__(self, "description", description)
        object.__setattr__(self, "is_required", is_required)
        # A copy, so that changing the caller's list or dict later cannot
        # slip a value past the checks above.
        object.__setattr__(self, "default_value", copy.deepcopy(default_value))

    def __repr__(self) -> str:
        return _repr(self, is_required=self.is_required)


@dataclass(frozen=True, init=False, repr=False)
class Output:
    """An output of a step: a key of the dict its function returns."""

    name: str
    data_type: INPUT_OUTPUT_TYPES
    description: str
    default_value: Any

    def __init__(
        self,
        name: str,
        data_type: DataTypeLike = INPUT_OUTPUT_TYPES.STRING,
        description: str = "",
        default_value: Any = None,
    ) -> None:
        owner = _check_name("Output", name)
        checked_type = _check_data_type(owner, data_type)
        _check_description(owner, description)
        encode_default_value(owner, checked_type, default_value)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "data_type", checked_type)
        object.__setattr__(self, "description", description)
        object.__setattr__(self, "default_value", copy.deepcopy(default_value))

    def __repr__(self) -> str:
        return _repr(self)


def encode_default_value(
    owner: str, data_type: INPUT_OUTPUT_TYPES, value: object
) -> str | bytes | None:
    """The default as sent: JSON text, file content as bytes, or None for none.

    `owner` (such as "Input 'x'") starts the message of the InvalidArgumentError
    raised for a value that does not fit `data_type` or is too large.
    """
    if value is None:
        return None
    encoded: str | bytes
    if data_type is INPUT_OUTPUT_TYPES.FILE:
        if isinstance(value, str):
            encoded = value.encode("utf-8")
        elif isinstance(value, bytes):
            encoded = value
        else:
            raise _invalid(
                owner, "default_value", _got("must be str or bytes for a file", value)
            )
        size = len(encoded)
    else:
        _check_json_type(owner, data_type, value)
        try:
            encoded = json.dumps(
                value, allow_nan=False, ensure_ascii=False, separators=(",", ":")
            )
        except (TypeError, ValueError, RecursionError) as error:
            raise _invalid(
                owner,
                "default_value",
                f"must be JSON-serializable for data_type '{data_type}': {error}",
            ) from None
        size = len(encoded.encode("utf-8"))
    if size > MAX_JSON_VALUE_BYTES:
        raise _invalid(
            owner,
            "default_value",
            f"must be at most {MAX_JSON_VALUE_BYTES:,} bytes once serialized, "
            f"got {size:,}",
        )
    return encoded


def _check_json_type(owner: str, data_type: INPUT_OUTPUT_TYPES, value: object) -> None:
    if data_type is INPUT_OUTPUT_TYPES.STRING:
        valid, expected = isinstance(value, str), "a str"
    elif data_type is INPUT_OUTPUT_TYPES.NUMBER:
        valid = isinstance(value, (int, float)) and not isinstance(value, bool)
        if valid and isinstance(value, float) and not math.isfinite(value):
            raise _invalid(
                owner, "default_value", f"must be a finite number, got {value}"
            )
        expected = "an int or a float (not a bool)"
    elif data_type is INPUT_OUTPUT_TYPES.BOOLEAN:
        valid, expected = isinstance(value, bool), "a bool"
    elif data_type is INPUT_OUTPUT_TYPES.ARRAY:
        valid, expected = isinstance(value, list), "a list"
    else:
        return
    if not valid:
        rule = f"must be {expected} for data_type '{data_type}'"
        raise _invalid(owner, "default_value", _got(rule, value))


def _check_name(kind: str, name: object) -> str:
    rule = "must be a valid Python identifier that is not a keyword"
    if not isinstance(name, str):
        raise _invalid(kind, "name", _got(rule, name))
    if not name.isidentifier() or keyword.iskeyword(name):
        raise _invalid(kind, "name", f"{rule}, got {name!r}")
    return f"{kind} {name!r}"


def _check_data_type(owner: str, data_type: object) -> INPUT_OUTPUT_TYPES:
    if isinstance(data_type, INPUT_OUTPUT_TYPES):
        return data_type
    if isinstance(data_type, str):
        for member in INPUT_OUTPUT_TYPES:
            if member.value == data_type:
                return member
    accepted = ", ".join(repr(member.value) for member in INPUT_OUTPUT_TYPES)
    raise _invalid(owner, "data_type", f"must be one of {accepted}, got {data_type!r}")


def _check_description(owner: str, description: object) -> None:
    if not isinstance(description, str):
        raise _invalid(owner, "description", _got("must be a str", description))


def _repr(declared: Input | Output, **extra: object) -> str:
    fields = {
        "name": declared.name,
        "data_type": declared.data_type.value,
        "description": declared.description,
        **extra,
        "default_value": declared.default_value,
    }
    shown = ", ".join(f"{key}={value!r}" for key, value in fields.items())
    return f"{type(declared).__name__}({shown})"


def _got(rule: str, value: object) -> str:
    return f"{rule}, got {type(value).__name__}"


def _invalid(owner: str, field: str, rule: str) -> InvalidArgumentError:
    return InvalidArgumentError(
        f"{owner}: {field} {rule}", field_violations=[FieldViolation(field, rule)]
    )
