"""Placing pods on nodes: node selectors, taints and GPUs."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .meta import Obj
from .nodes import GPU_RESOURCE, FakeNode

# Effects that keep a pod that does not tolerate them off a node.
_REPELLING_EFFECTS = ("NoSchedule", "NoExecute")


@dataclass(frozen=True)
class Binding:
    """Where a pod runs, and the GPU indexes it holds there."""

    node: FakeNode
    gpus: tuple[int, ...]


class Scheduler:
    """Binds pods to nodes, holding their GPUs until released."""

    def __init__(self, nodes: Sequence[FakeNode]) -> None:
        self._nodes = list(nodes)
        self._lock = threading.Condition()
        self._free = {node.name: list(range(node.gpus)) for node in self._nodes}
        self._held: dict[str, tuple[str, tuple[int, ...]]] = {}

    def bind(self, pod: Obj) -> Binding | str:
        """A node for `pod` with its GPUs taken, or why none fits."""
        spec = pod["spec"]
        wanted = gpu_demand(spec)
        with self._lock:
            reasons: dict[str, int] = {}
            for node in self._candidates(spec):
                reason = _misfit(node, spec, wanted, len(self._free[node.name]))
                if reason:
                    reasons[reason] = reasons.get(reason, 0) + 1
                    continue
                gpus = tuple(self._free[node.name][:wanted])
                del self._free[node.name][:wanted]
                self._held[pod["metadata"]["uid"]] = (node.name, gpus)
                return Binding(node, gpus)
            return _unschedulable(len(self._nodes), reasons, spec)

    def release(self, pod_uid: str) -> None:
        """Gives back the GPUs a pod held, and wakes waiting pods."""
        with self._lock:
            held = self._held.pop(pod_uid, None)
            if held is not None:
                node_name, gpus = held
                self._free[node_name] = sorted([*self._free[node_name], *gpus])
            self._lock.notify_all()

    def wait_for_release(self, timeout_s: float) -> None:
        """Waits until some pod releases its node's resources, or `timeout_s`."""
        with self._lock:
            self._lock.wait(timeout=timeout_s)

    def _candidates(self, spec: Mapping[str, Any]) -> list[FakeNode]:
        if spec.get("nodeName"):
            return [node for node in self._nodes if node.name == spec["nodeName"]]
        return self._nodes


def gpu_demand(spec: Mapping[str, Any]) -> int:
    """GPUs a pod needs at once: its containers' together, or its largest
    init container's if that is more."""
    main = sum(container_gpus(c) for c in spec.get("containers", []))
    init = [container_gpus(c) for c in spec.get("initContainers") or []]
    return max([main, *init])


def container_gpus(container: Mapping[str, Any]) -> int:
    """The GPUs one container asks for (its limit, or its request)."""
    resources = container.get("resources") or {}
    for section in ("limits", "requests"):
        value = (resources.get(section) or {}).get(GPU_RESOURCE)
        if value is not None:
            return int(str(value))
    return 0


def tolerates(
    tolerations: Sequence[Mapping[str, Any]], taint: Mapping[str, Any]
) -> bool:
    """Whether some toleration tolerates `taint`."""
    for toleration in tolerations:
        effect = toleration.get("effect")
        if effect and effect != taint.get("effect"):
            continue
        operator = toleration.get("operator") or "Equal"
        key = toleration.get("key")
        if not key:
            if operator == "Exists":
                return True
            continue
        if key != taint.get("key"):
            continue
        if operator == "Exists":
            return True
        if (toleration.get("value") or "") == (taint.get("value") or ""):
            return True
    return False


def _misfit(
    node: FakeNode, spec: Mapping[str, Any], wanted: int, free_gpus: int
) -> str | None:
    labels = node.all_labels()
    selector = spec.get("nodeSelector") or {}
    if any(labels.get(key) != value for key, value in selector.items()):
        return "node(s) didn't match Pod's node affinity/selector"
    tolerations = spec.get("tolerations") or []
    for taint in node.taints:
        if taint["effect"] in _REPELLING_EFFECTS and not tolerates(tolerations, taint):
            value = f": {taint['value']}" if taint.get("value") else ""
            return f"node(s) had untolerated taint {{{taint['key']}{value}}}"
    if wanted > free_gpus:
        return f"Insufficient {GPU_RESOURCE}"
    return None


def _unschedulable(
    total: int, reasons: Mapping[str, int], spec: Mapping[str, Any]
) -> str:
    if spec.get("nodeName") and not reasons:
        return f"node {spec['nodeName']!r} does not exist"
    parts = ", ".join(f"{count} {reason}" for reason, count in sorted(reasons.items()))
    return f"0/{total} nodes are available: {parts}."
