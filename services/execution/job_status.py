"""What an execution's Job and its pod say of themselves: read from the API
server's JSON, never asked for."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stepforge.services.execution.job_spec import CONTAINER
from stepforge.services.kubernetes.api import final_condition

# Waiting reasons of a container that will not start without help.
_STUCK_REASONS = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "ErrImageNeverPull",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)


def deadline_exceeded(job: dict[str, Any] | None) -> bool:
    """Whether the Job failed for running past its activeDeadlineSeconds."""
    condition = final_condition(job)
    return (
        condition is not None
        and condition.get("type") == "Failed"
        and condition.get("reason") == "DeadlineExceeded"
    )


def has_started(pod: dict[str, Any]) -> bool:
    """Whether the step's container runs, or ran."""
    state = container_state(pod)
    return state is not None and ("running" in state or "terminated" in state)


def container_state(pod: dict[str, Any] | None) -> dict[str, Any] | None:
    """The state of the step's container; None until the pod reports one."""
    for status in ((pod or {}).get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == CONTAINER:
            state: dict[str, Any] = status.get("state") or {}
            return state
    return None


def waiting_reason(pod: dict[str, Any] | None) -> str | None:
    """Why a pod that has not started is stuck, as `Reason: message`."""
    if pod is None:
        return "no pod was created for the Job"
    status = pod.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == (
            "False"
        ):
            return _reason_text(condition.get("reason") or "Unschedulable", condition)
    containers = (status.get("initContainerStatuses") or []) + (
        status.get("containerStatuses") or []
    )
    for container in containers:
        waiting = (container.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in _STUCK_REASONS:
            return _reason_text(waiting["reason"], waiting)
    return None


def _reason_text(reason: str, source: Mapping[str, Any]) -> str:
    message = str(source.get("message") or "").strip()
    return f"{reason}: {message}" if message else reason
