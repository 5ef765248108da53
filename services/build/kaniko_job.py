"""The Kubernetes Job that builds one step image with Kaniko."""

from __future__ import annotations

import re
from typing import Any

from stepforge.services.build.dockerfile import CONTEXT_DOCKERFILE
from stepforge.services.kubernetes.labels import (
    COMPONENT,
    MANAGED_BY,
    MANAGER,
    STEP,
    label_value,
)
from stepforge.services.kubernetes.settings import KubernetesSettings

BUILD_COMPONENT = "build"
IMAGE_ANNOTATION = "stepforge.dev/image"
FETCH_CONTAINER = "fetch-context"
KANIKO_CONTAINER = "kaniko"
TERMINATION_LOG = "/dev/termination-log"

WORKSPACE = "/workspace"
CONTEXT_FILE = f"{WORKSPACE}/context.tar.gz"
DOCKER_CONFIG_DIR = "/kaniko/.docker"

# Kaniko unpacks the base image and snapshots the file system in its own
# container, so it needs far more memory than fetching the context.
FETCH_RESOURCES = {
    "requests": {"cpu": "50m", "memory": "64Mi"},
    "limits": {"memory": "256Mi"},
}
KANIKO_RESOURCES = {
    "requests": {"cpu": "1", "memory": "2Gi"},
    "limits": {"memory": "8Gi"},
}

_TAG = re.compile(r"^[0-9a-f]{64}$")
_NAME_PREFIX = "stepforge-build-"


def job_name(tag: str) -> str:
    """The Job of the image tagged `tag`: the same for the same image, so a
    build submitted again finds the Job of the first."""
    if not _TAG.match(tag):
        raise ValueError(f"tag {tag!r} must be 64 lower-case hex digits")
    # 40 hex digits keep the pods' generated names within 63 characters.
    return _NAME_PREFIX + tag[:40]


def kaniko_job(
    *,
    name: str,
    reference: str,
    context_url: str,
    step_name: str,
    settings: KubernetesSettings,
) -> dict[str, Any]:
    """The Job manifest that fetches the context through `context_url` and
    pushes the image it builds to `reference` within
    `settings.build_timeout_s`."""
    labels = {
        MANAGED_BY: MANAGER,
        COMPONENT: BUILD_COMPONENT,
        STEP: label_value(step_name),
    }
    volumes: list[dict[str, Any]] = [{"name": "workspace", "emptyDir": {}}]
    kaniko_mounts: list[dict[str, Any]] = [
        {"name": "workspace", "mountPath": WORKSPACE, "readOnly": True}
    ]
    if settings.registry_secret:
        volumes.append(
            {
                "name": "registry-credentials",
                "secret": {
                    "secretName": settings.registry_secret,
                    "items": [{"key": ".dockerconfigjson", "path": "config.json"}],
                },
            }
        )
        kaniko_mounts.append(
            {
                "name": "registry-credentials",
                "mountPath": DOCKER_CONFIG_DIR,
                "readOnly": True,
            }
        )
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": settings.namespace,
            "labels": labels,
            "annotations": {IMAGE_ANNOTATION: reference},
        },
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": settings.build_timeout_s,
            "ttlSecondsAfterFinished": settings.job_ttl_s,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "initContainers": [_fetch_container(settings, context_url)],
                    "containers": [
                        _kaniko_container(settings, reference, kaniko_mounts)
                    ],
                    "volumes": volumes,
                },
            },
        },
    }


def _fetch_container(settings: KubernetesSettings, url: str) -> dict[str, Any]:
    return {
        "name": FETCH_CONTAINER,
        "image": settings.fetch_image,
        "command": ["curl"],
        "args": [
            "--fail",
            "--silent",
            "--show-error",
            "--location",
            "--retry",
            "5",
            "--retry-connrefused",
            "--output",
            CONTEXT_FILE,
            url,
        ],
        "volumeMounts": [{"name": "workspace", "mountPath": WORKSPACE}],
        "resources": FETCH_RESOURCES,
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 65532,
            "runAsGroup": 65532,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }


def _kaniko_container(
    settings: KubernetesSettings, reference: str, mounts: list[dict[str, Any]]
) -> dict[str, Any]:
    args = [
        f"--context=tar://{CONTEXT_FILE}",
        f"--dockerfile={CONTEXT_DOCKERFILE}",
        f"--destination={reference}",
        f"--digest-file={TERMINATION_LOG}",
    ]
    if settings.insecure_registry:
        args.append("--insecure")
    return {
        "name": KANIKO_CONTAINER,
        "image": settings.kaniko_image,
        # Kaniko builds in its own root file system, so it runs as root; the
        # pod holds no service-account token and no object-store credentials.
        "command": ["/kaniko/executor"],
        "args": args,
        "volumeMounts": mounts,
        "resources": KANIKO_RESOURCES,
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "File",
    }
