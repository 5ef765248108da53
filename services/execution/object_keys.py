"""Where an execution's files live in the object store."""

from __future__ import annotations

from stepforge.services.core.names import short_name


def execution_prefix(execution: str) -> str:
    return f"executions/{short_name(execution)}/"


def input_key(execution: str, input_name: str) -> str:
    return f"{execution_prefix(execution)}inputs/{input_name}"


def output_key(execution: str, output_name: str) -> str:
    return f"{execution_prefix(execution)}outputs/{output_name}"
