"""What each API request does, apart from HTTP: create, read, list, watch,
delete, and read logs."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .defaults import default_job, default_pod, default_secret, with_metadata
from .deletion import Deleter
from .errors import ApiError, ignoring_not_found
from .kinds import Kind
from .kubelet import Kubelet
from .logs import ContainerLog
from .meta import Obj, clone
from .pod_status import container_statuses
from .state import ObjectStore, StoreClosed
from .validation import check_rules, check_schema

# Kinds checked against the official schema when created.
_SCHEMA_CHECKED = ("Job", "Pod")
DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"


@dataclass(frozen=True)
class Query:
    """Which objects a list or watch request selects."""

    namespace: str | None
    matches: Callable[[Obj], bool]


class ClusterApi:
    """The API server's behaviour, on the store, the kubelet and the deleter."""

    def __init__(self, store: ObjectStore, deleter: Deleter, kubelet: Kubelet) -> None:
        self._store = store
        self._deleter = deleter
        self._kubelet = kubelet
        self._lock = threading.Lock()
        self._created: dict[str, list[Obj]] = {}

    def create(self, kind: Kind, namespace: str, body: Obj, dry_run: bool) -> Obj:
        """Validates, defaults and stores a new object."""
        if not kind.writable:
            raise ApiError("MethodNotAllowed", f"{kind.plural} cannot be created")
        received = clone(body)
        _check_type(kind, body)
        body = {**body, "apiVersion": kind.api_version, "kind": kind.name}
        metadata = body.get("metadata") or {}
        if kind.namespaced and metadata.get("namespace") not in (None, namespace):
            raise ApiError(
                "BadRequest",
                "the namespace of the provided object does not match the namespace "
                "sent on the request",
            )
        if kind.name in _SCHEMA_CHECKED:
            check_schema(kind, body)
        obj = with_metadata(kind, body, namespace)
        if kind.name == "Job":
            default_job(obj)
        elif kind.name == "Pod":
            default_pod(obj)
        elif kind.name == "Secret":
            default_secret(obj)
        check_rules(kind, obj)
        if dry_run:
            return obj
        stored = self._store.create(obj)
        self.record_created(kind.name, received)
        return stored

    def record_created(self, kind: str, obj: Obj) -> None:
        """Remembers a created object, for `created`."""
        with self._lock:
            self._created.setdefault(kind, []).append(clone(obj))

    def created(self, kind: str) -> list[Obj]:
        """Every object of `kind` ever created, as received."""
        with self._lock:
            return [clone(obj) for obj in self._created.get(kind, [])]

    def read(self, kind: Kind, namespace: str, name: str) -> Obj:
        if kind.name == "Namespace":
            return self._namespace(name)
        return self._store.get(kind.name, namespace, name)

    def list_objects(self, kind: Kind, query: Query) -> Obj:
        """A list object (e.g. JobList) of the selected objects."""
        items, revision = self._store.select(kind.name, query.namespace, query.matches)
        for item in items:
            # List items carry no apiVersion or kind, as the API server writes them.
            item.pop("apiVersion", None)
            item.pop("kind", None)
        return {
            "apiVersion": kind.api_version,
            "kind": kind.list_kind,
            "metadata": {"resourceVersion": str(revision)},
            "items": items,
        }

    def watch(
        self,
        kind: Kind,
        query: Query,
        resource_version: str | None,
        timeout_s: float | None,
        stop: Callable[[], bool],
    ) -> Iterator[Obj]:
        """Watch events of the selected objects: first the current ones as
        ADDED unless `resource_version` names a point to resume from.
        BadRequest at once (not mid-stream) for a malformed version."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        initial: list[Obj] = []
        if resource_version in (None, "", "0"):
            initial, since = self._store.select(
                kind.name, query.namespace, query.matches
            )
        else:
            since = _revision(str(resource_version))
        return self._events(kind, query, initial, since, deadline, stop)

    def _events(
        self,
        kind: Kind,
        query: Query,
        initial: list[Obj],
        since: int,
        deadline: float | None,
        stop: Callable[[], bool],
    ) -> Iterator[Obj]:
        for item in initial:
            yield {"type": "ADDED", "object": item}
        try:
            for change in self._store.changes({kind.name}, since, deadline, stop):
                namespace = change.obj["metadata"].get("namespace", "")
                if query.namespace is not None and namespace != query.namespace:
                    continue
                event_type = _event_type(change.type, change.obj, change.old, query)
                if event_type is not None:
                    yield {"type": event_type, "object": change.obj}
        except ApiError as error:
            yield {"type": "ERROR", "object": error.status()}
        except StoreClosed:
            return

    def delete(
        self,
        kind: Kind,
        namespace: str,
        name: str,
        policy: str | None,
        grace_s: int | None,
        dry_run: bool,
    ) -> Obj:
        if not kind.writable:
            raise ApiError("MethodNotAllowed", f"{kind.plural} cannot be deleted")
        if dry_run:
            return self._store.get(kind.name, namespace, name)
        return self._deleter.delete(kind, namespace, name, policy, grace_s)

    def delete_collection(
        self, kind: Kind, query: Query, policy: str | None, grace_s: int | None
    ) -> Obj:
        listed = self.list_objects(kind, query)
        for item in listed["items"]:
            metadata = item["metadata"]
            with ignoring_not_found():
                self._deleter.delete(
                    kind,
                    metadata.get("namespace", ""),
                    metadata["name"],
                    policy,
                    grace_s,
                )
        return listed

    def container_log(
        self, namespace: str, pod_name: str, container: str | None, previous: bool
    ) -> ContainerLog:
        """The log of one of a pod's containers; BadRequest if it has none yet."""
        pod = self._store.get("Pod", namespace, pod_name)
        name = _log_container(pod, container)
        log = self._kubelet.container_log(pod["metadata"]["uid"], name, previous)
        if log is not None:
            return log
        if previous:
            raise ApiError(
                "BadRequest",
                f'previous terminated container "{name}" in pod "{pod_name}" not found',
            )
        raise ApiError(
            "BadRequest",
            f'container "{name}" in pod "{pod_name}" is waiting to start: '
            + _waiting_reason(pod, name),
        )

    def _namespace(self, name: str) -> Obj:
        # Every namespace exists: one created through the API, or an implicit one.
        found = self._store.find("Namespace", "", name)
        if found is not None:
            return found
        return {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}},
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"},
        }


