"""The Kubernetes execution backend: each execution is a batch/v1 Job that
runs its step's image, fetching and storing its files through presigned URLs.

One thread watches every execution Job; one thread per execution waits for
its pod, copies the pod's log into the execution's log, and ends the
execution through the Lifecycle once the Job has ended. A restart of the
service adopts the Jobs still running; stopping the service leaves them be.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from stepforge.services.core.names import short_name
from stepforge.services.core.object_store import ObjectNotFoundError, ObjectStoreError
from stepforge.services.execution.job_spec import (
    COMPONENT,
    CONTAINER,
    TERMINATE_GRACE_S,
    execution_job,
    image_problem,
    job_name,
    needs_gpu,
)
from stepforge.services.execution.job_status import (
    container_state,
    deadline_exceeded,
    has_started,
    waiting_reason,
)
from stepforge.services.execution.job_watch import JobWatcher
from stepforge.services.execution.lifecycle import SYSTEM, Lifecycle
from stepforge.services.execution.limits import (
    Limits,
    OutputBudget,
    effective_limits,
    execution_timeout_s,
)
from stepforge.services.execution.logs import LogBook
from stepforge.services.execution.object_keys import execution_prefix, output_key
from stepforge.services.execution.pod_logs import STDOUT, PodLogFollower
from stepforge.services.execution.pod_outcome import (
    result_outcome,
    termination_reason,
)
from stepforge.services.execution.pod_spec import (
    PresigningObjectStore,
    build_pod_spec,
    encode_pod_spec,
    result_key,
)
from stepforge.services.execution.store import ExecutionStore, StoredExecution
from stepforge.services.kubernetes import labels
from stepforge.services.kubernetes.api import (
    JobExists,
    KubeApi,
    KubeError,
    final_condition,
)
from stepforge.services.kubernetes.settings import (
    DEFAULT_PENDING_TIMEOUT_S,
    KubernetesSettings,
)
from stepforge.v1 import execution_pb2

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

logger = logging.getLogger(__name__)

# How often a pod that has not started yet is looked at.
POLL_S = 1.0
# How long a Job that has ended may still send its pod's last lines.
ENDED_GRACE_S = 30.0
# How long after a cancel the pod's log stream is left to end on its own.
CANCEL_STREAM_GRACE_S = TERMINATE_GRACE_S + 5.0
RETRY_MAX_S = 10.0
_LOG_PAGE = 1000


@dataclass(frozen=True)
class KubernetesBackendSettings:
    cluster: KubernetesSettings
    # How long a pod may stay unscheduled or unable to start before its
    # execution fails.
    pending_timeout_s: float = DEFAULT_PENDING_TIMEOUT_S
    # What an execution's zero limits become; None for the platform's defaults.
    default_limits: Limits | None = None
    # pod_entry's transfer policy (timeout_s, attempts, backoff_s); None for
    # its defaults.
    transfer: Mapping[str, float] | None = None
    poll_s: float = POLL_S

    def __post_init__(self) -> None:
        for name in ("pending_timeout_s", "poll_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be a positive number of seconds")


@dataclass
class _Tracked:
    """One execution this backend runs, and what its threads tell each other."""

    run: StoredExecution
    job: str
    cancelled: threading.Event = field(default_factory=threading.Event)
    # Set on every change worth a look: a Job event, a cancel, a stop.
    wake: threading.Event = field(default_factory=threading.Event)
    final: dict[str, Any] | None = None
    gone: bool = False
    # Why the backend itself ended the run: its pod never started, say.
    failure: str | None = None
    follower: PodLogFollower | None = None

    @property
    def ended(self) -> bool:
        """The Job has a final condition, or is gone."""
        return self.final is not None or self.gone


class KubernetesBackend:
    def __init__(
        self,
        settings: KubernetesBackendSettings,
        api: ApiClient,
        lifecycle: Lifecycle,
        logs: LogBook,
        store: ExecutionStore,
        objects: PresigningObjectStore,
    ) -> None:
        self._settings = settings
        self._cluster = settings.cluster
        self._namespace = settings.cluster.namespace
        self._kube = KubeApi(api, self._namespace)
        self._lifecycle = lifecycle
        self._logs = logs
        self._store = store
        self._objects = objects
        self._lock = threading.Lock()
        self._by_name: dict[str, _Tracked] = {}
        self._by_job: dict[str, _Tracked] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._stopping = threading.Event()
        self._watching = False
        self._watcher = JobWatcher(self._kube, labels.selector(COMPONENT), self._on_job)

    def submit(self, run: StoredExecution) -> None:
        self._lifecycle.started(run.execution.name)
        tracked = self._track(run)
        self._start_watching()
        self._start(tracked, create=True, skip_lines=0)

    def cancel(self, name: str) -> bool:
        """Deletes the execution's Job, which stops its pod; False when this
        backend does not run the execution."""
        with self._lock:
            tracked = self._by_name.get(name)
        if tracked is None:
            return False
        tracked.cancelled.set()
        tracked.wake.set()
        self._delete_job(tracked.job)
        follower = tracked.follower
        if follower is not None:
            # The stream ends with the pod; this bounds the wait if it does not.
            timer = threading.Timer(CANCEL_STREAM_GRACE_S, follower.stop)
            timer.daemon = True
            timer.start()
        return True

    def recover(self, active: list[StoredExecution]) -> None:
        """Adopts the Jobs of executions a previous start left active, in the
        background: the cluster may not answer at once."""
        tracked = []
        for run in active:
            self._lifecycle.started(run.execution.name)
            tracked.append(self._track(run))
        thread = threading.Thread(
            target=self._recover, args=(tracked,), name="recover-jobs", daemon=True
        )
        with self._lock:
            self._threads["recover-jobs"] = thread
        thread.start()

    def shutdown(self, timeout_s: float = 10.0) -> None:
        """Stops following the Jobs and leaves them running: the next start
        adopts them."""
        self._stopping.set()
        self._watcher.stop(timeout_s)
        with self._lock:
            tracked = list(self._by_name.values())
            threads = list(self._threads.values())
        for item in tracked:
            item.wake.set()
            if item.follower is not None:
                item.follower.stop()
        deadline = time.monotonic() + timeout_s
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    # Threads and bookkeeping.

    def _track(self, run: StoredExecution) -> _Tracked:
        name = run.execution.name
        tracked = _Tracked(run=run, job=job_name(name))
        with self._lock:
            self._by_name[name] = tracked
            self._by_job[tracked.job] = tracked
        return tracked

    def _forget(self, tracked: _Tracked) -> None:
        name = tracked.run.execution.name
        with self._lock:
            self._by_name.pop(name, None)
            self._by_job.pop(tracked.job, None)
            self._threads.pop(name, None)

    def _start(self, tracked: _Tracked, create: bool, skip_lines: int) -> None:
        name = tracked.run.execution.name
        thread = threading.Thread(
            target=self._run,
            args=(tracked, create, skip_lines),
            name=f"job-{short_name(name)}",
            daemon=True,
        )
        with self._lock:
            self._threads[name] = thread
        thread.start()

    def _start_watching(self) -> None:
        with self._lock:
            if self._watching or self._stopping.is_set():
                return
            self._watching = True
        self._watcher.start()

    def _on_job(self, kind: str, job: dict[str, Any]) -> None:
        with self._lock:
            tracked = self._by_job.get(job["metadata"]["name"])
        if tracked is not None:
            _note_job(tracked, kind, job)

    def _recover(self, tracked: list[_Tracked]) -> None:
        jobs = self._list_jobs()
        if jobs is None:
            return
        for item in tracked:
            try:
                self._resume(item, jobs.get(item.job))
            except Exception as error:
                logger.exception("cannot resume execution %s", item.run.execution.name)
                self._forget(item)
                self._finish(
                    item.run.execution.name,
                    execution_pb2.EXECUTION_STATUS_FAILED,
                    f"internal error: {error}",
                )
        self._start_watching()

    def _resume(self, tracked: _Tracked, job: dict[str, Any] | None) -> None:
        """Adopts the execution's Job, or settles an execution without one."""
        run = tracked.run
        name = run.execution.name
        if job is not None:
            _note_job(tracked, "ADDED", job)
            skip = self._stored_pod_lines(name)
            logger.info("adopting Job %s of execution %s", tracked.job, name)
            self._start(tracked, create=False, skip_lines=skip)
        elif self._read_result(name) is not None:
            # It ran to its end, and the Job went with its time to live.
            _note_job(tracked, "DELETED", {})
            self._run(tracked, create=False, skip_lines=0)
        elif run.execution.status == execution_pb2.EXECUTION_STATUS_PENDING:
            self._start(tracked, create=True, skip_lines=0)
        else:
            self._forget(tracked)
            self._finish(
                name,
                execution_pb2.EXECUTION_STATUS_FAILED,
                f"its Job {self._namespace}/{tracked.job} is gone: it was deleted "
                "while the execution service was stopped",
            )

    def _list_jobs(self) -> dict[str, dict[str, Any]] | None:
        """The execution Jobs by name, asked until the cluster answers; None
        when the backend stops first."""
        delay = POLL_S
        while not self._stopping.is_set():
            try:
                items = self._kube.list_jobs(labels.selector(COMPONENT)).items
                return {item["metadata"]["name"]: item for item in items}
            except KubeError as error:
                logger.warning(
                    "cannot list the execution Jobs (%s); trying again in %.1f s",
                    error,
                    delay,
                )
                self._stopping.wait(delay)
                delay = min(delay * 2, RETRY_MAX_S)
        return None

    # One execution, from its Job's creation to its end.

    def _run(self, tracked: _Tracked, create: bool, skip_lines: int) -> None:
        name = tracked.run.execution.name
        try:
            if create and not self._create(tracked):
                return
            self._supervise(tracked, skip_lines)
        except Exception as error:
            if self._stopping.is_set():
                logger.info("stopped following execution %s: %s", name, error)
                return
            logger.exception("execution %s failed in the backend", name)
            self._delete_job(tracked.job)
            self._finish(
                name, execution_pb2.EXECUTION_STATUS_FAILED, f"internal error: {error}"
            )
        finally:
            self._forget(tracked)

    def _create(self, tracked: _Tracked) -> bool:
        """Creates the execution's Job; False when the execution ended instead."""
        run = tracked.run
        name = run.execution.name
        failed = execution_pb2.EXECUTION_STATUS_FAILED
        problem = image_problem(run.step.runtime_id)
        if problem is not None:
            self._finish(name, failed, problem)
            return False
        try:
            limits = effective_limits(
                run.execution.limits, self._settings.default_limits
            )
            spec = build_pod_spec(
                run,
                self._objects,
                limits.for_runner(not needs_gpu(run)),
                timedelta(seconds=self._cluster.presign_ttl_s),
                self._settings.transfer,
            )
        except ValueError as error:
            self._finish(name, failed, str(error))
            return False
        if tracked.cancelled.is_set():
            self._stopped(name, "cancelled before it started")
            return False
        manifest = execution_job(run, encode_pod_spec(spec), limits, self._cluster)
        try:
            self._kube.create_job(manifest)
        except JobExists:
            logger.info("Job %s exists already; following it", tracked.job)
        except KubeError as error:
            if error.status in (400, 403, 422):
                self._finish(
                    name,
                    failed,
                    f"the cluster refused the execution's Job: {error.detail}",
                )
                return False
            raise
        self._logs.write(
            name,
            SYSTEM,
            f"created Job {self._namespace}/{tracked.job} with image "
            f"{run.step.runtime_id}",
        )
        # A cancel that came while the Job was being made found none to delete.
        if tracked.cancelled.is_set():
            self._delete_job(tracked.job)
        return True

    def _supervise(self, tracked: _Tracked, skip_lines: int) -> None:
        """Waits for the pod, follows its log, and ends the execution once the
        Job has ended; returns early, leaving it active, when the backend stops."""
        run = tracked.run
        name = run.execution.name
        limits = effective_limits(run.execution.limits, self._settings.default_limits)
        budget = OutputBudget(
            limits.output_bytes, on_exceeded=lambda: self._delete_job(tracked.job)
        )
        follower = PodLogFollower(self._kube, CONTAINER, self._logs, name, budget)
        tracked.follower = follower
        progress = _Progress(
            running=run.execution.status == execution_pb2.EXECUTION_STATUS_RUNNING,
            lines=skip_lines,
            waiting_since=time.monotonic(),
        )
        while not self._stopping.is_set():
            tracked.wake.clear()
            if tracked.cancelled.is_set() or tracked.failure is not None:
                break
            if tracked.ended and progress.ended_at is None:
                progress.ended_at = time.monotonic()
            known, pod = self._newest_pod(tracked.job)
            if pod is not None and has_started(pod):
                if not progress.running and not self._mark_running(
                    tracked, pod, limits
                ):
                    break
                progress.running = True
                self._follow_pod(tracked, follower, pod, progress)
            elif (
                known
                and not progress.running
                and not self._still_waiting(tracked, pod, progress)
            ):
                break
            if tracked.ended and progress.settled(pod, ENDED_GRACE_S):
                break
            tracked.wake.wait(self._settings.poll_s)
        else:
            return
        self._conclude(tracked, progress.running, progress.terminated, limits, budget)

    def _mark_running(
        self, tracked: _Tracked, pod: dict[str, Any], limits: Limits
    ) -> bool:
        """Records that the step started; False when the execution ended
        meanwhile, which only a cancel does."""
        run = tracked.run
        name = run.execution.name
        if not self._lifecycle.mark_running(name, self._devices(run, pod)):
            tracked.cancelled.set()
            return False
        node = pod.get("spec", {}).get("nodeName") or "an unknown node"
        self._logs.write(
            name,
            SYSTEM,
            f"running {run.step.name} in pod {pod['metadata']['name']} on node {node}",
        )
        self._logs.write(name, SYSTEM, f"limits: {limits.describe()}")
        return True

    def _follow_pod(
        self,
        tracked: _Tracked,
        follower: PodLogFollower,
        pod: dict[str, Any],
        progress: _Progress,
    ) -> None:
        """Copies the log of a started pod until its stream ends, and notes
        whether the pod's container ended with it."""
        uid = pod["metadata"]["uid"]
        if uid in progress.done:
            return
        pod_name = pod["metadata"]["name"]
        if progress.followed and uid not in progress.followed:
            self._logs.write(
                tracked.run.execution.name,
                SYSTEM,
                f"the cluster took the pod away; the step runs again in pod {pod_name}",
            )
            progress.lines = 0
        progress.followed.add(uid)
        progress.lines = self._follow(follower, pod_name, progress.lines)
        _, now = self._newest_pod(tracked.job)
        state = container_state(now)
        if now is not None and now["metadata"]["uid"] == uid and state is not None:
            if "terminated" in state:
                progress.done.add(uid)
                progress.terminated = state["terminated"]

    def _still_waiting(
        self, tracked: _Tracked, pod: dict[str, Any] | None, progress: _Progress
    ) -> bool:
        """Says once why the pod waits; False once it waited too long, the
        Job deleted and the execution's failure set."""
        reason = waiting_reason(pod)
        if reason is not None:
            progress.last_wait = reason
            key = reason.partition(":")[0]
            if pod is not None and key not in progress.said:
                progress.said.add(key)
                self._logs.write(
                    tracked.run.execution.name,
                    SYSTEM,
                    f"waiting for the pod to start: {reason}",
                )
        limit = self._settings.pending_timeout_s
        if tracked.ended or time.monotonic() - progress.waiting_since <= limit:
            return True
        tracked.failure = f"the pod did not start within {limit:g} s" + (
            f": {progress.last_wait}" if progress.last_wait else ""
        )
        self._delete_job(tracked.job)
        return False

    def _conclude(
        self,
        tracked: _Tracked,
        ran: bool,
        terminated: dict[str, Any] | None,
        limits: Limits,
        budget: OutputBudget,
    ) -> None:
        """Ends the execution as the local backend would, in the same order:
        a cancel, the timeout, the output limit, then what the pod reported."""
        execution = tracked.run.execution
        name = execution.name
        failed = execution_pb2.EXECUTION_STATUS_FAILED
        if tracked.cancelled.is_set():
            self._delete_job(tracked.job)
            self._stopped(
                name,
                "cancelled while running" if ran else "cancelled before it started",
            )
            return
        if deadline_exceeded(tracked.final):
            self._finish(
                name, failed, f"timed out after {execution_timeout_s(execution):g} s"
            )
        elif budget.exceeded:
            self._finish(
                name,
                failed,
                f"the step wrote more than its output limit of {budget.limit} bytes",
            )
        elif tracked.failure is not None:
            self._finish(name, failed, tracked.failure)
        else:
            result = self._read_result(name)
            if result is not None:
                exit_code = (terminated or {}).get("exitCode")
                outcome = result_outcome(
                    result,
                    exit_code,
                    lambda output, size: self._stored(name, output, size),
                )
                self._finish(name, outcome.status, outcome.reason, outcome.outputs)
            elif tracked.gone and tracked.final is None:
                self._finish(
                    name,
                    failed,
                    f"its Job {self._namespace}/{tracked.job} was deleted before "
                    "the step finished",
                )
            else:
                self._finish(name, failed, termination_reason(terminated, limits))
        self._remove_pod_objects(name)

    # Cluster and store calls.

    def _newest_pod(self, job: str) -> tuple[bool, dict[str, Any] | None]:
        """Whether the pods could be read, and the Job's newest pod."""
        try:
            pods = self._kube.job_pods(job)
        except KubeError as error:
            logger.warning("cannot read the pods of Job %s: %s", job, error)
            return False, None
        return True, pods[-1] if pods else None

    def _follow(self, follower: PodLogFollower, pod: str, lines: int) -> int:
        try:
            return follower.follow(pod, lines)
        except Exception as error:
            logger.debug("cannot follow the log of pod %s yet: %s", pod, error)
            return lines

    def _delete_job(self, job: str) -> None:
        try:
            self._kube.delete_job(job)
        except KubeError as error:
            logger.warning("cannot delete Job %s: %s", job, error.detail)

    def _read_result(self, name: str) -> Any:
        """The result the pod stored, parsed; None when it stored none."""
        try:
            data = b"".join(self._objects.iter_chunks(result_key(name)))
        except ObjectNotFoundError:
            return None
        try:
            return json.loads(data)
        except ValueError:
            return "not JSON"

    def _stored(self, name: str, output: str, size: int) -> bool:
        try:
            return self._objects.stat(output_key(name, output)).size == size
        except ObjectNotFoundError:
            return False

    def _remove_pod_objects(self, name: str) -> None:
        """Removes what only the pod needed; inputs and outputs stay."""
        try:
            for info in list(self._objects.list(f"{execution_prefix(name)}pod/")):
                self._objects.delete(info.key)
        except ObjectStoreError as error:
            logger.warning("cannot remove the pod files of %s: %s", name, error)

    def _stored_pod_lines(self, name: str) -> int:
        """How many lines of pod logs the execution's log holds already."""
        count, sequence = 0, 0
        while lines := self._store.lines(name, sequence, _LOG_PAGE):
            count += sum(1 for line in lines if line.stream == STDOUT)
            sequence = lines[-1].sequence + 1
        return count

    def _devices(self, run: StoredExecution, pod: dict[str, Any]) -> list[str]:
        """What a GPU execution was given: the cluster does not say which
        device of the node the device plugin picked, so the node and the
        resource stand for it."""
        if not needs_gpu(run):
            return []
        node = pod.get("spec", {}).get("nodeName", "")
        return [f"{self._cluster.gpu_resource}@{node}"]

    def _stopped(self, name: str, reason: str) -> None:
        self._finish(name, execution_pb2.EXECUTION_STATUS_CANCELLED, reason)

    def _finish(
        self,
        name: str,
        status: execution_pb2.ExecutionStatus.ValueType,
        reason: str = "",
        outputs: Mapping[str, execution_pb2.ExecutionValue] | None = None,
    ) -> None:
        self._lifecycle.finish(name, status, reason, outputs)


@dataclass
class _Progress:
    """What an execution's thread has seen of its pods."""

    running: bool
    # Lines of the current pod's log already stored.
    lines: int
    waiting_since: float
    ended_at: float | None = None
    said: set[str] = field(default_factory=set)
    last_wait: str = ""
    followed: set[str] = field(default_factory=set)
    # Pods whose container ended after its log was read to the end.
    done: set[str] = field(default_factory=set)
    terminated: dict[str, Any] | None = None

    def settled(self, pod: dict[str, Any] | None, grace_s: float) -> bool:
        """Whether an ended Job has nothing more to tell: no pod, or one whose
        log is all read, or one that never started, or no news for a while."""
        if pod is None or not self.running or pod["metadata"]["uid"] in self.done:
            return True
        return self.ended_at is not None and time.monotonic() - self.ended_at > grace_s


def _note_job(tracked: _Tracked, kind: str, job: dict[str, Any]) -> None:
    if final_condition(job) is not None:
        tracked.final = job
    if kind == "DELETED":
        tracked.gone = True
    tracked.wake.set()
