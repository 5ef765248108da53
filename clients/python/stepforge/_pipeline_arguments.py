"""Checks of the arguments the pipeline and execution calls take."""

from __future__ import annotations

import math
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

from stepforge._rules import STEP_NAME_RULE, is_valid_step_name
from stepforge.errors import InvalidArgumentError


def check_name(field: str, name: Any) -> None:
    """Raises unless `name` is a valid pipeline or step name."""
    if not isinstance(name, str) or not is_valid_step_name(name):
        raise InvalidArgumentError.for_field(field, f"must be {STEP_NAME_RULE}")


def check_execution_id(execution_id: Any) -> None:
    """Raises unless `execution_id` is an execution id, not a resource name."""
    if not isinstance(execution_id, str) or not execution_id or "/" in execution_id:
        raise InvalidArgumentError.for_field(
            "execution_id", "must be a non-empty execution id without '/'"
        )


def run_timeout(timeout_s: Any) -> timedelta | None:
    """The run timeout as a timedelta, or None when not given."""
    if timeout_s is None:
        return None
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)):
        raise InvalidArgumentError.for_field("timeout_s", "must be a number of seconds")
    if not math.isfinite(timeout_s) or timeout_s <= 0:
        raise InvalidArgumentError.for_field(
            "timeout_s", f"must be more than 0 seconds, got {timeout_s}"
        )
    try:
        return timedelta(seconds=timeout_s)
    except OverflowError:
        raise InvalidArgumentError.for_field(
            "timeout_s", f"is too large, got {timeout_s}"
        ) from None


def output_target(path: Any) -> Path | None:
    """The file to write an output to, or None when not given; its folder
    must exist."""
    if path is None:
        return None
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise InvalidArgumentError.for_field(
            "path", "must be a non-empty str or os.PathLike"
        )
    target = Path(os.fsdecode(path))
    if target.is_dir():
        raise InvalidArgumentError.for_field(
            "path", f"{str(target)!r} is a folder; give the path of a file"
        )
    if not target.parent.is_dir():
        raise InvalidArgumentError.for_field(
            "path", f"its folder {str(target.parent)!r} does not exist"
        )
    return target
