from __future__ import annotations

import dataclasses
import math

import pytest

from stepforge._io_proto import (
    data_type_from_proto,
    data_type_to_proto,
    default_value_from_proto,
    input_to_proto,
    output_to_proto,
)
from stepforge._rules import MAX_JSON_VALUE_BYTES
from stepforge.errors import FieldViolation, InvalidArgumentError
from stepforge.io import INPUT_OUTPUT_TYPES, Input, Output
from stepforge.v1 import common_pb2


def test_types_enum_has_the_documented_values() -> None:
    assert {member.name: member.value for member in INPUT_OUTPUT_TYPES} == {
        "ARRAY": "array",
        "BOOLEAN": "boolean",
        "FILE": "file",
        "JSON": "json",
        "NUMBER": "number",
        "STRING": "string",
    }
    as_text: str = INPUT_OUTPUT_TYPES.JSON
    assert as_text == "json"
    assert f"{INPUT_OUTPUT_TYPES.FILE}" == "file"


def test_input_defaults_match_the_documented_signature() -> None:
    step_input = Input("x")
    assert step_input.name == "x"
    assert step_input.data_type is INPUT_OUTPUT_TYPES.STRING
    assert step_input.description == ""
    assert step_input.is_required is False
    assert step_input.default_value is None


def test_data_type_accepts_enum_and_its_string_value() -> None:
    assert Input("x", "json") == Input("x", INPUT_OUTPUT_TYPES.JSON)
    assert Output("y", data_type="file").data_type is INPUT_OUTPUT_TYPES.FILE


@pytest.mark.parametrize("data_type", ["String", "JSON", "int", "", None, 3])
def test_unknown_data_type_is_rejected_with_accepted_list(data_type: object) -> None:
    with pytest.raises(InvalidArgumentError) as raised:
        Input("x", data_type)  # type: ignore[arg-type]
    message = str(raised.value)
    assert "data_type" in message
    for accepted in ("array", "boolean", "file", "json", "number", "string"):
        assert repr(accepted) in message
    assert raised.value.field_violations[0].field == "data_type"
    assert raised.value.code is None


@pytest.mark.parametrize("name", ["", "1abc", "has space", "a-b", "class", 5, None])
def test_invalid_names_are_rejected(name: object) -> None:
    for declare in (Input, Output):
        with pytest.raises(ValueError, match="name must be a valid Python identifier"):
            declare(name)  # type: ignore[arg-type]


def test_description_must_be_str() -> None:
    with pytest.raises(ValueError, match="description must be a str"):
        Output("y", description=3)  # type: ignore[arg-type]


def test_is_required_must_be_bool() -> None:
    with pytest.raises(ValueError, match="is_required must be True or False"):
        Input("x", is_required=1)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("data_type", "value"),
    [
        ("string", "text"),
        ("number", 3),
        ("number", -2.5),
        ("boolean", False),
        ("array", [1, "a", None, {"k": [True]}]),
        ("json", {"a": [1, 2.5, None]}),
        ("json", "plain"),
        ("json", 7),
        ("file", "default,content,here"),
        ("file", b"\x00\xff"),
    ],
)
def test_default_values_of_the_right_type_are_accepted(
    data_type: str, value: object
) -> None:
    assert Input("x", data_type, default_value=value).default_value == value
    assert Output("y", data_type, default_value=value).default_value == value


@pytest.mark.parametrize(
    ("data_type", "value", "rule"),
    [
        ("string", 3, "must be a str"),
        ("number", True, "not a bool"),
        ("number", "3", "must be an int or a float"),
        ("number", math.nan, "finite"),
        ("number", math.inf, "finite"),
        ("boolean", 1, "must be a bool"),
        ("array", (1, 2), "must be a list"),
        ("array", [object()], "JSON-serializable"),
        ("array", [math.nan], "JSON-serializable"),
        ("json", {"a": {1, 2}}, "JSON-serializable"),
        ("file", 12, "must be str or bytes"),
    ],
)
def test_default_values_of_the_wrong_type_are_rejected(
    data_type: str, value: object, rule: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=rule) as raised:
        Input("x", data_type, default_value=value)
    assert str(raised.value).startswith("Input 'x': default_value")
    assert raised.value.field_violations[0].field == "default_value"


