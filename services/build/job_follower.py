"""Following one Kaniko build Job to its end: its log into the build log as it
comes, and a reason a user can act on when it fails."""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stepforge.services.build.build_log import BuildLog
from stepforge.services.build.kaniko_job import FETCH_CONTAINER, KANIKO_CONTAINER
from stepforge.services.kubernetes.api import KubeApi, KubeError, final_condition

_CONTAINERS = (FETCH_CONTAINER, KANIKO_CONTAINER)
_TAIL_LINES = 12
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_RFC3339 = re.compile(
    r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$"
)
# Waiting reasons that mean a container cannot start as specified; a kubelet
# keeps retrying them, so they fail the build only once they persist.
_START_ERRORS = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "ErrImageNeverPull",
        "RegistryUnavailable",
        "CreateContainerConfigError",
        "CreateContainerError",
    }
)
_PERMANENT_START_ERRORS = frozenset({"InvalidImageName"})
# How long the API server may stay unreachable before the build gives up.
_API_OUTAGE_S = 120.0


class BuildStopped(Exception):
    """The follower was told to stop; the Job goes on without it."""


@dataclass(frozen=True)
class JobEnd:
    succeeded: bool
    reason: str = ""
    digest: str = ""


@dataclass(frozen=True)
class FollowLimits:
    poll_s: float
    # Longest time a build pod may take to start a container (scheduling and
    # pulling images included).
    pending_timeout_s: float
    # Longest time an image pull error (or another start error) may persist.
    start_error_timeout_s: float
    # Longest time a container's log stream may stay silent before it is
    # opened again; no line is lost or repeated.
    log_read_timeout_s: float = 60.0


@dataclass
class _ContainerLog:
    # The time of the last line copied, and how many copied lines bear it:
    # a stream opened again from that second skips exactly what was copied.
    last_time: tuple[str, int] | None = None
    at_last_time: int = 0
    done: bool = False
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=_TAIL_LINES))


