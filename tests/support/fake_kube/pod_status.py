"""A pod's status as its kubelet reports it: phase, conditions and the state of
each container."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .meta import Obj, now

Waiting = "waiting"
Running = "running"
Terminated = "terminated"
TERMINAL_PHASES = ("Succeeded", "Failed")


def pod_finished(pod: Obj) -> bool:
    """Whether the pod has ended: its phase is Succeeded or Failed."""
    return (pod.get("status") or {}).get("phase") in TERMINAL_PHASES


def container_statuses(pod: Obj) -> list[Obj]:
    """The statuses of the pod's init containers, then of its containers."""
    status = pod.get("status") or {}
    return [
        *(status.get("initContainerStatuses") or []),
        *(status.get("containerStatuses") or []),
    ]


class ContainerState:
    """What the kubelet knows of one container."""

    def __init__(self, container: Mapping[str, Any], reason: str) -> None:
        self.name: str = container["name"]
        self.image: str = container.get("image", "")
        self.restart_count = 0
        self.container_id = ""
        self.state: Obj = {Waiting: {"reason": reason}}
        self.last_state: Obj = {}

    @property
    def kind(self) -> str:
        """waiting, running or terminated."""
        return next(iter(self.state))

    @property
    def exit_code(self) -> int | None:
        terminated = self.state.get(Terminated)
        return None if terminated is None else int(terminated["exitCode"])

    def wait(self, reason: str, message: str | None = None) -> None:
        self.state = {Waiting: _without_none(reason=reason, message=message)}

    def run(self, container_id: str) -> None:
        self.container_id = container_id
        self.state = {Running: {"startedAt": now()}}

    def back_off(self, message: str) -> None:
        """The container ended and waits to be restarted."""
        self.last_state = self.state
        self.restart_count += 1
        self.wait("CrashLoopBackOff", message)

    def terminate(self, exit_code: int, reason: str, message: str | None) -> None:
        started = self.state.get(Running, {}).get("startedAt")
        self.state = {
            Terminated: _without_none(
                exitCode=exit_code,
                reason=reason,
                message=message,
                startedAt=started,
                finishedAt=now(),
                containerID=self.container_id or None,
            )
        }

    def render(self) -> Obj:
        status: Obj = {
            "name": self.name,
            "image": self.image,
            "imageID": f"fake://{self.image}" if self.container_id else "",
            "ready": self.kind == Running,
            "started": self.kind == Running,
            "restartCount": self.restart_count,
            "state": self.state,
            "lastState": self.last_state,
        }
        if self.container_id:
            status["containerID"] = self.container_id
        return status


class PodState:
    """The status the kubelet reports for one pod it runs."""

    def __init__(self, spec: Mapping[str, Any], host_ip: str) -> None:
        init = spec.get("initContainers") or []
        self.init = [ContainerState(c, "PodInitializing") for c in init]
        first = "PodInitializing" if init else "ContainerCreating"
        self.main = [ContainerState(c, first) for c in spec["containers"]]
        self.phase = "Pending"
        self.reason: str | None = None
        self.message: str | None = None
        self.sandbox_ready = False
        self._host_ip = host_ip
        self._start_time = now()
        self._transitions: dict[str, tuple[str, str]] = {}

    @property
    def all(self) -> list[ContainerState]:
        """Init containers, then containers."""
        return [*self.init, *self.main]

    def container(self, name: str) -> ContainerState:
        for state in self.all:
            if state.name == name:
                return state
        raise KeyError(name)

    def render(self) -> Obj:
        """The pod's `status`."""
        status: Obj = {
            "phase": self.phase,
            "hostIP": self._host_ip,
            "hostIPs": [{"ip": self._host_ip}],
            "startTime": self._start_time,
            "conditions": self._conditions(),
            "containerStatuses": [state.render() for state in self.main],
        }
        if self.init:
            status["initContainerStatuses"] = [state.render() for state in self.init]
        if self.reason:
            status["reason"] = self.reason
        if self.message:
            status["message"] = self.message
        return status

    def _conditions(self) -> list[Obj]:
        finished = self.phase in TERMINAL_PHASES
        unready = [s.name for s in self.main if s.kind != Running]
        uninitialized = [s.name for s in self.init if s.exit_code != 0]
        ready = not finished and not unready
        not_ready_reason = "PodCompleted" if finished else "ContainersNotReady"
        not_ready = f"containers with unready status: [{' '.join(unready)}]"
        return [
            self._condition(
                "PodReadyToStartContainers", self.sandbox_ready and not finished
            ),
            self._condition(
                "Initialized",
                not uninitialized,
                "ContainersNotInitialized",
                f"containers with incomplete status: [{' '.join(uninitialized)}]",
            ),
            self._condition("Ready", ready, not_ready_reason, not_ready),
            self._condition("ContainersReady", ready, not_ready_reason, not_ready),
            self._condition("PodScheduled", True),
        ]

    def _condition(
        self, type_: str, true: bool, reason: str = "", message: str = ""
    ) -> Obj:
        status = "True" if true else "False"
        previous = self._transitions.get(type_)
        changed_at = previous[1] if previous and previous[0] == status else now()
        self._transitions[type_] = (status, changed_at)
        condition: Obj = {
            "type": type_,
            "status": status,
            "lastProbeTime": None,
            "lastTransitionTime": changed_at,
        }
        if not true and reason:
            condition.update(reason=reason, message=message)
        return condition


def unschedulable_status(message: str, qos_class: str) -> Obj:
    """The status of a pod no node can take."""
    return {
        "phase": "Pending",
        "qosClass": qos_class,
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "False",
                "lastProbeTime": None,
                "lastTransitionTime": now(),
                "reason": "Unschedulable",
                "message": message,
            }
        ],
    }


def _without_none(**fields: Any) -> Obj:
    return {key: value for key, value in fields.items() if value is not None}
