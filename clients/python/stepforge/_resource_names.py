"""The prefixes of the suite's resource names, and the short names under them."""

from __future__ import annotations

PIPELINE_PREFIX = "pipelines/"
STEP_PREFIX = "steps/"
EXECUTION_PREFIX = "executions/"


def short_name(resource_name: str, prefix: str) -> str:
    """The name after `prefix`; a name without it comes back unchanged."""
    if resource_name.startswith(prefix):
        return resource_name[len(prefix) :]
    return resource_name
