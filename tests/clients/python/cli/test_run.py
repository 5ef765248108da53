"""How `stepforge run` reads --input values."""

from __future__ import annotations

import pytest

from stepforge.cli._run import parse_value


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("3", 3),
        ("2.5", 2.5),
        ('"3"', "3"),
        ("true", True),
        ("null", None),
        ("[1, 2]", [1, 2]),
        ('{"a": 1}', {"a": 1}),
        ("abc", "abc"),
        ("", ""),
        ("NaN", "NaN"),
        ("Infinity", "Infinity"),
        ("data.csv", "data.csv"),
    ],
)
def test_input_values_are_json_when_they_parse_and_text_otherwise(
    text: str, value: object
) -> None:
    assert parse_value(text) == value
    assert type(parse_value(text)) is type(value)
