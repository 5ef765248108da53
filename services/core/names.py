"""Step names and the resource names built from them."""

from __future__ import annotations

import re

STEP_NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,63}")
STEP_NAME_RULE = "1 to 63 characters, each a letter, a digit, '-' or '_'"
_STEP_PREFIX = "steps/"


def is_valid_step_name(name: str) -> bool:
    return bool(STEP_NAME_PATTERN.fullmatch(name))


def step_resource_name(step_name: str) -> str:
    return _STEP_PREFIX + step_name


def parse_step_resource_name(name: str) -> str | None:
    """Returns the step name in `steps/{step}`, or None when `name` is malformed."""
    if not name.startswith(_STEP_PREFIX):
        return None
    step_name = name[len(_STEP_PREFIX) :]
    return step_name if is_valid_step_name(step_name) else None
