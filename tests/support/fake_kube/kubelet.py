"""The kubelet of every fake node: it watches pods, runs each in a worker,
keeps their logs, and finishes their deletion."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from .errors import ignoring_not_found
from .images import ImageRegistry
from .logs import ContainerLog
from .meta import Obj, is_deleting
from .pod_status import pod_finished
from .pod_worker import PodWorker
from .scheduler import Scheduler
from .state import Change, ObjectStore, follow_changes

logger = logging.getLogger(__name__)

_JOIN_TIMEOUT_S = 15.0


class Kubelet:
    """Runs the cluster's pods as local processes."""

    def __init__(
        self,
        store: ObjectStore,
        scheduler: Scheduler,
        images: ImageRegistry,
        root: Path,
    ) -> None:
        self.store = store
        self.scheduler = scheduler
        self.images = images
        self.root = root
        self._lock = threading.Lock()
        self._workers: dict[str, PodWorker] = {}
        self._logs: dict[str, dict[str, list[ContainerLog]]] = {}
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._watch, name="fake-kube-kubelet", daemon=True
        )

    def start(self) -> None:
        """Starts running the pods created from now on."""
        self._since = self.store.revision
        self._thread.start()

    def stop(self) -> None:
        """Kills every pod's processes and waits for the workers to end."""
        self._stopping.set()
        self.store.wake()
        with self._lock:
            workers = list(self._workers.values())
        for worker in workers:
            worker.request_stop(0)
        for worker in workers:
            worker.join(_JOIN_TIMEOUT_S)
        self._thread.join(_JOIN_TIMEOUT_S)

    def container_log(
        self, pod_uid: str, container: str, previous: bool
    ) -> ContainerLog | None:
        """The log of the container's current (or previous) run, if it ran."""
        with self._lock:
            runs = self._logs.get(pod_uid, {}).get(container, [])
            wanted = -2 if previous else -1
            return runs[wanted] if len(runs) >= -wanted else None

    def new_log(self, pod_uid: str, container: str) -> ContainerLog:
        """A log for a new run of the container."""
        log = ContainerLog()
        with self._lock:
            self._logs.setdefault(pod_uid, {}).setdefault(container, []).append(log)
        return log

    def worker_done(self, worker: PodWorker) -> None:
        """Called by a worker as it ends: removes a pod whose deletion waited."""
        with self._lock:
            self._workers.pop(worker.uid, None)
        pod = self._pod_with_uid(worker.pod_key, worker.uid)
        if pod is None:
            self._forget(worker.uid)
        elif is_deleting(pod):
            self._remove(pod)

    def _watch(self) -> None:
        follow_changes(
            self.store,
            {"Pod"},
            self._since,
            self._on_change,
            self._resync,
            self._stopping.is_set,
        )

    def _resync(self) -> None:
        pods, revision = self.store.select("Pod")
        live = {pod["metadata"]["uid"] for pod in pods}
        with self._lock:
            workers = dict(self._workers)
            forgotten = [uid for uid in self._logs if uid not in live]
        for uid in forgotten:
            self._forget(uid)
        for uid, worker in workers.items():
            if uid not in live:
                worker.request_stop(0)
        for pod in pods:
            if is_deleting(pod):
                self._on_change(Change(revision, "MODIFIED", "Pod", pod, None))
            elif pod["metadata"]["uid"] not in workers and not pod_finished(pod):
                self._on_change(Change(revision, "ADDED", "Pod", pod, None))

    def _on_change(self, change: Change) -> None:
        pod = change.obj
        uid = pod["metadata"]["uid"]
        with self._lock:
            worker = self._workers.get(uid)
        if change.type == "DELETED":
            if worker is not None:
                worker.request_stop(0)
            else:
                self._forget(uid)
        elif is_deleting(pod):
            if worker is not None:
                worker.request_stop(
                    pod["metadata"].get("deletionGracePeriodSeconds", 0)
                )
            else:
                self._remove(pod)
        elif change.type == "ADDED":
            self._start_worker(pod)

    def _start_worker(self, pod: Obj) -> None:
        with self._lock:
            if self._stopping.is_set():
                return
            worker = PodWorker(self, pod)
            self._workers[worker.uid] = worker
        worker.start()

    def _remove(self, pod: Obj) -> None:
        metadata = pod["metadata"]
        key = (metadata["namespace"], metadata["name"])
        if self._pod_with_uid(key, metadata["uid"]) is None:
            return
        with ignoring_not_found():
            self.store.delete("Pod", *key)
        self._forget(metadata["uid"])

    def _pod_with_uid(self, key: tuple[str, str], uid: str) -> Obj | None:
        pod = self.store.find("Pod", *key)
        if pod is None or pod["metadata"]["uid"] != uid:
            return None
        return pod

    def _forget(self, uid: str) -> None:
        with self._lock:
            self._logs.pop(uid, None)
