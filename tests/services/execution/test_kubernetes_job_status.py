"""Reading an execution Job's conditions and its pod's status."""

from __future__ import annotations

from typing import Any

from stepforge.services.execution.job_spec import CONTAINER
from stepforge.services.execution.job_status import (
    deadline_exceeded,
    has_started,
    waiting_reason,
)
from stepforge.services.kubernetes.api import final_condition


def _job(*conditions: dict[str, str]) -> dict[str, Any]:
    return {"status": {"conditions": list(conditions)}}


def _pod(state: dict[str, Any], **status: Any) -> dict[str, Any]:
    return {
        "status": {
            "containerStatuses": [{"name": CONTAINER, "state": state}],
            **status,
        }
    }


def test_only_a_true_complete_or_failed_condition_is_final() -> None:
    suspended = {"type": "Suspended", "status": "True"}
    not_yet = {"type": "Failed", "status": "False"}
    complete = {"type": "Complete", "status": "True"}

    assert final_condition(_job(suspended, not_yet)) is None
    assert final_condition(_job(suspended, complete)) == complete
    assert final_condition(None) is None


def test_a_job_past_its_deadline_says_so() -> None:
    deadline = {"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}
    backoff = {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}

    assert deadline_exceeded(_job(deadline))
    assert not deadline_exceeded(_job(backoff))


def test_the_step_has_started_once_its_container_runs_or_ran() -> None:
    assert has_started(_pod({"running": {}}))
    assert has_started(_pod({"terminated": {"exitCode": 0}}))
    assert not has_started(_pod({"waiting": {"reason": "ContainerCreating"}}))
    assert not has_started({"status": {}})


def test_a_stuck_pod_says_why_with_the_clusters_message() -> None:
    unscheduled = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": " 0/3 nodes are available ",
    }
    pull = {"waiting": {"reason": "ImagePullBackOff", "message": "not found"}}

    assert waiting_reason(None) == "no pod was created for the Job"
    assert waiting_reason(_pod({}, conditions=[unscheduled])) == (
        "Unschedulable: 0/3 nodes are available"
    )
    assert waiting_reason(_pod(pull)) == "ImagePullBackOff: not found"
    assert waiting_reason(_pod({"waiting": {"reason": "ContainerCreating"}})) is None
