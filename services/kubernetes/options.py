"""The command-line flags of the Kubernetes backends, each with an environment
variable, so a Deployment can set them either way."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from stepforge.services.kubernetes.settings import (
    DEFAULT_BUILD_TIMEOUT_S,
    DEFAULT_FETCH_IMAGE,
    DEFAULT_GPU_NODE_SELECTOR,
    DEFAULT_GPU_RESOURCE,
    DEFAULT_JOB_TTL_S,
    DEFAULT_KANIKO_IMAGE,
    DEFAULT_NAMESPACE,
    DEFAULT_PENDING_TIMEOUT_S,
    DEFAULT_PRESIGN_TTL_S,
    KubernetesSettings,
    Toleration,
    parse_node_selector,
    parse_toleration,
)

BACKEND_CHOICES = ("local", "kubernetes")


def add_backend_options(parser: argparse.ArgumentParser) -> None:
    """Adds --build-backend, --execution-backend and the cluster's settings."""
    group = parser.add_argument_group(
        "Kubernetes backends",
        "Build step images with Kaniko and run executions as Jobs. Each flag "
        "falls back to the environment variable in brackets.",
    )
    group.add_argument(
        "--build-backend",
        choices=BACKEND_CHOICES,
        default=_env("STEPFORGE_BUILD_BACKEND", "local"),
        help="local: a venv per step on this host; kubernetes: an image per step, "
        "built by a Kaniko Job [STEPFORGE_BUILD_BACKEND]",
    )
    group.add_argument(
        "--execution-backend",
        choices=BACKEND_CHOICES,
        default=_env("STEPFORGE_EXECUTION_BACKEND", "local"),
        help="local: a process per execution on this host; kubernetes: a Job per "
        "execution [STEPFORGE_EXECUTION_BACKEND]",
    )
    group.add_argument(
        "--kubeconfig",
        default=os.environ.get("STEPFORGE_KUBECONFIG"),
        help="kubeconfig file (default: the pod's service account inside a "
        "cluster, else $KUBECONFIG or ~/.kube/config) [STEPFORGE_KUBECONFIG]",
    )
    group.add_argument(
        "--kube-context",
        default=os.environ.get("STEPFORGE_KUBE_CONTEXT"),
        help="context of the kubeconfig to use [STEPFORGE_KUBE_CONTEXT]",
    )
    group.add_argument(
        "--kube-namespace",
        default=_env("STEPFORGE_KUBE_NAMESPACE", DEFAULT_NAMESPACE),
        help="namespace of the build and execution Jobs "
        f"(default: {DEFAULT_NAMESPACE}) [STEPFORGE_KUBE_NAMESPACE]",
    )
    group.add_argument(
        "--image-repository",
        default=os.environ.get("STEPFORGE_IMAGE_REPOSITORY"),
        help="where step images are pushed, such as registry.local:5000/steps "
        "[STEPFORGE_IMAGE_REPOSITORY]",
    )
    group.add_argument(
        "--registry-secret",
        default=os.environ.get("STEPFORGE_REGISTRY_SECRET"),
        help="docker-config Secret in the namespace that Kaniko pushes with and "
        "step pods pull with [STEPFORGE_REGISTRY_SECRET]",
    )
    group.add_argument(
        "--insecure-registry",
        action="store_true",
        default=_flag("STEPFORGE_INSECURE_REGISTRY"),
        help="push to the image registry over plain HTTP "
        "[STEPFORGE_INSECURE_REGISTRY=1]",
    )
    group.add_argument(
        "--kaniko-image",
        default=_env("STEPFORGE_KANIKO_IMAGE", DEFAULT_KANIKO_IMAGE),
        help="the Kaniko executor image [STEPFORGE_KANIKO_IMAGE]",
    )
    group.add_argument(
        "--fetch-image",
        default=_env("STEPFORGE_FETCH_IMAGE", DEFAULT_FETCH_IMAGE),
        help="image with curl that fetches a build context [STEPFORGE_FETCH_IMAGE]",
    )
    group.add_argument(
        "--gpu-resource",
        default=_env("STEPFORGE_GPU_RESOURCE", DEFAULT_GPU_RESOURCE),
        help=f"resource a python-cuda step asks one of (default: "
        f"{DEFAULT_GPU_RESOURCE}) [STEPFORGE_GPU_RESOURCE]",
    )
    default_selector = ",".join(
        f"{k}={v}" for k, v in DEFAULT_GPU_NODE_SELECTOR.items()
    )
    group.add_argument(
        "--gpu-node-selector",
        default=os.environ.get("STEPFORGE_GPU_NODE_SELECTOR", default_selector),
        help="comma-separated KEY=VALUE labels a GPU step's node must have; empty "
        f"for none (default: {default_selector}) [STEPFORGE_GPU_NODE_SELECTOR]",
    )
    group.add_argument(
        "--gpu-toleration",
        default=os.environ.get(
            "STEPFORGE_GPU_TOLERATIONS", "nvidia.com/gpu:NoSchedule"
        ),
        help="comma-separated KEY[=VALUE][:EFFECT] taints GPU steps tolerate; empty "
        "for none (default: nvidia.com/gpu:NoSchedule) [STEPFORGE_GPU_TOLERATIONS]",
    )
    group.add_argument(
        "--job-ttl",
        type=int,
        default=int(_env("STEPFORGE_JOB_TTL_S", str(DEFAULT_JOB_TTL_S))),
        help="seconds a finished Job is kept before Kubernetes deletes it "
        f"(default: {DEFAULT_JOB_TTL_S}) [STEPFORGE_JOB_TTL_S]",
    )
    group.add_argument(
        "--pending-timeout",
        type=int,
        default=int(
            _env("STEPFORGE_PENDING_TIMEOUT_S", str(DEFAULT_PENDING_TIMEOUT_S))
        ),
        help="seconds a build or step pod may wait for a node or its image "
        f"before it fails (default: {DEFAULT_PENDING_TIMEOUT_S}) "
        "[STEPFORGE_PENDING_TIMEOUT_S]",
    )
    group.add_argument(
        "--build-timeout",
        type=int,
        default=int(_env("STEPFORGE_BUILD_TIMEOUT_S", str(DEFAULT_BUILD_TIMEOUT_S))),
        help="seconds a Kaniko build may take "
        f"(default: {DEFAULT_BUILD_TIMEOUT_S}) [STEPFORGE_BUILD_TIMEOUT_S]",
    )
    group.add_argument(
        "--presign-ttl",
        type=int,
        default=int(_env("STEPFORGE_PRESIGN_TTL_S", str(DEFAULT_PRESIGN_TTL_S))),
        help="seconds the object-store URLs handed to pods stay valid "
        f"(default: {DEFAULT_PRESIGN_TTL_S}) [STEPFORGE_PRESIGN_TTL_S]",
    )


