"""One pod's life on its node: scheduled, volumes made, init containers run in
order, then the containers together, until they end, the pod's deadline
passes or the pod is deleted."""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .environment import resolve_container
from .errors import ignoring_not_found
from .logs import LogQuery
from .meta import Obj
from .pod_status import ContainerState, PodState, Waiting, unschedulable_status
from .processes import ContainerProcess
from .runtimes import ImageNotFound, LocalCommand
from .scheduler import Binding, container_gpus
from .volumes import (
    VolumeNotEmulated,
    VolumeNotReady,
    container_mounts,
    prepare_volumes,
)

if TYPE_CHECKING:
    from .kubelet import Kubelet

logger = logging.getLogger(__name__)

HOST_IP = "127.0.0.1"
GPU_DEVICES_ENV = "NVIDIA_VISIBLE_DEVICES"
TERMINATION_MESSAGE_LIMIT = 4096
# FallbackToLogsOnError takes at most this much of the log's end.
_FALLBACK_LINES = 80
_FALLBACK_BYTES = 2048
_RETRY_S = 0.5
_MAX_BACK_OFF_S = 10.0
# After SIGKILL a process group ends at once; this only bounds a stuck wait.
_KILL_WAIT_S = 10.0
_DEADLINE_MESSAGE = "Pod was active on the node longer than the specified deadline"


class _Blocked(Exception):
    """A container cannot start yet; its status says why."""


@dataclass
class _Run:
    """What the containers of a bound pod share."""

    pod: Obj
    pod_dir: Path
    volumes: dict[str, Path]
    devices: dict[str, tuple[int, ...]]
    deadline: float  # time.monotonic(), inf without activeDeadlineSeconds
    processes: dict[str, ContainerProcess] = field(default_factory=dict)


