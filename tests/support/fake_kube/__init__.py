"""A fake Kubernetes cluster for tests: an API server on loopback that the real
`kubernetes` client talks to, a Job controller, a scheduler, and kubelets that
run containers as local processes through registered image runtimes."""

from __future__ import annotations

from .cluster import FakeCluster, running_fake_cluster
from .nodes import FakeNode
from .runtimes import (
    HostRuntime,
    ImageNotFound,
    ImageRuntime,
    LocalCommand,
    rewrite_paths,
)

__all__ = [
    "FakeCluster",
    "FakeNode",
    "HostRuntime",
    "ImageNotFound",
    "ImageRuntime",
    "LocalCommand",
    "rewrite_paths",
    "running_fake_cluster",
]
