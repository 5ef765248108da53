"""Every change of an execution's status, in one place: persisted first, then
announced to waiters, then the pipeline released."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping

from google.protobuf import timestamp_pb2

from stepforge.services.core.errors import FailedPrecondition, NotFound
from stepforge.services.core.names import short_name
from stepforge.services.core.registry_client import RegistryClient
from stepforge.services.execution.logs import LogBook
from stepforge.services.execution.store import ACTIVE_STATUSES, ExecutionStore
from stepforge.v1 import execution_pb2

logger = logging.getLogger(__name__)

SYSTEM = execution_pb2.LOG_STREAM_SYSTEM


class Lifecycle:
    def __init__(
        self, store: ExecutionStore, logs: LogBook, registry: RegistryClient
    ) -> None:
        self._store = store
        self._logs = logs
        self._registry = registry
        self._ended: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        # Serializes read-modify-write of one execution's row across threads
        # (the runner finishing while a cancel arrives).
        self._transition = threading.Lock()

    def started(self, name: str) -> None:
        """Registers `name` so that waiters can be told when it ends."""
        with self._lock:
            self._ended.setdefault(name, threading.Event())

    def mark_running(self, name: str, gpu_devices: list[str]) -> bool:
        """Moves a pending execution to running; False when it has ended already
        (cancelled while it waited)."""
        with self._transition:
            execution = self._load(name)
            if execution.status != execution_pb2.EXECUTION_STATUS_PENDING:
                return False
            execution.status = execution_pb2.EXECUTION_STATUS_RUNNING
            execution.start_time.CopyFrom(_now())
            execution.gpu_devices[:] = gpu_devices
            self._store.update(execution)
        return True

    def finish(
        self,
        name: str,
        status: execution_pb2.ExecutionStatus.ValueType,
        reason: str = "",
        outputs: Mapping[str, execution_pb2.ExecutionValue] | None = None,
    ) -> bool:
        """Ends an execution that has not ended; False when it already had."""
        with self._transition:
            stored = self._store.get(name)
            if stored is None or stored.execution.status not in ACTIVE_STATUSES:
                return False
            execution = stored.execution
            execution.status = status
            execution.failure_reason = reason
            execution.end_time.CopyFrom(_now())
            for key, value in (outputs or {}).items():
                execution.outputs[key].CopyFrom(value)
            self._store.update(execution)
        label = execution_pb2.ExecutionStatus.Name(status).removeprefix(
            "EXECUTION_STATUS_"
        )
        self._logs.write(
            name,
            SYSTEM,
            f"execution {label.lower()}" + (f": {reason}" if reason else ""),
        )
        self._logs.close_execution(name)
        logger.info(
            "execution %s %s%s", name, label.lower(), f": {reason}" if reason else ""
        )
        with self._lock:
            ended = self._ended.pop(name, None)
        if ended is not None:
            ended.set()
        self.release_pipeline(stored.environment, name)
        return True

    def cancel_pending_or_raise(self, name: str) -> execution_pb2.Execution:
        """Checks `name` may be cancelled; raises FAILED_PRECONDITION once ended."""
        execution = self._load(name)
        if execution.status not in ACTIVE_STATUSES:
            raise FailedPrecondition(
                f"name: execution {short_name(name)!r} has already ended"
            )
        return execution

    def wait(self, name: str, timeout_s: float) -> None:
        with self._lock:
            ended = self._ended.get(name)
        if ended is not None:
            ended.wait(timeout_s)

    def release_pipeline(self, environment: str, name: str) -> None:
        try:
            self._registry.release_pipeline_run(environment, name)
        except Exception:
            # The run record stays until this service's next start, which
            # releases every record of an execution that has ended.
            logger.exception("could not release the pipeline run of %s", name)

    def _load(self, name: str) -> execution_pb2.Execution:
        stored = self._store.get(name)
        if stored is None:
            raise NotFound(f"name: execution {short_name(name)!r} does not exist")
        return stored.execution


def _now() -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.GetCurrentTime()
    return stamp
