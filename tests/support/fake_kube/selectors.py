"""Label and field selectors, as list and watch requests pass them."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from .errors import ApiError

Selector = Callable[[Mapping[str, Any]], bool]

_SET_REQUIREMENT = re.compile(
    r"^\s*(?P<key>[^\s!=(),]+)\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)\s*$"
)
_EQUALITY = re.compile(
    r"^\s*(?P<key>[^\s!=(),]+)\s*(?P<op>==|=|!=)\s*(?P<value>[^\s!=(),]*)\s*$"
)
_EXISTS = re.compile(r"^\s*(?P<neg>!?)\s*(?P<key>[^\s!=(),]+)\s*$")

# Field selectors each kind answers, as the real API server limits them.
_FIELDS = {
    "Pod": ("metadata.name", "metadata.namespace", "spec.nodeName", "status.phase"),
    "Job": ("metadata.name", "metadata.namespace", "status.successful"),
}
_DEFAULT_FIELDS = ("metadata.name", "metadata.namespace")


def label_selector(text: str | None) -> Selector:
    """A predicate on an object's labels; BadRequest if `text` does not parse."""
    requirements = [_requirement(part) for part in _split(text or "")]

    def matches(obj: Mapping[str, Any]) -> bool:
        labels = obj.get("metadata", {}).get("labels") or {}
        return all(requirement(labels) for requirement in requirements)

    return matches


def field_selector(kind: str, text: str | None) -> Selector:
    """A predicate on an object's selectable fields; BadRequest if unknown."""
    allowed = _FIELDS.get(kind, _DEFAULT_FIELDS)
    checks: list[tuple[str, bool, str]] = []
    for part in _split(text or ""):
        match = _EQUALITY.match(part)
        if not match:
            raise ApiError("BadRequest", f"invalid field selector: {part!r}")
        field = match.group("key")
        if field not in allowed:
            raise ApiError(
                "BadRequest",
                f'field label not supported: "{field}"; {kind} answers '
                + ", ".join(allowed),
            )
        checks.append((field, match.group("op") != "!=", match.group("value")))

    def matches(obj: Mapping[str, Any]) -> bool:
        return all(
            (_field_value(obj, field) == value) == wanted
            for field, wanted, value in checks
        )

    return matches


def _split(text: str) -> list[str]:
    # Commas separate requirements except inside an `in (a,b)` value list.
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
            continue
        depth += {"(": 1, ")": -1}.get(char, 0)
        current += char
    parts.append(current)
    return [part for part in parts if part.strip()]


def _requirement(part: str) -> Callable[[Mapping[str, str]], bool]:
    match = _SET_REQUIREMENT.match(part)
    if match:
        key = match.group("key")
        values = {value.strip() for value in match.group("values").split(",")}
        if match.group("op") == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    match = _EQUALITY.match(part)
    if match:
        key, value = match.group("key"), match.group("value")
        if match.group("op") == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    match = _EXISTS.match(part)
    if match:
        key = match.group("key")
        if match.group("neg"):
            return lambda labels: key not in labels
        return lambda labels: key in labels
    raise ApiError("BadRequest", f"unable to parse requirement: {part.strip()!r}")


def _field_value(obj: Mapping[str, Any], field: str) -> str:
    value: Any = obj
    for step in field.split("."):
        value = value.get(step) if isinstance(value, Mapping) else None
    if value is None:
        return ""
    return str(value)