def kubernetes_settings(args: argparse.Namespace) -> KubernetesSettings | None:
    """The cluster settings the flags give, or None when no backend needs them.

    Raises ValueError naming the flag and its rule.
    """
    if "kubernetes" not in (args.build_backend, args.execution_backend):
        return None
    if not args.image_repository:
        raise ValueError(
            "--image-repository (STEPFORGE_IMAGE_REPOSITORY) is required with a "
            "kubernetes backend: the registry repository step images go to"
        )
    tolerations: tuple[Toleration, ...] = tuple(
        parse_toleration(item) for item in _items(args.gpu_toleration)
    )
    return KubernetesSettings(
        image_repository=args.image_repository,
        namespace=args.kube_namespace,
        kubeconfig=Path(args.kubeconfig).expanduser() if args.kubeconfig else None,
        context=args.kube_context,
        kaniko_image=args.kaniko_image,
        fetch_image=args.fetch_image,
        registry_secret=args.registry_secret or None,
        insecure_registry=args.insecure_registry,
        gpu_resource=args.gpu_resource,
        gpu_node_selector=parse_node_selector(_items(args.gpu_node_selector)),
        gpu_tolerations=tolerations,
        job_ttl_s=args.job_ttl,
        presign_ttl_s=args.presign_ttl,
        pending_timeout_s=args.pending_timeout,
        build_timeout_s=args.build_timeout,
    )


def _items(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def _flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes")
