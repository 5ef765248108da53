"""Deleting objects as the API server and its garbage collector do: pods
gracefully, Jobs with their pods by propagation policy."""

from __future__ import annotations

import time

from .defaults import DEFAULT_GRACE_PERIOD_S
from .errors import ApiError, ignoring_not_found, success_status
from .kinds import Kind, kind_named
from .meta import Obj, controller_of, format_time, is_deleting
from .pod_status import pod_finished
from .state import ObjectStore

PROPAGATION_POLICIES = ("Orphan", "Background", "Foreground")
FOREGROUND_FINALIZER = "foregroundDeletion"


class Deleter:
    """Deletes objects from the store with their dependents."""

    def __init__(self, store: ObjectStore) -> None:
        self._store = store

    def delete(
        self,
        kind: Kind,
        namespace: str,
        name: str,
        policy: str | None = None,
        grace_s: int | None = None,
    ) -> Obj:
        """Deletes one object; what the DELETE request answers."""
        if kind.name == "Pod":
            return self.delete_pod(namespace, name, grace_s)
        if kind.name == "Job":
            return self.delete_job(namespace, name, policy)
        gone = self._store.delete(kind.name, namespace, name)
        return _deleted_status(kind, gone)

    def delete_pod(self, namespace: str, name: str, grace_s: int | None = None) -> Obj:
        """Starts a pod's graceful deletion; its kubelet kills its processes
        and then removes it. Unscheduled or finished pods (and a grace period
        of 0) go at once."""
        pod = self._store.get("Pod", namespace, name)
        if grace_s is None:
            grace_s = pod["spec"].get("terminationGracePeriodSeconds")
        grace = DEFAULT_GRACE_PERIOD_S if grace_s is None else grace_s
        if grace == 0 or pod_finished(pod) or not pod["spec"].get("nodeName"):
            return self._store.delete("Pod", namespace, name)
        if is_deleting(pod):
            return pod

        def mark(pod: Obj) -> None:
            pod["metadata"]["deletionTimestamp"] = format_time(time.time() + grace)
            pod["metadata"]["deletionGracePeriodSeconds"] = grace

        return self._store.update("Pod", namespace, name, mark)

    def delete_job(self, namespace: str, name: str, policy: str | None) -> Obj:
        """Deletes a Job. Its pods: left running without an owner (Orphan, the
        default for Jobs), deleted after it (Background) or before it
        (Foreground)."""
        if policy not in (None, *PROPAGATION_POLICIES):
            allowed = ", ".join(PROPAGATION_POLICIES)
            raise ApiError(
                "BadRequest",
                f"propagationPolicy {policy!r} is not one of {allowed}",
            )
        job = self._store.get("Job", namespace, name)
        pods = self.owned_pods(job)
        if policy == "Foreground" and pods:
            job = self._store.update("Job", namespace, name, _foreground_mark)
            for pod in pods:
                self._delete_quietly(pod)
            return job
        gone = self._store.delete("Job", namespace, name)
        for pod in pods:
            if policy in ("Background", "Foreground"):
                self._delete_quietly(pod)
            else:
                self._orphan(pod, job["metadata"]["uid"])
        return _deleted_status(kind_named("Job"), gone)

    def owned_pods(self, job: Obj) -> list[Obj]:
        """The pods the Job controls (by owner uid)."""
        uid = job["metadata"]["uid"]

        def owned(pod: Obj) -> bool:
            owner = controller_of(pod)
            return owner is not None and owner.get("uid") == uid

        pods, _ = self._store.select("Pod", job["metadata"]["namespace"], owned)
        return pods

    def _delete_quietly(self, pod: Obj) -> None:
        with ignoring_not_found():
            self.delete_pod(pod["metadata"]["namespace"], pod["metadata"]["name"])

    def _orphan(self, pod: Obj, owner_uid: str) -> None:
        def drop_owner(pod: Obj) -> None:
            owners = pod["metadata"].get("ownerReferences") or []
            kept = [owner for owner in owners if owner.get("uid") != owner_uid]
            pod["metadata"]["ownerReferences"] = kept
            if not kept:
                del pod["metadata"]["ownerReferences"]

        metadata = pod["metadata"]
        with ignoring_not_found():
            self._store.update(
                "Pod", metadata["namespace"], metadata["name"], drop_owner
            )


def _foreground_mark(job: Obj) -> None:
    metadata = job["metadata"]
    metadata.setdefault("deletionTimestamp", format_time(time.time()))
    metadata["deletionGracePeriodSeconds"] = 0
    finalizers = metadata.setdefault("finalizers", [])
    if FOREGROUND_FINALIZER not in finalizers:
        finalizers.append(FOREGROUND_FINALIZER)


def _deleted_status(kind: Kind, gone: Obj) -> Obj:
    return success_status(
        {
            "name": gone["metadata"]["name"],
            "group": kind.group,
            "kind": kind.plural,
            "uid": gone["metadata"].get("uid", ""),
        }
    )
