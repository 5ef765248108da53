from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from stepforge.services.build.kaniko_job import (
    FETCH_CONTAINER,
    KANIKO_CONTAINER,
    job_name,
    kaniko_job,
)
from stepforge.services.kubernetes.labels import COMPONENT, MANAGED_BY, STEP
from stepforge.services.kubernetes.settings import KubernetesSettings

TAG = "ab" * 32
REFERENCE = f"registry.local:5000/steps:{TAG}"
URL = "http://127.0.0.1:9000/bucket/build-contexts/x.tar.gz?X-Amz-Signature=abc"
# The oldest version the specs are meant for, and the newest the package knows.
KUBERNETES_VERSIONS = ("1.33.0", kubernetes_validate.latest_version())


def _job(**settings: Any) -> dict[str, Any]:
    return kaniko_job(
        name=job_name(TAG),
        reference=REFERENCE,
        context_url=URL,
        step_name="My Step/with odd name!",
        settings=KubernetesSettings(
            image_repository="registry.local:5000/steps",
            build_timeout_s=1800,
            **settings,
        ),
    )


def _containers(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    pod = job["spec"]["template"]["spec"]
    return {c["name"]: c for c in pod["initContainers"] + pod["containers"]}


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"registry_secret": "push-credentials", "insecure_registry": True},
        {"namespace": "builds", "job_ttl_s": 60},
    ],
)
def test_every_build_job_passes_the_strict_kubernetes_schema(
    settings: dict[str, Any],
) -> None:
    for version in KUBERNETES_VERSIONS:
        kubernetes_validate.validate(_job(**settings), version, strict=True)


def test_the_job_runs_once_within_its_deadline_and_is_cleaned_up() -> None:
    job = _job(job_ttl_s=120)
    spec = job["spec"]

    assert spec["backoffLimit"] == 0
    assert spec["activeDeadlineSeconds"] == 1800
    assert spec["ttlSecondsAfterFinished"] == 120
    assert spec["template"]["spec"]["restartPolicy"] == "Never"
    assert spec["template"]["spec"]["automountServiceAccountToken"] is False


def test_the_job_is_labelled_for_the_build_component_and_its_step() -> None:
    job = _job()
    labels = job["metadata"]["labels"]

    assert labels[MANAGED_BY] == "stepforge"
    assert labels[COMPONENT] == "build"
    for version in KUBERNETES_VERSIONS:
        kubernetes_validate.validate(job, version, strict=True)
    assert labels[STEP].startswith("My-Step-with-odd-name")
    assert job["spec"]["template"]["metadata"]["labels"] == labels


def test_the_context_comes_through_the_presigned_url_into_kaniko() -> None:
    containers = _containers(_job())
    fetch, kaniko = containers[FETCH_CONTAINER], containers[KANIKO_CONTAINER]

    assert fetch["args"][-1] == URL
    assert "/workspace/context.tar.gz" in fetch["args"]
    assert kaniko["args"] == [
        "--context=tar:///workspace/context.tar.gz",
        "--dockerfile=.stepforge/Dockerfile",
        f"--destination={REFERENCE}",
        "--digest-file=/dev/termination-log",
    ]
    assert kaniko["terminationMessagePath"] == "/dev/termination-log"
    for container in (fetch, kaniko):
        assert container["resources"]["requests"]
        assert not any("AWS" in str(value) for value in container.get("env", []))


def test_an_insecure_registry_and_its_secret_reach_kaniko() -> None:
    job = _job(registry_secret="push-credentials", insecure_registry=True)
    kaniko = _containers(job)[KANIKO_CONTAINER]
    volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}

    assert "--insecure" in kaniko["args"]
    mount = next(
        m for m in kaniko["volumeMounts"] if m["mountPath"] == "/kaniko/.docker"
    )
    secret = volumes[mount["name"]]["secret"]
    assert secret["secretName"] == "push-credentials"
    assert secret["items"] == [{"key": ".dockerconfigjson", "path": "config.json"}]


def test_a_job_name_is_the_same_for_the_same_image_and_fits_a_pod_name() -> None:
    assert job_name(TAG) == job_name(TAG)
    assert job_name(TAG) != job_name("cd" * 32)
    # Pods add a dash and five characters; names stay within 63.
    assert len(job_name(TAG)) + 6 <= 63
    with pytest.raises(ValueError, match="tag"):
        job_name("not-a-tag")
