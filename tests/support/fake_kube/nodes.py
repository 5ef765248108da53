"""The fake cluster's nodes, and the Node objects the API serves for them."""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .meta import Obj, new_uid, now

GPU_RESOURCE = "nvidia.com/gpu"
_TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
_ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
# Plenty, since the fake does not account CPU or memory.
_MEMORY = "64Gi"
_MAX_PODS = "110"
KUBELET_VERSION = "v1.33.0-fake"


@dataclass(frozen=True)
class FakeNode:
    """A node: its labels, taints and number of GPUs."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[dict[str, Any], ...] = ()  # {"key":..,"value":..,"effect":..}
    gpus: int = 0  # capacity of "nvidia.com/gpu"

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("FakeNode name must not be empty")
        if self.gpus < 0:
            raise ValueError(f"FakeNode {self.name!r}: gpus must be at least 0")
        for taint in self.taints:
            if not taint.get("key") or taint.get("effect") not in _TAINT_EFFECTS:
                raise ValueError(
                    f"FakeNode {self.name!r}: taint {taint!r} needs a key and an "
                    f"effect among {', '.join(_TAINT_EFFECTS)}"
                )

    def all_labels(self) -> dict[str, str]:
        """The node's labels plus the ones every kubelet sets."""
        return {
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": _architecture(),
            **self.labels,
        }


def node_object(node: FakeNode) -> Obj:
    """The Node object of `node`, as the API serves it."""
    capacity = {
        "cpu": str(os.cpu_count() or 1),
        "memory": _MEMORY,
        "pods": _MAX_PODS,
        "ephemeral-storage": "100Gi",
    }
    if node.gpus:
        capacity[GPU_RESOURCE] = str(node.gpus)
    stamp = now()
    spec: Obj = {}
    if node.taints:
        spec["taints"] = [dict(taint) for taint in node.taints]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": node.name,
            "uid": new_uid(),
            "creationTimestamp": stamp,
            "labels": node.all_labels(),
        },
        "spec": spec,
        "status": {
            "capacity": capacity,
            "allocatable": dict(capacity),
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "kubelet is posting ready status",
                    "lastHeartbeatTime": stamp,
                    "lastTransitionTime": stamp,
                }
            ],
            "addresses": [
                {"type": "InternalIP", "address": "127.0.0.1"},
                {"type": "Hostname", "address": node.name},
            ],
            "nodeInfo": {
                "architecture": _architecture(),
                "bootID": "",
                "containerRuntimeVersion": "fake://1.0",
                "kernelVersion": platform.release(),
                "kubeProxyVersion": KUBELET_VERSION,
                "kubeletVersion": KUBELET_VERSION,
                "machineID": "",
                "operatingSystem": "linux",
                "osImage": "fake-kube",
                "systemUUID": "",
            },
        },
    }


def _architecture() -> str:
    machine = platform.machine()
    return _ARCHITECTURES.get(machine, machine)
