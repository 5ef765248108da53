"""Markers a step's `container_config` uses instead of a value."""

from __future__ import annotations

from enum import Enum


class STEP_PARAMETER(Enum):
    """How a step treats a `container_config` setting it gives no value for.

    FALLBACK_PROJECT: take the value in the project settings; the same as
    leaving the key out.
    NULL: set no value, and ignore the one in the project settings.
    """

    FALLBACK_PROJECT = "fallback_project"
    NULL = "null"
