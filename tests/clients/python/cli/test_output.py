"""Tables, key: value lines and values as the commands print them."""

from __future__ import annotations

import pytest

from stepforge.cli._output import (
    MAX_CELL_CHARS,
    format_value,
    print_fields,
    print_table,
    short_time,
)


def test_tables_align_their_columns(capsys: pytest.CaptureFixture[str]) -> None:
    print_table(
        [{"name": "a", "step": "long-step"}, {"name": "longer", "step": None}],
        [("NAME", "name"), ("STEP", "step")],
        "none",
    )

    assert capsys.readouterr().out.splitlines() == [
        "NAME    STEP",
        "a       long-step",
        "longer  -",
    ]


def test_an_empty_table_prints_its_message(capsys: pytest.CaptureFixture[str]) -> None:
    print_table([], [("NAME", "name")], "no steps")

    assert capsys.readouterr().out == "no steps\n"


def test_table_cells_show_times_to_the_second_and_cut_long_text(
    capsys: pytest.CaptureFixture[str],
) -> None:
    print_table(
        [{"created_at": "2024-05-01T12:00:01.123456+00:00", "why": "x" * 100}],
        [("CREATED", "created_at"), ("WHY", "why")],
        "none",
    )

    row = capsys.readouterr().out.splitlines()[1].split()
    assert row[0] == "2024-05-01T12:00:01Z"
    assert len(row[1]) == MAX_CELL_CHARS and row[1].endswith("...")


def test_fields_align_and_continue_lines_under_their_value(
    capsys: pytest.CaptureFixture[str],
) -> None:
    print_fields([("status", "Failed"), ("failure_reason", "first\nsecond")])

    assert capsys.readouterr().out.splitlines() == [
        "status:         Failed",
        "failure_reason: first",
        "                second",
    ]


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (None, "-"),
        ("text", "text"),
        (True, "yes"),
        (3, "3"),
        (["a", 1], "a, 1"),
        ([], "-"),
        ({"k": [1]}, '{"k": [1]}'),
    ],
)
def test_values_read_as_people_expect(value: object, shown: str) -> None:
    assert format_value(value) == shown


def test_only_utc_times_are_shortened() -> None:
    assert short_time("2024-05-01T12:00:00+02:00") == "2024-05-01T12:00:00+02:00"
    assert short_time("not a time") == "not a time"
