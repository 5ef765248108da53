"""What the commands print: tables and key: value lines for people, JSON for
scripts."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

# Wider cells are cut, so that one long failure reason keeps a table readable.
MAX_CELL_CHARS = 60
_ELLIPSIS = "..."
_COLUMN_GAP = "  "
_TIME_SUFFIX = "_at"


def print_json(value: Any) -> None:
    """Prints `value` as indented JSON; bytes and file objects are refused."""
    print(json.dumps(value, indent=2, ensure_ascii=False))


def print_json_line(value: Any) -> None:
    """Prints `value` as JSON on one line, at once, for a stream of records."""
    print(json.dumps(value, ensure_ascii=False), flush=True)


def print_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[tuple[str, str]],
    empty: str,
) -> None:
    """Prints the rows under the headers of `columns`, (header, key) pairs,
    or `empty` when there are none. Times, the values of keys ending in
    `_at`, are shown to the second."""
    if not rows:
        print(empty)
        return
    cells = [[header for header, _ in columns]]
    cells.extend([_cell(key, row.get(key)) for _, key in columns] for row in rows)
    widths = [max(len(line[index]) for line in cells) for index in range(len(columns))]
    for line in cells:
        padded = [cell.ljust(width) for cell, width in zip(line, widths)]
        print(_COLUMN_GAP.join(padded).rstrip())


def print_fields(fields: Sequence[tuple[str, Any]]) -> None:
    """Prints one `key: value` line per field, the values aligned; a value of
    several lines continues indented under the first."""
    width = max((len(key) for key, _ in fields), default=0) + 1
    for key, value in fields:
        lines = format_value(value).splitlines() or [""]
        print(f"{key + ':':<{width}} {lines[0]}".rstrip())
        for line in lines[1:]:
            print(f"{'':<{width}} {line}".rstrip())


def format_value(value: Any) -> str:
    """A value as people read it: text as it is, nothing as '-', lists of
    plain values joined by commas, anything else as compact JSON."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list) and all(
        isinstance(item, (str, int, float)) for item in value
    ):
        return ", ".join(str(item) for item in value) if value else "-"
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def flatten(prefix: str, mapping: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """The entries of `mapping` as fields named `prefix.key`."""
    return [(f"{prefix}.{key}", value) for key, value in mapping.items()]


def print_error(message: str) -> None:
    print(f"stepforge: {message}", file=sys.stderr)


def short_time(value: str) -> str:
    """An ISO 8601 time in UTC to the second, as `2024-05-01T12:00:00Z`; any
    other text as it is."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    if moment.utcoffset() != timedelta(0):
        return value
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _cell(key: str, value: Any) -> str:
    if key.endswith(_TIME_SUFFIX) and isinstance(value, str):
        return short_time(value)
    return _cut(format_value(value))


def _cut(text: str) -> str:
    flat = " ".join(text.split())
    if len(flat) <= MAX_CELL_CHARS:
        return flat
    return flat[: MAX_CELL_CHARS - len(_ELLIPSIS)] + _ELLIPSIS