def _check_type(kind: Kind, body: Obj) -> None:
    for field, expected in (("apiVersion", kind.api_version), ("kind", kind.name)):
        given = body.get(field)
        if given not in (None, "", expected):
            raise ApiError(
                "BadRequest",
                f"the {field} of the object ({given!r}) does not match the request "
                f"path, which serves {expected!r}",
            )


def _revision(resource_version: str) -> int:
    try:
        return int(resource_version)
    except ValueError:
        raise ApiError(
            "BadRequest", f"resourceVersion {resource_version!r} is not a valid version"
        ) from None


def _event_type(type_: str, obj: Obj, old: Obj | None, query: Query) -> str | None:
    """The event a selective watch sees: an object that starts or stops
    matching the selectors is ADDED or DELETED for it."""
    now_matches = query.matches(obj)
    if type_ != "MODIFIED" or old is None:
        return type_ if now_matches else None
    was_matching = query.matches(old)
    if now_matches and was_matching:
        return "MODIFIED"
    if now_matches:
        return "ADDED"
    if was_matching:
        return "DELETED"
    return None


def _log_container(pod: Obj, requested: str | None) -> str:
    """The container a log request means: the one named, the only one, or the
    pod's default container."""
    spec = pod["spec"]
    pod_name = pod["metadata"]["name"]
    names = [c["name"] for c in spec["containers"]]
    init_names = [c["name"] for c in spec.get("initContainers") or []]
    if requested is None:
        annotations = pod["metadata"].get("annotations") or {}
        default = annotations.get(DEFAULT_CONTAINER_ANNOTATION)
        if len(names) == 1:
            return str(names[0])
        if default in names + init_names:
            return str(default)
        raise ApiError(
            "BadRequest",
            f"a container name must be specified for pod {pod_name}, choose one "
            f"of: [{' '.join(names)}] or one of the init containers: "
            f"[{' '.join(init_names)}]",
        )
    if requested not in names + init_names:
        raise ApiError(
            "BadRequest", f"container {requested} is not valid for pod {pod_name}"
        )
    return requested


def _waiting_reason(pod: Obj, container: str) -> str:
    for entry in container_statuses(pod):
        if entry.get("name") == container:
            waiting = (entry.get("state") or {}).get("waiting") or {}
            return str(waiting.get("reason") or "ContainerCreating")
    return "ContainerCreating"