def test_circular_json_default_is_rejected() -> None:
    looped: list[object] = []
    looped.append(looped)
    with pytest.raises(InvalidArgumentError, match="JSON-serializable"):
        Output("y", "json", default_value=looped)


def test_default_value_size_limit_counts_serialized_bytes() -> None:
    # The JSON text of a string adds its two quotes.
    fits = "a" * (MAX_JSON_VALUE_BYTES - 2)
    assert Input("x", "string", default_value=fits).default_value == fits
    with pytest.raises(InvalidArgumentError, match="60,000 bytes") as raised:
        Input("x", "string", default_value=fits + "a")
    assert raised.value.field_violations[0].field == "default_value"
    # Non-ASCII text counts in UTF-8 bytes, not characters.
    with pytest.raises(InvalidArgumentError, match="60,000 bytes"):
        Input("x", "json", default_value="é" * (MAX_JSON_VALUE_BYTES // 2))
    with pytest.raises(InvalidArgumentError, match="60,000 bytes"):
        Output("y", "file", default_value=b"\0" * (MAX_JSON_VALUE_BYTES + 1))


def test_declarations_are_immutable_and_keep_their_own_default_copy() -> None:
    values = [1, 2]
    step_input = Input("x", "array", default_value=values)
    values.append(3)
    assert step_input.default_value == [1, 2]
    with pytest.raises(dataclasses.FrozenInstanceError):
        step_input.name = "other"  # type: ignore[misc]


def test_repr_shows_plain_type_value() -> None:
    assert repr(Input("x", "json", is_required=True)) == (
        "Input(name='x', data_type='json', description='', is_required=True, "
        "default_value=None)"
    )
    assert repr(Output("y", "file")) == (
        "Output(name='y', data_type='file', description='', default_value=None)"
    )


def test_equality_compares_every_attribute() -> None:
    assert Input("x", default_value="a") == Input("x", default_value="a")
    assert Input("x", default_value="a") != Input("x", default_value="b")
    assert Input("x", is_required=True) != Input("x")
    other: object = Input("y")
    assert Output("y") != other


@pytest.mark.parametrize("member", list(INPUT_OUTPUT_TYPES))
def test_data_type_round_trips_through_proto(member: INPUT_OUTPUT_TYPES) -> None:
    assert data_type_from_proto(data_type_to_proto(member)) is member
    assert data_type_to_proto(member.value) == data_type_to_proto(member)


def test_unspecified_proto_data_type_has_no_sdk_type() -> None:
    with pytest.raises(ValueError, match="no SDK equivalent"):
        data_type_from_proto(common_pb2.DATA_TYPE_UNSPECIFIED)


def test_input_to_proto_encodes_json_default_as_json_text() -> None:
    message = input_to_proto(
        Input("x", "json", "about x", is_required=True, default_value={"k": [1]})
    )
    assert message.name == "x"
    assert message.data_type == common_pb2.DATA_TYPE_JSON
    assert message.description == "about x"
    assert message.is_required is True
    assert message.default_json == '{"k":[1]}'
    assert default_value_from_proto(message) == {"k": [1]}


def test_output_to_proto_encodes_file_default_as_bytes() -> None:
    message = output_to_proto(Output("y", "file", default_value="a,b"))
    assert message.WhichOneof("default_value") == "default_file_content"
    assert message.default_file_content == b"a,b"
    assert default_value_from_proto(message) == b"a,b"


def test_proto_without_default_has_none() -> None:
    message = input_to_proto(Input("x", "number"))
    assert message.WhichOneof("default_value") is None
    assert default_value_from_proto(message) is None


def test_false_and_zero_defaults_are_sent() -> None:
    assert input_to_proto(Input("x", "boolean", default_value=False)).default_json == (
        "false"
    )
    assert output_to_proto(Output("y", "number", default_value=0)).default_json == "0"


def test_proto_conversion_rechecks_a_default_changed_in_place() -> None:
    step_input = Input("x", "array", default_value=[1])
    step_input.default_value.append(object())
    with pytest.raises(InvalidArgumentError, match="JSON-serializable"):
        input_to_proto(step_input)


def test_errors_carry_field_violation_tuples() -> None:
    with pytest.raises(InvalidArgumentError) as raised:
        Input("x", "boolean", default_value="yes")
    violation = raised.value.field_violations[0]
    assert violation == FieldViolation("default_value", violation.description)
    field, description = violation
    assert field == "default_value"
    assert "must be a bool" in description
