"""How the Kubernetes backends reach the cluster and shape their Jobs."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Pinned by digest so a build never changes under the suite because a tag moved.
DEFAULT_KANIKO_IMAGE = (
    "gcr.io/kaniko-project/executor:v1.23.2"
    "@sha256:9e69fd4330ec887829c780f5126dd80edc663df6def362cd22e79bcdf00ac53f"
)
# Fetches a build context through a presigned URL, so Kaniko holds no
# object-store credentials either.
DEFAULT_FETCH_IMAGE = (
    "curlimages/curl:8.11.1"
    "@sha256:c1fe1679c34d9784c1b0d1e5f62ac0a79fca01fb6377cdd33e90473c6f9f9a69"
)
DEFAULT_NAMESPACE = "stepforge-steps"
DEFAULT_GPU_RESOURCE = "nvidia.com/gpu"
DEFAULT_GPU_NODE_SELECTOR: Mapping[str, str] = {"nvidia.com/gpu.present": "true"}
DEFAULT_JOB_TTL_S = 3600
# How long a presigned URL handed to a pod stays valid: the longest a pod may
# wait to be scheduled and run before it fetches or stores an object.
DEFAULT_PRESIGN_TTL_S = 6 * 3600
# How long a pod may wait for a node (or an image pull) before its Job fails.
DEFAULT_PENDING_TIMEOUT_S = 600
DEFAULT_BUILD_TIMEOUT_S = 1800

_LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_IMAGE_REPOSITORY = re.compile(r"^[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9._-]+)+$")


@dataclass(frozen=True)
class Toleration:
    """A toleration of a node taint, as a pod spec writes it."""

    key: str
    effect: str = "NoSchedule"
    # None tolerates the taint whatever its value (operator Exists).
    value: str | None = None

    def as_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"key": self.key, "effect": self.effect}
        if self.value is None:
            spec["operator"] = "Exists"
        else:
            spec.update(operator="Equal", value=self.value)
        return spec


DEFAULT_GPU_TOLERATIONS = (Toleration("nvidia.com/gpu"),)


@dataclass(frozen=True)
class KubernetesSettings:
    """Where Jobs run and how they look; every field has a command-line flag."""

    # Repository that step images are pushed to, e.g. `registry.local:5000/steps`;
    # each image's tag is derived from its build's content.
    image_repository: str
    namespace: str = DEFAULT_NAMESPACE
    # None: the in-cluster service account when running in a pod, otherwise
    # $KUBECONFIG or ~/.kube/config.
    kubeconfig: Path | None = None
    context: str | None = None
    kaniko_image: str = DEFAULT_KANIKO_IMAGE
    fetch_image: str = DEFAULT_FETCH_IMAGE
    # A docker-config Secret in `namespace` that Kaniko pushes with and step
    # pods pull with; None when the registry needs no credentials.
    registry_secret: str | None = None
    # Let Kaniko push to a registry over plain HTTP (a registry inside the cluster).
    insecure_registry: bool = False
    gpu_resource: str = DEFAULT_GPU_RESOURCE
    gpu_node_selector: Mapping[str, str] = field(
        default_factory=lambda: dict(DEFAULT_GPU_NODE_SELECTOR)
    )
    gpu_tolerations: tuple[Toleration, ...] = DEFAULT_GPU_TOLERATIONS
    job_ttl_s: int = DEFAULT_JOB_TTL_S
    presign_ttl_s: int = DEFAULT_PRESIGN_TTL_S
    pending_timeout_s: int = DEFAULT_PENDING_TIMEOUT_S
    # The deadline of a Kaniko Job, from its start to the pushed image.
    build_timeout_s: int = DEFAULT_BUILD_TIMEOUT_S

    def __post_init__(self) -> None:
        validate_settings(self)


def validate_settings(settings: KubernetesSettings) -> None:
    """Raises ValueError naming the setting and its rule."""
    if not _IMAGE_REPOSITORY.match(settings.image_repository):
        raise ValueError(
            f"image_repository {settings.image_repository!r} must be a registry "
            "host and a lowercase path, such as registry.local:5000/stepforge/steps, "
            "with no tag"
        )
    if not _NAMESPACE.match(settings.namespace) or len(settings.namespace) > 63:
        raise ValueError(
            f"namespace {settings.namespace!r} must be a DNS label: at most 63 "
            "lowercase letters, digits and '-'"
        )
    for key, value in settings.gpu_node_selector.items():
        if not _LABEL_KEY.match(key) or not _LABEL_VALUE.match(value):
            raise ValueError(
                f"gpu_node_selector {key}={value} is not a valid label key and value"
            )
    for toleration in settings.gpu_tolerations:
        if toleration.effect not in _TAINT_EFFECTS:
            raise ValueError(
                f"gpu_tolerations effect {toleration.effect!r} must be one of "
                f"{', '.join(_TAINT_EFFECTS)}"
            )
        if not _LABEL_KEY.match(toleration.key):
            raise ValueError(
                f"gpu_tolerations key {toleration.key!r} is not a valid taint key"
            )
    if not settings.gpu_resource or "/" not in settings.gpu_resource:
        raise ValueError(
            f"gpu_resource {settings.gpu_resource!r} must be an extended resource "
            "name such as nvidia.com/gpu"
        )
    for name in ("job_ttl_s", "presign_ttl_s", "pending_timeout_s", "build_timeout_s"):
        if getattr(settings, name) <= 0:
            raise ValueError(f"{name} must be a positive number of seconds")
    # S3 presigned URLs live at most seven days.
    if settings.presign_ttl_s > 7 * 24 * 3600:
        raise ValueError("presign_ttl_s must be at most 604800 (seven days)")


def parse_node_selector(items: list[str]) -> dict[str, str]:
    """`key=value` pairs from the command line."""
    selector = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--gpu-node-selector {item!r} must be KEY=VALUE")
        selector[key] = value
    return selector


def parse_toleration(item: str) -> Toleration:
    """`KEY[=VALUE][:EFFECT]` from the command line, like kubectl's taints."""
    rest, sep, effect = item.rpartition(":")
    if not sep:
        rest, effect = item, "NoSchedule"
    key, has_value, value = rest.partition("=")
    if not key:
        raise ValueError(f"--gpu-toleration {item!r} must be KEY[=VALUE][:EFFECT]")
    return Toleration(key, effect, value if has_value else None)
