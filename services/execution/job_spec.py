"""The Kubernetes Job that runs one execution: a pure function of the
execution, its limits and the cluster settings."""

from __future__ import annotations

import hashlib
import math
import re
from typing import Any

from stepforge.services.core.languages import find_language
from stepforge.services.core.names import short_name
from stepforge.services.execution.limits import Limits, execution_timeout_s
from stepforge.services.execution.store import StoredExecution
from stepforge.services.kubernetes import labels
from stepforge.services.kubernetes.settings import KubernetesSettings
from stepforge.services.kubernetes.step_image import (
    CODE_DIR,
    POD_ENTRY,
    RUN_DIR,
    STEP_UID,
)
from stepforge.v1 import execution_pb2

COMPONENT = "execution"
CONTAINER = "step"
JOB_PREFIX = "stepforge-run-"
TERMINATION_LOG = "/dev/termination-log"
# How long a stopped pod gets between SIGTERM and SIGKILL; pod_entry passes
# SIGTERM on to the step, which then has this long to wind down.
TERMINATE_GRACE_S = 5

_MAX_NAME = 63
_NOT_IN_NAME = re.compile(r"[^a-z0-9-]+")
_LOCAL_RUNTIME = re.compile(r"^[0-9a-f]{64}$")
_IMAGE_REFERENCE = re.compile(
    r"^[a-z0-9]([a-z0-9._-]*[a-z0-9])?(:[0-9]+)?(/[a-z0-9]([a-z0-9._-]*[a-z0-9])?)*"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[0-9a-f]{64})?$"
)


def job_name(execution: str) -> str:
    """`executions/<id>` -> `stepforge-run-<id>`, a valid DNS-1123 label; an id
    that had to be changed keeps a hash of itself, so names never collide."""
    raw = short_name(execution)
    cleaned = _NOT_IN_NAME.sub("-", raw.lower()).strip("-")
    name = JOB_PREFIX + cleaned
    if cleaned == raw and len(name) <= _MAX_NAME:
        return name
    digest = hashlib.sha256(raw.encode()).hexdigest()[:10]
    room = _MAX_NAME - len(JOB_PREFIX) - len(digest) - 1
    return f"{JOB_PREFIX}{cleaned[:room].strip('-')}-{digest}".replace("--", "-")


def job_labels(run: StoredExecution) -> dict[str, str]:
    """The labels that find an execution's Job and pod again."""
    execution = run.execution
    return {
        labels.MANAGED_BY: labels.MANAGER,
        labels.COMPONENT: COMPONENT,
        labels.ENVIRONMENT: labels.label_value(run.environment),
        labels.PIPELINE: labels.label_value(short_name(execution.pipeline)),
        labels.STEP: labels.label_value(short_name(execution.step)),
        labels.EXECUTION: labels.label_value(short_name(execution.name)),
    }


def needs_gpu(run: StoredExecution) -> bool:
    language = find_language(run.step.container_config.language)
    return language is not None and language.needs_gpu


def image_problem(runtime_id: str) -> str | None:
    """Why `runtime_id` is not an image a pod can run, or None."""
    if _LOCAL_RUNTIME.match(runtime_id):
        return (
            f"the step was built by the local build backend (runtime {runtime_id}), "
            "which the kubernetes execution backend cannot run; create the step "
            "again with the kubernetes build backend"
        )
    if not _IMAGE_REFERENCE.match(runtime_id):
        return f"the step's runtime {runtime_id!r} is not an image reference"
    return None


def execution_job(
    run: StoredExecution,
    encoded_pod_spec: str,
    limits: Limits,
    settings: KubernetesSettings,
) -> dict[str, Any]:
    """The batch/v1 Job manifest that runs `run` in its step's image."""
    execution = run.execution
    gpu = needs_gpu(run)
    job_labels_ = job_labels(run)
    resources: dict[str, Any] = {"memory": str(limits.memory_bytes)}
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        # Service links would hand the step every service's address in its
        # environment.
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": TERMINATE_GRACE_S,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": STEP_UID,
            "runAsGroup": STEP_UID,
            "fsGroup": STEP_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumes": [
            {"name": "run", "emptyDir": {}},
            {"name": "tmp", "emptyDir": {}},
        ],
        "containers": [
            {
                "name": CONTAINER,
                "image": run.step.runtime_id,
                "imagePullPolicy": "IfNotPresent",
                "command": ["python", "-u", POD_ENTRY],
                "workingDir": CODE_DIR,
                "env": [
                    {"name": key, "value": value}
                    for key, value in _environment(execution, encoded_pod_spec)
                ],
                "resources": {"limits": resources},
                "securityContext": {
                    "runAsNonRoot": True,
                    "allowPrivilegeEscalation": False,
                    "readOnlyRootFilesystem": True,
                    "capabilities": {"drop": ["ALL"]},
                },
                "volumeMounts": [
                    {"name": "run", "mountPath": RUN_DIR},
                    {"name": "tmp", "mountPath": "/tmp"},
                ],
                "terminationMessagePath": TERMINATION_LOG,
                "terminationMessagePolicy": "File",
            }
        ],
    }
    if gpu:
        resources[settings.gpu_resource] = "1"
        pod["nodeSelector"] = dict(settings.gpu_node_selector)
        pod["tolerations"] = [item.as_spec() for item in settings.gpu_tolerations]
    if settings.registry_secret:
        pod["imagePullSecrets"] = [{"name": settings.registry_secret}]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(execution.name),
            "namespace": settings.namespace,
            "labels": job_labels_,
            # The exact names, which labels can only hold cleaned up.
            "annotations": {
                labels.EXECUTION: execution.name,
                labels.PIPELINE: execution.pipeline,
                labels.STEP: execution.step,
            },
        },
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": max(1, math.ceil(execution_timeout_s(execution))),
            "ttlSecondsAfterFinished": settings.job_ttl_s,
            "podFailurePolicy": {
                "rules": [
                    # A pod the cluster took away (preemption, eviction, a
                    # drained node) runs again instead of failing the step.
                    {
                        "action": "Ignore",
                        "onPodConditions": [
                            {"type": "DisruptionTarget", "status": "True"}
                        ],
                    },
                    {
                        "action": "FailJob",
                        "onExitCodes": {
                            "containerName": CONTAINER,
                            "operator": "NotIn",
                            "values": [0],
                        },
                    },
                ]
            },
            "template": {"metadata": {"labels": dict(job_labels_)}, "spec": pod},
        },
    }


def _environment(
    execution: execution_pb2.Execution, encoded_pod_spec: str
) -> list[tuple[str, str]]:
    return [
        ("STEPFORGE_POD_SPEC", encoded_pod_spec),
        ("STEPFORGE_RUN_DIR", RUN_DIR),
        ("STEPFORGE_TERMINATION_LOG", TERMINATION_LOG),
        ("STEPFORGE_EXECUTION_ID", short_name(execution.name)),
        ("HOME", f"{RUN_DIR}/home"),
        ("TMPDIR", f"{RUN_DIR}/tmp"),
        ("LANG", "C.UTF-8"),
        ("PYTHONUNBUFFERED", "1"),
        ("PYTHONDONTWRITEBYTECODE", "1"),
    ]