class PodWorker:
    """Runs one pod in a thread of its own."""

    def __init__(self, kubelet: Kubelet, pod: Obj) -> None:
        self.uid: str = pod["metadata"]["uid"]
        self._namespace: str = pod["metadata"]["namespace"]
        self._name: str = pod["metadata"]["name"]
        self.pod_key = (self._namespace, self._name)
        self._kubelet = kubelet
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._stop_at: float | None = None
        self._state: PodState | None = None
        self._qos_class = pod["status"].get("qosClass", "BestEffort")
        self._thread = threading.Thread(
            target=self._live, name=f"fake-kube-pod-{self._name}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout=timeout_s)

    def request_stop(self, grace_s: float) -> None:
        """Ends the pod: SIGTERM now, SIGKILL after `grace_s` seconds."""
        with self._lock:
            stop_at = time.monotonic() + max(0.0, grace_s)
            self._stop_at = min(stop_at, self._stop_at or math.inf)
        self._wake.set()

    def _live(self) -> None:
        try:
            binding = self._schedule()
            if binding is not None:
                try:
                    self._run(binding)
                finally:
                    self._kubelet.scheduler.release(self.uid)
        except Exception:
            logger.exception("pod %s/%s: worker failed", self._namespace, self._name)
        finally:
            self._kubelet.worker_done(self)

    def _stopping(self) -> bool:
        with self._lock:
            return self._stop_at is not None

    def _schedule(self) -> Binding | None:
        reported = None
        while not self._stopping():
            pod = self._kubelet.store.find("Pod", self._namespace, self._name)
            if pod is None:
                return None
            result = self._kubelet.scheduler.bind(pod)
            if isinstance(result, Binding):
                self._state = PodState(pod["spec"], HOST_IP)
                self._publish(_bind_to(result.node.name))
                return result
            if result != reported:
                self._update(_set_status(unschedulable_status(result, self._qos_class)))
                reported = result
            self._kubelet.scheduler.wait_for_release(_RETRY_S)
        return None

    def _run(self, binding: Binding) -> None:
        pod = self._kubelet.store.find("Pod", self._namespace, self._name)
        if pod is None:
            return
        spec = pod["spec"]
        deadline = spec.get("activeDeadlineSeconds")
        run = _Run(
            pod=pod,
            pod_dir=self._kubelet.root / f"{self._namespace}_{self._name}_{self.uid}",
            volumes={},
            devices=_devices(spec, binding.gpus),
            deadline=time.monotonic() + deadline if deadline else math.inf,
        )
        try:
            outcome = self._start_sandbox(run)
            for container in spec.get("initContainers") or []:
                if outcome != "ok":
                    break
                outcome = self._run_containers([container], run)
            if outcome == "ok":
                outcome = self._run_containers(spec["containers"], run)
        finally:
            self._kill(run, immediately=True)
        self._finish(outcome)

    def _start_sandbox(self, run: _Run) -> str:
        while True:
            try:
                run.volumes = prepare_volumes(run.pod, run.pod_dir, self._kubelet.store)
                break
            except (VolumeNotReady, VolumeNotEmulated) as error:
                reason = (
                    "ContainerCreating"
                    if isinstance(error, VolumeNotReady)
                    else "CreateContainerConfigError"
                )
                self._wait_all(reason, str(error))
            outcome = self._pause(run, _RETRY_S)
            if outcome != "ok":
                return outcome
        assert self._state is not None
        self._state.sandbox_ready = True
        self._publish()
        return "ok"

    def _run_containers(self, containers: Sequence[Obj], run: _Run) -> str:
        """Runs `containers` together until each ended for good: "ok" if all
        exited 0, "failed", "stopped" or "deadline"."""
        commands = self._commands(containers, run)
        if isinstance(commands, str):
            return commands
        specs = {container["name"]: container for container in containers}
        restart_at: dict[str, float] = {name: 0.0 for name in specs}
        while True:
            self._wake.clear()
            now = time.monotonic()
            for name, due in list(restart_at.items()):
                if due > now:
                    continue
                del restart_at[name]
                if not self._start(specs[name], commands[name], run):
                    delay = self._restart_delay(name, run)
                    if delay is not None:
                        restart_at[name] = time.monotonic() + delay
            for name in self._exited(run, specs):
                delay = self._restart_delay(name, run)
                if delay is not None:
                    restart_at[name] = time.monotonic() + delay
            if not restart_at and not any(name in run.processes for name in specs):
                codes = [self._container(name).exit_code for name in specs]
                return "ok" if all(code == 0 for code in codes) else "failed"
            outcome = self._pause(run, min([*restart_at.values(), math.inf]) - now)
            if outcome != "ok":
                return outcome

    def _commands(
        self, containers: Sequence[Obj], run: _Run
    ) -> dict[str, LocalCommand] | str:
        while True:
            try:
                return {c["name"]: self._command(c, run) for c in containers}
            except _Blocked:
                self._publish()
            outcome = self._pause(run, _RETRY_S)
            if outcome != "ok":
                return outcome

    def _command(self, container: Obj, run: _Run) -> LocalCommand:
        name, image = container["name"], container["image"]
        state = self._container(name)
        runtime = self._kubelet.images.runtime_for(image)
        try:
            if runtime is None:
                raise ImageNotFound(
                    "no runtime is registered for it in the fake cluster"
                )
            devices = run.devices.get(name, ())
            extra = {GPU_DEVICES_ENV: ",".join(map(str, devices))} if devices else {}
            resolved = resolve_container(container, run.pod, extra)
            mounts: dict[str, Path] = container_mounts(container, run.volumes)
            folder = run.pod_dir / "containers" / name
            (folder / "scratch").mkdir(parents=True, exist_ok=True)
            termination_log = folder / "termination-log"
            termination_log.touch()
            mounts[container["terminationMessagePath"]] = termination_log
            return runtime.command(image, resolved, mounts, folder / "scratch")
        except ImageNotFound as error:
            state.wait("ErrImagePull", f'failed to pull image "{image}": {error}')
            raise _Blocked() from None
        except Exception as error:
            message = f"the image runtime failed: {type(error).__name__}: {error}"
            if state.state.get("waiting", {}).get("message") != message:
                logger.warning(
                    "pod %s/%s container %s: %s",
                    self._namespace,
                    self._name,
                    name,
                    message,
                    exc_info=True,
                )
            state.wait("CreateContainerError", message)
            raise _Blocked() from None

    def _start(self, container: Obj, command: LocalCommand, run: _Run) -> bool:
        name = container["name"]
        state = self._container(name)
        termination_log = run.pod_dir / "containers" / name / "termination-log"
        termination_log.write_bytes(b"")
        log = self._kubelet.new_log(self.uid, name)
        try:
            process = ContainerProcess(command, log, on_exit=self._wake.set)
        except OSError as error:
            log.close()
            message = f"failed to start container process {command.argv!r}: {error}"
            state.terminate(128, "StartError", message)
            self._publish()
            return False
        run.processes[name] = process
        state.run(f"fake://{process.pid}")
        if self._state is not None and state in self._state.main:
            self._state.phase = "Running"
        self._publish()
        return True

    def _exited(self, run: _Run, specs: Mapping[str, Obj]) -> list[str]:
        """Records the containers among `specs` whose process ended."""
        ended = []
        for name in specs:
            process = run.processes.get(name)
            if process is None or process.exit_code is None:
                continue
            del run.processes[name]
            code = process.exit_code
            message = self._termination_message(specs[name], code, run)
            self._container(name).terminate(
                code, "Completed" if code == 0 else "Error", message
            )
            ended.append(name)
        if ended:
            self._publish()
        return ended

    def _restart_delay(self, name: str, run: _Run) -> float | None:
        policy = run.pod["spec"].get("restartPolicy", "Always")
        state = self._container(name)
        if policy == "Never" or (policy == "OnFailure" and state.exit_code == 0):
            return None
        delay = min(_MAX_BACK_OFF_S, 2.0**state.restart_count)
        state.back_off(f"back-off {delay:.0f}s restarting failed container={name}")
        self._publish()
        return delay

    def _pause(self, run: _Run, timeout_s: float) -> str:
        """Waits for a process to end, at most `timeout_s`; "ok", or "stopped"
        or "deadline" once the pod must end (its processes are then killed)."""
        limit = min(timeout_s, run.deadline - time.monotonic(), _RETRY_S * 2)
        if limit > 0 and not self._stopping():
            self._wake.wait(timeout=limit)
        if self._stopping():
            self._kill(run, immediately=False)
            return "stopped"
        if time.monotonic() >= run.deadline:
            grace = run.pod["spec"].get("terminationGracePeriodSeconds", 30)
            self.request_stop(grace)
            self._kill(run, immediately=False)
            return "deadline"
        return "ok"

    def _kill(self, run: _Run, immediately: bool) -> None:
        if not run.processes:
            return
        if not immediately:
            for process in run.processes.values():
                process.signal(signal.SIGTERM)
            while self._alive(run) and time.monotonic() < self._kill_time():
                self._wake.wait(
                    timeout=min(_RETRY_S, self._kill_time() - time.monotonic())
                )
                self._wake.clear()
        for process in run.processes.values():
            process.signal(signal.SIGKILL)
        give_up = time.monotonic() + _KILL_WAIT_S
        while self._alive(run) and time.monotonic() < give_up:
            self._wake.wait(timeout=_RETRY_S)
            self._wake.clear()
        self._exited(run, _specs(run))

    def _kill_time(self) -> float:
        with self._lock:
            return self._stop_at if self._stop_at is not None else 0.0

    def _finish(self, outcome: str) -> None:
        state = self._state
        if state is None:
            return
        if outcome == "ok":
            state.phase = "Succeeded"
        elif outcome == "deadline":
            state.phase = "Failed"
            state.reason, state.message = "DeadlineExceeded", _DEADLINE_MESSAGE
        elif outcome == "failed":
            state.phase = "Failed"
        elif any(s.kind != Waiting or s.restart_count for s in state.all):
            # Stopped after something ran: as its containers ended.
            ok = all(s.exit_code == 0 for s in state.main)
            state.phase = "Succeeded" if ok else "Failed"
        self._publish()

    def _termination_message(self, container: Obj, code: int, run: _Run) -> str | None:
        path = run.pod_dir / "containers" / container["name"] / "termination-log"
        try:
            with path.open("rb") as file:
                text = file.read(TERMINATION_MESSAGE_LIMIT).decode("utf-8", "replace")
        except OSError:
            text = ""
        fallback = container.get("terminationMessagePolicy") == "FallbackToLogsOnError"
        if not text and fallback and code != 0:
            log = self._kubelet.container_log(self.uid, container["name"], False)
            if log is not None:
                lines = log.read(LogQuery(tail_lines=_FALLBACK_LINES))
                tail = b"".join(line.data for line in lines)[-_FALLBACK_BYTES:]
                text = tail.decode("utf-8", "replace")
        return text or None

    def _wait_all(self, reason: str, message: str) -> None:
        assert self._state is not None
        for state in self._state.all:
            state.wait(reason, message)
        self._publish()

    def _container(self, name: str) -> ContainerState:
        assert self._state is not None
        return self._state.container(name)

    def _alive(self, run: _Run) -> bool:
        return any(process.exit_code is None for process in run.processes.values())

    def _publish(self, change: Callable[[Obj], None] = lambda pod: None) -> None:
        state = self._state
        assert state is not None
        status = {**state.render(), "qosClass": self._qos_class}

        def apply(pod: Obj) -> None:
            change(pod)
            pod["status"] = status

        self._update(apply)

    def _update(self, change: Callable[[Obj], None]) -> None:
        # A pod deleted at once (grace period 0) has no status to report.
        with ignoring_not_found():
            self._kubelet.store.update("Pod", self._namespace, self._name, change)


def _devices(
    spec: Mapping[str, Any], gpus: tuple[int, ...]
) -> dict[str, tuple[int, ...]]:
    """Each container's share of the pod's GPUs: the containers take
    consecutive slices, an init container the first ones."""
    devices: dict[str, tuple[int, ...]] = {}
    for container in spec.get("initContainers") or []:
        devices[container["name"]] = gpus[: container_gpus(container)]
    offset = 0
    for container in spec["containers"]:
        count = container_gpus(container)
        devices[container["name"]] = gpus[offset : offset + count]
        offset += count
    return devices


def _specs(run: _Run) -> dict[str, Obj]:
    spec = run.pod["spec"]
    containers = [*(spec.get("initContainers") or []), *spec["containers"]]
    return {container["name"]: container for container in containers}


def _bind_to(node: str) -> Callable[[Obj], None]:
    return lambda pod: pod["spec"].update(nodeName=node)


def _set_status(status: Obj) -> Callable[[Obj], None]:
    return lambda pod: pod.update(status=status)
