"""A Job's podFailurePolicy: what a failed pod means for its Job."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .meta import Obj
from .pod_status import container_statuses


def failure_policy_action(spec: Mapping[str, Any], pod: Obj) -> tuple[str, str]:
    """The action of the first podFailurePolicy rule a failed pod matches
    ("Count" if none does), and the message explaining it."""
    rules = (spec.get("podFailurePolicy") or {}).get("rules") or []
    status = pod.get("status") or {}
    containers = container_statuses(pod)
    pod_name = f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
    for index, rule in enumerate(rules):
        action = rule.get("action", "Count")
        matched = _matching_exit(rule.get("onExitCodes"), containers)
        if matched is not None:
            container, code = matched
            return action, (
                f"Container {container} for pod {pod_name} failed with exit code "
                f"{code} matching {action} rule at index {index}"
            )
        condition = _matching_condition(
            rule.get("onPodConditions") or [], status.get("conditions") or []
        )
        if condition is not None:
            return action, (
                f"Pod {pod_name} has condition {condition} matching {action} rule "
                f"at index {index}"
            )
    return "Count", ""


def _matching_exit(
    requirement: Mapping[str, Any] | None, containers: Sequence[Obj]
) -> tuple[str, int] | None:
    if not requirement:
        return None
    wanted_in = requirement.get("operator") == "In"
    for container in containers:
        if requirement.get("containerName") not in (None, container["name"]):
            continue
        terminated = (container.get("state") or {}).get("terminated") or {}
        code = terminated.get("exitCode")
        # Rules look at failed containers only.
        if not code:
            continue
        if (code in requirement.get("values", [])) == wanted_in:
            return container["name"], int(code)
    return None


def _matching_condition(
    patterns: Sequence[Mapping[str, Any]], conditions: Sequence[Obj]
) -> str | None:
    for pattern in patterns:
        for condition in conditions:
            same_type = condition.get("type") == pattern.get("type")
            if same_type and condition.get("status") == pattern.get("status", "True"):
                return str(pattern["type"])
    return None
