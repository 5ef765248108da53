"""Resource names: `steps/{step}`, `pipelines/{pipeline}`, `executions/{id}`."""

from __future__ import annotations

import re

STEP_NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,63}")
STEP_NAME_RULE = "1 to 63 characters, each a letter, a digit, '-' or '_'"
STEPS = "steps"
PIPELINES = "pipelines"
EXECUTIONS = "executions"


def is_valid_step_name(name: str) -> bool:
    return bool(STEP_NAME_PATTERN.fullmatch(name))


def step_resource_name(step_name: str) -> str:
    return f"{STEPS}/{step_name}"


def parse_step_resource_name(name: str) -> str | None:
    """Returns the step name in `steps/{step}`, or None when `name` is malformed."""
    return parse_resource_name(STEPS, name)


def parse_resource_name(collection: str, name: str) -> str | None:
    """Returns the id in `{collection}/{id}`, or None when `name` is malformed.

    Every collection shares the step-name rule for its ids.
    """
    prefix, slash, resource_id = name.partition("/")
    if prefix != collection or not slash or not is_valid_step_name(resource_id):
        return None
    return resource_id


def short_name(name: str) -> str:
    """The id in a resource name, for messages: `steps/train` -> `train`."""
    return name.partition("/")[2] or name


def resource_rule(collection: str) -> str:
    return f"must be {collection}/{{id}} with an id of {STEP_NAME_RULE}"