class JobFollower:
    """Follows Jobs in one namespace; one follower can serve many builds."""

    def __init__(
        self,
        kube: KubeApi,
        limits: FollowLimits,
        stop: threading.Event,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._kube = kube
        self._limits = limits
        self._stop = stop
        self._clock = clock

    def follow(self, name: str, log: BuildLog, wait_limit_s: float) -> JobEnd:
        """Streams the Job's container logs into `log` until it ends.

        A Job whose pod cannot start, or that outlives `wait_limit_s`, is
        deleted and reported failed. Raises BuildStopped when told to stop.
        """
        following = _Following(
            self._kube, self._limits, self._stop, self._clock, name, log, wait_limit_s
        )
        return following.run()


class _Following:
    """The state of following one Job."""

    def __init__(
        self,
        kube: KubeApi,
        limits: FollowLimits,
        stop: threading.Event,
        clock: Callable[[], float],
        name: str,
        log: BuildLog,
        wait_limit_s: float,
    ) -> None:
        self._kube = kube
        self._limits = limits
        self._stop = stop
        self._clock = clock
        self._name = name
        self._log = log
        self._wait_limit_s = wait_limit_s
        self._logs = {container: _ContainerLog() for container in _CONTAINERS}
        self._started = self._clock()
        self._start_error_since: float | None = None
        self._api_failing_since: float | None = None
        self._seen_pod = ""

    def run(self) -> JobEnd:
        while True:
            if self._stop.is_set():
                raise BuildStopped(f"stopped following Job {self._name}")
            try:
                end = self._step()
            except KubeError as error:
                end = self._api_trouble(error)
            else:
                self._api_failing_since = None
            if end is not None:
                return end
            self._stop.wait(self._limits.poll_s)

    def _step(self) -> JobEnd | None:
        job = self._kube.read_job(self._name)
        if job is None:
            return JobEnd(
                False, f"the build Job {self._name} was deleted before it ended"
            )
        pod = self._latest_pod(job)
        if pod is not None:
            self._note_pod(pod)
            self._copy_logs(pod, follow=True)
        finished = final_condition(job)
        if finished is not None:
            pod = self._latest_pod(job)
            if pod is not None:
                self._note_pod(pod)
                self._copy_logs(pod, follow=False)
            return self._end(job, finished, pod)
        now = self._clock()
        problem = self._start_problem(pod, now)
        if problem is not None:
            return self._give_up(problem)
        if now - self._started > self._wait_limit_s:
            return self._give_up(
                f"the build Job {self._name} did not end within "
                f"{self._wait_limit_s:g} s"
            )
        return None

    def _note_pod(self, pod: dict[str, Any]) -> None:
        name = pod["metadata"]["name"]
        if name != self._seen_pod:
            if self._seen_pod:
                # A new pod logs afresh.
                self._logs = {container: _ContainerLog() for container in _CONTAINERS}
            self._seen_pod = name
            node = pod.get("spec", {}).get("nodeName")
            where = f" on node {node}" if node else ""
            self._log.write(f"build pod {name}{where}")

    def _latest_pod(self, job: dict[str, Any]) -> dict[str, Any] | None:
        """The newest pod this very Job (not an earlier one of the same name)
        made."""
        metadata = job["metadata"]
        pods = self._kube.job_pods(metadata["name"], metadata.get("uid"))
        return pods[-1] if pods else None

    def _copy_logs(self, pod: dict[str, Any], *, follow: bool) -> None:
        """Copies each container's new lines, in container order; follows a
        running container's log until it ends."""
        for container in _CONTAINERS:
            cursor = self._logs[container]
            if cursor.done:
                continue
            state = _container_state(pod, container)
            if "terminated" in state:
                self._read_log(pod, container, follow=False)
                cursor.done = True
                continue
            if "running" in state and follow:
                self._read_log(pod, container, follow=True)
            # A later container cannot have started before this one ended.
            return

    def _read_log(self, pod: dict[str, Any], container: str, *, follow: bool) -> None:
        cursor = self._logs[container]
        resume_from, to_skip = cursor.last_time, cursor.at_last_time
        lines = self._kube.log_lines(
            pod["metadata"]["name"],
            container,
            follow=follow,
            since_time=resume_from[0] if resume_from else None,
            read_timeout_s=self._limits.log_read_timeout_s,
        )
        try:
            for line in lines:
                stamp, _, text = line.partition(" ")
                moment = _parse_time(stamp)
                if moment is None:
                    text = line
                elif resume_from is not None and moment < resume_from:
                    continue
                elif moment == resume_from and to_skip > 0:
                    to_skip -= 1
                    continue
                self._copy_line(cursor, container, moment, text.rstrip("\r"))
                if self._stop.is_set():
                    return
        except KubeError:
            # A broken stream is opened again from the last line copied.
            if not follow:
                raise

    def _copy_line(
        self,
        cursor: _ContainerLog,
        container: str,
        moment: tuple[str, int] | None,
        text: str,
    ) -> None:
        if moment is not None:
            if moment == cursor.last_time:
                cursor.at_last_time += 1
            else:
                cursor.last_time, cursor.at_last_time = moment, 1
        cursor.tail.append(text)
        self._log.write(f"{container}: {text}")

    def _start_problem(self, pod: dict[str, Any] | None, now: float) -> str | None:
        """Why the pod cannot go on, once that is final or has lasted too
        long: a container that cannot start, or a pod that never started one."""
        waited = now - self._started
        if pod is None:
            if waited > self._limits.pending_timeout_s:
                return (
                    f"no pod was created for the build Job {self._name} within "
                    f"{self._limits.pending_timeout_s:g} s"
                )
            return None
        start_error = _start_error(pod)
        if start_error is not None:
            reason, text = start_error
            if reason in _PERMANENT_START_ERRORS:
                return text
            if self._start_error_since is None:
                self._start_error_since = now
                self._log.write(f"build pod cannot start yet: {text}")
            if now - self._start_error_since >= self._limits.start_error_timeout_s:
                return text
        else:
            self._start_error_since = None
        if waited > self._limits.pending_timeout_s and not _any_container_started(pod):
            waiting = _unschedulable(pod) or (start_error[1] if start_error else "")
            detail = f": {waiting}" if waiting else ""
            return (
                f"the build pod did not start within "
                f"{self._limits.pending_timeout_s:g} s{detail}"
            )
        return None

    def _give_up(self, reason: str) -> JobEnd:
        try:
            self._kube.delete_job(self._name)
        except KubeError as error:
            self._log.write(f"could not delete the build Job: {error}")
        else:
            self._log.write(f"deleted the build Job {self._name}")
        return JobEnd(False, reason)

    def _api_trouble(self, error: KubeError) -> JobEnd | None:
        now = self._clock()
        if self._api_failing_since is None:
            self._api_failing_since = now
            self._log.write(f"Kubernetes API trouble, retrying: {error}")
        if now - self._api_failing_since > _API_OUTAGE_S:
            return JobEnd(
                False,
                f"lost the Kubernetes API for more than {_API_OUTAGE_S:g} s while "
                f"following the build Job {self._name}: {error}",
            )
        return None

    def _end(
        self,
        job: dict[str, Any],
        finished: dict[str, Any],
        pod: dict[str, Any] | None,
    ) -> JobEnd:
        if finished["type"] == "Complete":
            return JobEnd(True, digest=self._digest(pod))
        reason = finished.get("reason", "")
        message = finished.get("message", "")
        if reason == "DeadlineExceeded":
            limit = job["spec"].get("activeDeadlineSeconds")
            return JobEnd(
                False,
                f"the image build took longer than its limit of {limit} s and was "
                "stopped",
            )
        for container in _CONTAINERS:
            terminated = (
                _container_state(pod, container).get("terminated") if pod else None
            )
            if terminated and terminated.get("exitCode", 0) != 0:
                return JobEnd(False, self._container_failure(container, terminated))
        detail = f"{reason}: {message}" if message else reason
        return JobEnd(False, f"the build Job {self._name} failed ({detail})")

    def _container_failure(self, container: str, terminated: dict[str, Any]) -> str:
        code = terminated.get("exitCode")
        tail = " | ".join(self._logs[container].tail) or (
            terminated.get("message", "").strip() or "no output"
        )
        if terminated.get("reason") == "OOMKilled":
            return f"{container} ran out of memory (exit status {code}): {tail}"
        if container == FETCH_CONTAINER:
            return (
                f"fetching the build context failed (curl exit status {code}): {tail}"
            )
        return f"kaniko exited with status {code}: {tail}"

    def _digest(self, pod: dict[str, Any] | None) -> str:
        terminated = (
            _container_state(pod, KANIKO_CONTAINER).get("terminated") if pod else None
        )
        digest = str((terminated or {}).get("message", "")).strip()
        if _DIGEST.match(digest):
            self._log.write(f"pushed image digest {digest}")
            return digest
        self._log.write("the build pod reported no image digest")
        return ""


def _statuses(pod: dict[str, Any]) -> list[dict[str, Any]]:
    status = pod.get("status", {})
    return list(status.get("initContainerStatuses") or []) + list(
        status.get("containerStatuses") or []
    )


def _container_state(pod: dict[str, Any], container: str) -> dict[str, Any]:
    for status in _statuses(pod):
        if status.get("name") == container:
            state: dict[str, Any] = status.get("state") or {}
            return state
    return {}


def _any_container_started(pod: dict[str, Any]) -> bool:
    return any(
        "running" in (status.get("state") or {})
        or "terminated" in (status.get("state") or {})
        for status in _statuses(pod)
    )


def _start_error(pod: dict[str, Any]) -> tuple[str, str] | None:
    images = {
        container["name"]: container.get("image", "")
        for kind in ("initContainers", "containers")
        for container in pod.get("spec", {}).get(kind, [])
    }
    for status in _statuses(pod):
        waiting = (status.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason", "")
        if reason in _START_ERRORS or reason in _PERMANENT_START_ERRORS:
            name = status.get("name", "")
            image = images.get(name) or status.get("image", "")
            message = waiting.get("message", "")
            detail = f"{reason}: {message}" if message else reason
            if "Image" in reason or reason == "RegistryUnavailable":
                text = (
                    f"the cluster cannot pull image {image} for the {name} container "
                    f"({detail}); check the image name and that the cluster can "
                    "reach its registry"
                )
            else:
                text = f"the {name} container cannot be created ({detail})"
            return reason, text
    return None


def _unschedulable(pod: dict[str, Any]) -> str:
    for condition in pod.get("status", {}).get("conditions", []) or []:
        if (
            condition.get("type") == "PodScheduled"
            and condition.get("status") == "False"
        ):
            message = condition.get("message") or condition.get("reason", "")
            return f"it cannot be scheduled: {message}"
    return ""


def _parse_time(stamp: str) -> tuple[str, int] | None:
    """An RFC 3339 time as (its whole seconds text, nanoseconds), which
    order as the times do; None when `stamp` is not one."""
    match = _RFC3339.match(stamp)
    if match is None:
        return None
    seconds, fraction, zone = match.groups()
    return f"{seconds}{zone}", int((fraction or "").ljust(9, "0"))
