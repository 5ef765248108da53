"""The Job that runs one execution on Kubernetes, built without a cluster."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import kubernetes_validate
import pytest

from stepforge.services.execution.job_spec import (
    CONTAINER,
    execution_job,
    image_problem,
    job_labels,
    job_name,
)
from stepforge.services.execution.limits import DEFAULT_LIMITS, GIB, Limits
from stepforge.services.execution.store import StoredExecution
from stepforge.services.kubernetes import labels
from stepforge.services.kubernetes.settings import KubernetesSettings, Toleration
from stepforge.v1 import common_pb2, execution_pb2

IMAGE = "registry.local:5000/steps:0123abcd"
EXECUTION_ID = "3f2a9c0d4b5e6f708192a3b4c5d6e7f8"
KUBERNETES_VERSIONS = ("1.33.0", "1.37.0")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _run(
    language: str = "python:3.11-slim",
    timeout_s: float = 90,
    environment: str = "env-7",
    pipeline: str = "pipelines/daily-train",
) -> StoredExecution:
    execution = execution_pb2.Execution(
        name=f"executions/{EXECUTION_ID}",
        pipeline=pipeline,
        step="steps/train",
        status=execution_pb2.EXECUTION_STATUS_PENDING,
    )
    execution.timeout.FromTimedelta(timedelta(seconds=timeout_s))
    step = common_pb2.Step(name="steps/train", runtime_id=IMAGE)
    step.container_config.language = language
    return StoredExecution(environment, execution, step)


def _settings(**fields: Any) -> KubernetesSettings:
    return KubernetesSettings(image_repository="registry.local:5000/steps", **fields)


def _job(run: StoredExecution | None = None, **fields: Any) -> dict[str, Any]:
    return execution_job(
        run or _run(), '{"protocol":1}', DEFAULT_LIMITS, _settings(**fields)
    )


def _pod(job: dict[str, Any]) -> dict[str, Any]:
    pod: dict[str, Any] = job["spec"]["template"]["spec"]
    return pod


def _container(job: dict[str, Any]) -> dict[str, Any]:
    (container,) = _pod(job)["containers"]
    assert container["name"] == CONTAINER
    return dict(container)


def _env(job: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in _container(job)["env"]}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("language", ["python:3.11-slim", "python-cuda:3.11-12.4"])
def test_every_job_validates_against_the_official_schema(
    language: str, version: str
) -> None:
    for job in (
        _job(_run(language)),
        _job(_run(language), registry_secret="pull-secret", job_ttl_s=60),
    ):
        assert kubernetes_validate.validate(job, version, strict=True)


def test_a_cpu_job_asks_for_no_gpu_node_or_toleration() -> None:
    job = _job(_run("python:3.11-slim"))

    pod = _pod(job)
    assert "nodeSelector" not in pod
    assert "tolerations" not in pod
    assert _container(job)["resources"] == {
        "limits": {"memory": str(DEFAULT_LIMITS.memory_bytes)}
    }


def test_a_gpu_job_asks_for_one_gpu_on_a_gpu_node_it_tolerates() -> None:
    job = _job(_run("python-cuda:3.11-12.4"))

    pod = _pod(job)
    assert _container(job)["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "effect": "NoSchedule", "operator": "Exists"}
    ]


def test_the_gpu_settings_shape_a_gpu_job() -> None:
    job = _job(
        _run("python-cuda:3.12-12.8"),
        gpu_resource="amd.com/gpu",
        gpu_node_selector={"accelerator": "mi300"},
        gpu_tolerations=(Toleration("dedicated", "NoExecute", "ml"),),
    )

    pod = _pod(job)
    assert _container(job)["resources"]["limits"]["amd.com/gpu"] == "1"
    assert "nvidia.com/gpu" not in _container(job)["resources"]["limits"]
    assert pod["nodeSelector"] == {"accelerator": "mi300"}
    assert pod["tolerations"] == [
        {"key": "dedicated", "effect": "NoExecute", "operator": "Equal", "value": "ml"}
    ]


def test_the_job_is_named_for_its_execution_in_the_namespace() -> None:
    job = _job(namespace="ml-runs")

    assert job["metadata"]["name"] == f"stepforge-run-{EXECUTION_ID}"
    assert job["metadata"]["namespace"] == "ml-runs"


@pytest.mark.parametrize(
    "execution_id",
    ["UPPER_case.id", "x" * 80, "-dash-", "a"],
)
def test_a_job_name_is_always_a_dns_label_and_unique(execution_id: str) -> None:
    name = job_name(f"executions/{execution_id}")
    other = job_name(f"executions/{execution_id}x")

    assert _DNS_LABEL.match(name) and len(name) <= 63, name
    assert name != other


def test_job_and_pod_carry_the_labels_that_find_them_again() -> None:
    run = _run(environment="environments/Team A", pipeline="pipelines/daily-train")
    job = _job(run)

    expected = {
        labels.MANAGED_BY: "stepforge",
        labels.COMPONENT: "execution",
        labels.ENVIRONMENT: labels.label_value("environments/Team A"),
        labels.PIPELINE: "daily-train",
        labels.STEP: "train",
        labels.EXECUTION: EXECUTION_ID,
    }
    assert job["metadata"]["labels"] == expected
    assert job["spec"]["template"]["metadata"]["labels"] == expected
    assert job_labels(run) == expected
    assert job["metadata"]["annotations"][labels.EXECUTION] == (
        f"executions/{EXECUTION_ID}"
    )


def test_the_deadline_is_the_execution_timeout_rounded_up() -> None:
    assert _job(_run(timeout_s=90))["spec"]["activeDeadlineSeconds"] == 90
    assert _job(_run(timeout_s=0.2))["spec"]["activeDeadlineSeconds"] == 1
    assert _job(_run(timeout_s=61.5))["spec"]["activeDeadlineSeconds"] == 62


def test_an_execution_without_a_timeout_gets_the_local_default() -> None:
    assert _job(_run(timeout_s=0))["spec"]["activeDeadlineSeconds"] == 3600


def test_the_job_runs_once_and_leaves_after_its_time_to_live() -> None:
    spec = _job(job_ttl_s=120)["spec"]

    assert spec["backoffLimit"] == 0
    assert spec["ttlSecondsAfterFinished"] == 120
    assert _pod(_job())["restartPolicy"] == "Never"


def test_a_disrupted_pod_is_ignored_and_a_failed_step_fails_the_job() -> None:
    rules = _job()["spec"]["podFailurePolicy"]["rules"]

    assert rules[0] == {
        "action": "Ignore",
        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
    }
    assert rules[1]["action"] == "FailJob"
    assert rules[1]["onExitCodes"] == {
        "containerName": CONTAINER,
        "operator": "NotIn",
        "values": [0],
    }


def test_the_pod_runs_unprivileged_without_a_service_account_token() -> None:
    job = _job()
    pod, container = _pod(job), _container(job)

    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_the_container_runs_pod_entry_in_the_step_image_on_a_run_folder() -> None:
    job = _job()
    container = _container(job)
    env = _env(job)

    assert container["image"] == IMAGE
    assert container["command"] == ["python", "-u", "/stepforge/pod_entry.py"]
    assert {"name": "run", "emptyDir": {}} in _pod(job)["volumes"]
    assert {"name": "run", "mountPath": "/stepforge/run"} in container["volumeMounts"]
    assert env["HOME"].startswith("/stepforge/run/")
    assert env["TMPDIR"].startswith("/stepforge/run/")
    assert env["STEPFORGE_RUN_DIR"] == "/stepforge/run"
    assert json.loads(env["STEPFORGE_POD_SPEC"]) == {"protocol": 1}


def test_the_memory_limit_is_the_execution_limit() -> None:
    limits = Limits(
        memory_bytes=3 * GIB, cpu_seconds=60, open_files=64, output_bytes=1024
    )
    job = execution_job(_run(), "{}", limits, _settings())

    assert _container(job)["resources"]["limits"]["memory"] == str(3 * GIB)


def test_the_registry_secret_becomes_the_pull_secret() -> None:
    assert _pod(_job(registry_secret="regcred"))["imagePullSecrets"] == [
        {"name": "regcred"}
    ]
    assert "imagePullSecrets" not in _pod(_job())


def test_a_locally_built_runtime_is_refused_with_the_way_out() -> None:
    problem = image_problem("ab" * 32)

    assert problem is not None
    assert "local build backend" in problem
    assert "kubernetes build backend" in problem


@pytest.mark.parametrize(
    "image",
    [
        IMAGE,
        "registry.local:5000/steps/x@sha256:" + "0" * 64,
        "ghcr.io/org/step:v1.2",
    ],
)
def test_an_image_reference_is_accepted(image: str) -> None:
    assert image_problem(image) is None


@pytest.mark.parametrize("image", ["", "Has Spaces", "UPPER/case:tag"])
def test_what_is_no_image_reference_is_refused(image: str) -> None:
    assert image_problem(image) is not None
