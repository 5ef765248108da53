from __future__ import annotations

import importlib

from stepforge import _rules

# Imported by name: the installer maps stepforge.services onto services/, a
# place the type checker's search path does not cover.
limits = importlib.import_module("stepforge.services.core.limits")
names = importlib.import_module("stepforge.services.core.names")


def test_client_limits_equal_the_service_limits() -> None:
    assert _rules.MAX_CODE_BYTES == limits.MAX_CODE_BYTES
    assert _rules.MAX_JSON_VALUE_BYTES == limits.MAX_JSON_VALUE_BYTES
    assert _rules.CHUNK_BYTES == limits.CHUNK_BYTES == 1024 * 1024
    assert _rules.MIN_CREATE_TIMEOUT_S == limits.MIN_CREATE_TIMEOUT_S


def test_client_step_name_rule_equals_the_service_rule() -> None:
    assert _rules.STEP_NAME_PATTERN.pattern == names.STEP_NAME_PATTERN.pattern
    assert _rules.STEP_NAME_PATTERN.flags == names.STEP_NAME_PATTERN.flags
    assert _rules.STEP_NAME_RULE == names.STEP_NAME_RULE


def test_step_names_follow_the_rule() -> None:
    for valid in ("a", "My_step-2", "x" * 63):
        assert _rules.is_valid_step_name(valid)
    for invalid in ("", "x" * 64, "a b", "a/b", "é", "step\n"):
        assert not _rules.is_valid_step_name(invalid)
