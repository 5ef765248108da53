"""Jobs and cluster wrappers for tests that run Jobs on the fake cluster."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from stepforge.services.kubernetes.api import KubeApi
from stepforge.services.kubernetes.client import api_client
from stepforge.services.kubernetes.settings import KubernetesSettings
from support.fake_kube import FakeCluster, FakeNode, HostRuntime, running_fake_cluster

# An image the tests register with HostRuntime: its commands run on the host.
HOST_IMAGE = "host.local/sh:1"


@contextmanager
def host_cluster(
    root: Path, nodes: Sequence[FakeNode] | None = None
) -> Iterator[FakeCluster]:
    """A fake cluster that runs the containers of HOST_IMAGE on the host (on
    `nodes`, by default one node without GPUs)."""
    with running_fake_cluster(root, nodes) as cluster:
        cluster.register_image(HOST_IMAGE.partition("/")[0], HostRuntime())
        yield cluster


def kube_api(kubeconfig: Path, namespace: str) -> KubeApi:
    """The wrapper, for the cluster `kubeconfig` names."""
    settings = KubernetesSettings(
        image_repository="registry.test/steps",
        namespace=namespace,
        kubeconfig=kubeconfig,
    )
    return KubeApi(api_client(settings), namespace)


def job_manifest(
    name: str,
    command: list[str],
    *,
    image: str = HOST_IMAGE,
    labels: dict[str, str] | None = None,
    container: str = "main",
    **container_fields: Any,
) -> dict[str, Any]:
    """A Job that runs `command` once in one container, never again."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": container,
                            "image": image,
                            "command": command,
                            **container_fields,
                        }
                    ],
                }
            },
        },
    }


def shell_job(name: str, script: str, **options: Any) -> dict[str, Any]:
    """A Job whose container runs `script` with sh."""
    return job_manifest(name, ["sh", "-c", script], **options)


def container_state(pod: dict[str, Any], container: str = "main") -> dict[str, Any]:
    """The state of one container of a pod: {} until it has one."""
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == container:
            state: dict[str, Any] = status.get("state") or {}
            return state
    return {}
