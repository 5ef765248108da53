"""The object store: objects by kind, namespace and name, resourceVersions and
the change history watches read."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass

from .errors import ApiError, already_exists, not_found
from .kinds import kind_named
from .meta import Obj, clone

# Changes kept for watches that resume from a resourceVersion; an older one
# gets 410 Gone, as from an API server whose etcd compacted its history.
HISTORY_LENGTH = 20_000

Key = tuple[str, str, str]


@dataclass(frozen=True)
class Change:
    """One change to one object. Consumers must not modify the dicts."""

    resource_version: int
    type: str  # ADDED, MODIFIED or DELETED
    kind: str
    obj: Obj
    # The object before a MODIFIED change, None otherwise.
    old: Obj | None


class StoreClosed(Exception):
    """The cluster is shutting down."""


class ObjectStore:
    """Every object of the fake cluster, thread-safe."""

    def __init__(self, history_length: int = HISTORY_LENGTH) -> None:
        self._lock = threading.Condition()
        self._objects: dict[Key, Obj] = {}
        self._revision = 0
        self._history: deque[Change] = deque(maxlen=history_length)
        self._closed = False

    @property
    def revision(self) -> int:
        """The resourceVersion of the latest change."""
        with self._lock:
            return self._revision

    def create(self, obj: Obj) -> Obj:
        """Stores a new object; AlreadyExists if its name is taken."""
        key = _key(obj)
        with self._lock:
            if key in self._objects:
                kind = kind_named(key[0])
                raise already_exists(kind.plural, kind.group, key[2])
            stored = clone(obj)
            self._record(key, "ADDED", stored, None)
            return clone(stored)

    def get(self, kind: str, namespace: str, name: str) -> Obj:
        """A copy of one object; NotFound if there is none."""
        with self._lock:
            return clone(self._existing((kind, namespace, name)))

    def find(self, kind: str, namespace: str, name: str) -> Obj | None:
        """A copy of one object, or None."""
        with self._lock:
            found = self._objects.get((kind, namespace, name))
            return clone(found) if found is not None else None

    def select(
        self,
        kind: str,
        namespace: str | None = None,
        where: Callable[[Obj], bool] = lambda obj: True,
    ) -> tuple[list[Obj], int]:
        """Copies of the matching objects, by name, and the store's revision."""
        with self._lock:
            found = [
                clone(obj)
                for (kind_, namespace_, _), obj in sorted(self._objects.items())
                if kind_ == kind
                and (namespace is None or namespace_ == namespace)
                and where(obj)
            ]
            return found, self._revision

    def update(
        self, kind: str, namespace: str, name: str, change: Callable[[Obj], None]
    ) -> Obj:
        """Applies `change` to a copy of the object and stores it, with a new
        resourceVersion if it differs; NotFound if there is no such object."""
        key = (kind, namespace, name)
        with self._lock:
            old = self._existing(key)
            new = clone(old)
            change(new)
            new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
            if new == old:
                return clone(old)
            self._record(key, "MODIFIED", new, old)
            return clone(new)

    def delete(self, kind: str, namespace: str, name: str) -> Obj:
        """Removes the object; NotFound if there is none. Returns its last state."""
        key = (kind, namespace, name)
        with self._lock:
            gone = clone(self._existing(key))
            self._record(key, "DELETED", gone, None)
            return clone(gone)

    def changes(
        self,
        kinds: Collection[str],
        since: int,
        deadline: float | None = None,
        stop: Callable[[], bool] = lambda: False,
    ) -> Iterator[Change]:
        """The changes to `kinds` after resourceVersion `since`, waiting for new
        ones until `deadline` (time.monotonic), `stop()` or close().

        Raises ApiError Expired if the history no longer reaches back to
        `since`, and StoreClosed when the store closes."""
        position = since
        while True:
            with self._lock:
                pending = self._after(position)
                while not pending:
                    if self._closed:
                        raise StoreClosed()
                    if stop():
                        return
                    remaining = (
                        None if deadline is None else deadline - time.monotonic()
                    )
                    if remaining is not None and remaining <= 0:
                        return
                    # Wake now and then, so `stop` is honoured without a change.
                    self._lock.wait(timeout=min(remaining or 1.0, 1.0))
                    pending = self._after(position)
            for change in pending:
                position = change.resource_version
                if change.kind in kinds:
                    yield change

    def wake(self) -> None:
        """Wakes every waiting watch, so it checks its `stop`."""
        with self._lock:
            self._lock.notify_all()

    def close(self) -> None:
        """Wakes every waiting watch; they end with StoreClosed."""
        with self._lock:
            self._closed = True
            self._lock.notify_all()

    def _after(self, position: int) -> list[Change]:
        if position >= self._revision:
            return []
        oldest = self._history[0].resource_version if self._history else 1
        if position + 1 < oldest:
            raise ApiError(
                "Expired",
                f"too old resource version: {position} ({oldest - 1})",
            )
        start = position + 1 - oldest
        return [self._history[index] for index in range(start, len(self._history))]

    def _existing(self, key: Key) -> Obj:
        found = self._objects.get(key)
        if found is None:
            kind = kind_named(key[0])
            raise not_found(kind.plural, kind.group, key[2])
        return found

    def _record(self, key: Key, type_: str, obj: Obj, old: Obj | None) -> None:
        self._revision += 1
        obj["metadata"]["resourceVersion"] = str(self._revision)
        if type_ == "DELETED":
            del self._objects[key]
        else:
            self._objects[key] = obj
        self._history.append(Change(self._revision, type_, key[0], obj, old))
        self._lock.notify_all()


def _key(obj: Obj) -> Key:
    return (obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"])


def follow_changes(
    store: ObjectStore,
    kinds: Collection[str],
    since: int,
    handle: Callable[[Change], None],
    resync: Callable[[], None],
    stop: Callable[[], bool],
) -> None:
    """Feeds each change to `handle` until `stop()` or the store closes, as an
    informer does; should it fall behind the kept history, `resync()` is
    called and following goes on from the present."""
    while True:
        try:
            for change in store.changes(kinds, since, stop=stop):
                handle(change)
            return
        except ApiError as error:
            if error.reason != "Expired":
                raise
            since = store.revision
            resync()
        except StoreClosed:
            return
