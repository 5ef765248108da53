"""The Job controller: makes a Job's pods, counts how they end, and finishes,
fails, times out and expires Jobs."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .defaults import DEFAULT_BACKOFF_LIMIT, default_pod, pod_for_job, with_metadata
from .deletion import Deleter
from .errors import ApiError, ignoring_not_found
from .failure_policy import failure_policy_action
from .kinds import POD
from .meta import Obj, controller_of, format_time, is_deleting, now, parse_time
from .pod_status import container_statuses, pod_finished
from .state import Change, ObjectStore, follow_changes
from .workqueue import WorkQueue

logger = logging.getLogger(__name__)

_CREATE_ATTEMPTS = 5
_JOIN_TIMEOUT_S = 10.0

JobKey = tuple[str, str]


@dataclass(frozen=True)
class _Verdict:
    """Why a Job ends: the condition types it gets and their reason."""

    target: str  # FailureTarget or SuccessCriteriaMet
    final: str  # Failed or Complete
    reason: str
    message: str


class JobController:
    """Drives every Job to completion, as kube-controller-manager does."""

    def __init__(
        self,
        store: ObjectStore,
        deleter: Deleter,
        on_pod_created: Callable[[Obj], None] | None = None,
    ) -> None:
        self._store = store
        self._deleter = deleter
        self._on_pod_created = on_pod_created
        self._queue: WorkQueue[JobKey] = WorkQueue()
        self._stopping = threading.Event()
        # Pods each Job (by uid) has counted, so none is counted twice.
        self._counted: dict[str, set[str]] = {}
        # Exact start and finish times; the status holds whole seconds only.
        self._started: dict[str, float] = {}
        self._finished: dict[str, float] = {}
        self._threads = [
            threading.Thread(
                target=self._watch, name="fake-kube-jobs-watch", daemon=True
            ),
            threading.Thread(target=self._work, name="fake-kube-jobs", daemon=True),
        ]

    def start(self) -> None:
        self._since = self._store.revision
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._store.wake()
        self._queue.close()
        for thread in self._threads:
            thread.join(_JOIN_TIMEOUT_S)

    def _watch(self) -> None:
        follow_changes(
            self._store,
            {"Job", "Pod"},
            self._since,
            self._enqueue,
            self._resync,
            self._stopping.is_set,
        )

    def _enqueue(self, change: Change) -> None:
        key = _job_key(change)
        if key is not None:
            self._queue.add(key)

    def _resync(self) -> None:
        jobs, revision = self._store.select("Job")
        pods, _ = self._store.select("Pod")
        for obj, kind in [
            *((job, "Job") for job in jobs),
            *((pod, "Pod") for pod in pods),
        ]:
            self._enqueue(Change(revision, "MODIFIED", kind, obj, None))

    def _work(self) -> None:
        while True:
            key = self._queue.get()
            if key is None:
                return
            try:
                self._sync(*key)
            except Exception:
                logger.exception("job %s/%s: sync failed", *key)

    def _sync(self, namespace: str, name: str) -> None:
        job = self._store.find("Job", namespace, name)
        self._collect_orphans(namespace, name, job)
        if job is None:
            return
        uid = job["metadata"]["uid"]
        pods = self._deleter.owned_pods(job)
        if is_deleting(job):
            if not pods:
                self._store.delete("Job", namespace, name)
                self._forget(uid)
            return
        if _finished(job.get("status") or {}):
            self._expire(job)
            return
        status = self._next_status(job, pods)
        try:
            self._store.update(
                "Job", namespace, name, lambda job: job.update(status=status)
            )
        except ApiError as error:
            if error.reason == "NotFound":
                return
            raise
        if _finished(status):
            self._finished[uid] = time.time()
            self._queue.add((namespace, name))

    def _next_status(self, job: Obj, pods: list[Obj]) -> Obj:
        spec = job["spec"]
        uid = job["metadata"]["uid"]
        status = dict(job.get("status") or {})
        counted = self._counted.setdefault(uid, set())
        succeeded, failed = status.get("succeeded", 0), status.get("failed", 0)
        verdict = _decided(job)
        for pod in pods:
            pod_uid = pod["metadata"]["uid"]
            if pod_uid in counted or is_deleting(pod) or not pod_finished(pod):
                continue
            counted.add(pod_uid)
            if pod["status"]["phase"] == "Succeeded":
                succeeded += 1
                continue
            action, message = failure_policy_action(spec, pod)
            if action == "Ignore":
                continue
            failed += 1
            if action == "FailJob" and verdict is None:
                verdict = _failure("PodFailurePolicy", message)
        active = [p for p in pods if not pod_finished(p) and not is_deleting(p)]
        if verdict is None:
            verdict = self._verdict(job, active, succeeded, failed)
        # Pods a verdict ends go through graceful deletion first; the final
        # condition waits until they are gone.
        ending = active if verdict is not None else []
        for pod in ending:
            if verdict is not None and verdict.final == "Failed":
                counted.add(pod["metadata"]["uid"])
                failed += 1
            self._deleter.delete_pod(
                pod["metadata"]["namespace"], pod["metadata"]["name"]
            )
        if verdict is not None:
            active = []
        elif not spec.get("suspend"):
            active += self._create_pods(job, pods, active, succeeded)
        if not status.get("startTime") and not spec.get("suspend"):
            self._started[uid] = time.time()
            status["startTime"] = format_time(self._started[uid])
            self._schedule_deadline(job)
        terminating = [p for p in pods if is_deleting(p) and not pod_finished(p)]
        status.update(
            active=len(active),
            ready=sum(1 for pod in active if _ready(pod)),
            terminating=len(terminating),
            succeeded=succeeded,
            failed=failed,
            uncountedTerminatedPods={},
        )
        status["conditions"] = _conditions(status.get("conditions") or [], verdict)
        settled = not ending and not any(is_deleting(pod) for pod in pods)
        if verdict is not None and settled:
            status["conditions"] = _conditions(
                status["conditions"], verdict, final=True
            )
            if verdict.final == "Complete":
                status["completionTime"] = now()
        return _as_written(status)

    def _verdict(
        self, job: Obj, active: list[Obj], succeeded: int, failed: int
    ) -> _Verdict | None:
        spec = job["spec"]
        restarts = sum(_restarts(pod) for pod in active)
        if failed + restarts > spec.get("backoffLimit", DEFAULT_BACKOFF_LIMIT):
            return _failure(
                "BackoffLimitExceeded", "Job has reached the specified backoff limit"
            )
        deadline = spec.get("activeDeadlineSeconds")
        started = self._start_time(job)
        if deadline is not None and started is not None:
            if time.time() >= started + deadline:
                return _failure(
                    "DeadlineExceeded", "Job was active longer than specified deadline"
                )
        completions = spec.get("completions")
        done = (
            succeeded >= completions
            if completions is not None
            else succeeded > 0 and not active
        )
        if done:
            return _Verdict(
                "SuccessCriteriaMet",
                "Complete",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
            )
        return None

    def _create_pods(
        self, job: Obj, pods: list[Obj], active: list[Obj], succeeded: int
    ) -> list[Obj]:
        spec = job["spec"]
        remaining = (spec.get("completions") or spec["parallelism"]) - succeeded
        wanted = min(spec["parallelism"], remaining) - len(active)
        if spec.get("podReplacementPolicy") == "Failed":
            wanted -= sum(1 for pod in pods if is_deleting(pod))
        return [self._create_pod(job) for _ in range(max(0, wanted))]

    def _create_pod(self, job: Obj) -> Obj:
        namespace = job["metadata"]["namespace"]
        for attempt in range(_CREATE_ATTEMPTS):
            pod = with_metadata(POD, pod_for_job(job), namespace)
            default_pod(pod)
            try:
                created = self._store.create(pod)
            except ApiError as error:
                # A generated name may collide; draw another.
                if error.reason != "AlreadyExists" or attempt + 1 == _CREATE_ATTEMPTS:
                    raise
                continue
            if self._on_pod_created is not None:
                self._on_pod_created(created)
            return created
        raise AssertionError("unreachable")

    def _schedule_deadline(self, job: Obj) -> None:
        deadline = job["spec"].get("activeDeadlineSeconds")
        if deadline is not None:
            key = (job["metadata"]["namespace"], job["metadata"]["name"])
            self._queue.add(key, deadline + 0.05)

    def _start_time(self, job: Obj) -> float | None:
        uid = job["metadata"]["uid"]
        if uid in self._started:
            return self._started[uid]
        text = (job.get("status") or {}).get("startTime")
        return parse_time(text) if text else None

    def _expire(self, job: Obj) -> None:
        ttl = job["spec"].get("ttlSecondsAfterFinished")
        if ttl is None:
            return
        metadata = job["metadata"]
        finished = self._finished.get(metadata["uid"])
        if finished is None:
            finished = time.time()
            self._finished[metadata["uid"]] = finished
        wait = finished + ttl - time.time()
        if wait > 0:
            self._queue.add((metadata["namespace"], metadata["name"]), wait)
            return
        with ignoring_not_found():
            self._deleter.delete_job(
                metadata["namespace"], metadata["name"], "Background"
            )
        self._forget(metadata["uid"])

    def _collect_orphans(self, namespace: str, name: str, job: Obj | None) -> None:
        """Deletes pods whose controlling Job of this name is gone (or is a
        new Job with the same name), as the garbage collector does."""
        live_uid = job["metadata"]["uid"] if job else None

        def stale(pod: Obj) -> bool:
            owner = controller_of(pod)
            return (
                owner is not None
                and owner.get("kind") == "Job"
                and owner.get("name") == name
                and owner.get("uid") != live_uid
                and not is_deleting(pod)
            )

        pods, _ = self._store.select("Pod", namespace, stale)
        for pod in pods:
            with ignoring_not_found():
                self._deleter.delete_pod(namespace, pod["metadata"]["name"])

    def _forget(self, uid: str) -> None:
        for table in (self._counted, self._started, self._finished):
            table.pop(uid, None)


def _job_key(change: Change) -> JobKey | None:
    obj = change.obj
    namespace = obj["metadata"].get("namespace", "")
    if change.kind == "Job":
        return (namespace, obj["metadata"]["name"])
    owner = controller_of(obj) or controller_of(change.old or {"metadata": {}})
    if owner is not None and owner.get("kind") == "Job":
        return (namespace, owner["name"])
    return None


def _decided(job: Obj) -> _Verdict | None:
    for target, final in (
        ("FailureTarget", "Failed"),
        ("SuccessCriteriaMet", "Complete"),
    ):
        condition = _condition(job, target)
        if condition is not None:
            return _Verdict(
                target, final, condition.get("reason", ""), condition.get("message", "")
            )
    return None


def _failure(reason: str, message: str) -> _Verdict:
    return _Verdict("FailureTarget", "Failed", reason, message)


def _conditions(
    conditions: list[Obj], verdict: _Verdict | None, final: bool = False
) -> list[Obj]:
    if verdict is None:
        return conditions
    kind = verdict.final if final else verdict.target
    if any(condition["type"] == kind for condition in conditions):
        return conditions
    stamp = now()
    return [
        *conditions,
        {
            "type": kind,
            "status": "True",
            "lastProbeTime": stamp,
            "lastTransitionTime": stamp,
            "reason": verdict.reason,
            "message": verdict.message,
        },
    ]


def _finished(status: Obj) -> bool:
    conditions = status.get("conditions") or []
    return any(
        condition.get("type") in ("Complete", "Failed")
        and condition.get("status") == "True"
        for condition in conditions
    )


def _condition(job: Obj, type_: str) -> Obj | None:
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") == type_ and condition.get("status") == "True":
            found: Obj = condition
            return found
    return None


def _ready(pod: Obj) -> bool:
    return any(
        condition.get("type") == "Ready" and condition.get("status") == "True"
        for condition in pod.get("status", {}).get("conditions") or []
    )


def _restarts(pod: Obj) -> int:
    return sum(int(entry.get("restartCount", 0)) for entry in container_statuses(pod))


def _as_written(status: Obj) -> Obj:
    # As the API server writes them: zero counts and no conditions are left out.
    return {
        key: value
        for key, value in status.items()
        if not (key in ("active", "succeeded", "failed") and value == 0)
        and not (key == "conditions" and not value)
    }
