"""Removing execution files that no execution refers to any more: the inputs of
an upload a crash cut short, whose execution was never recorded."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

from stepforge.services.core.names import EXECUTIONS
from stepforge.services.core.object_store import ObjectStore
from stepforge.services.execution.store import ExecutionStore

logger = logging.getLogger(__name__)


def collect_orphan_files(
    objects: ObjectStore, store: ExecutionStore, grace: timedelta
) -> int:
    """Deletes files under `executions/` whose execution does not exist,
    sparing those younger than `grace`: an upload stores its files before the
    execution is recorded."""
    cutoff = datetime.now(timezone.utc) - grace
    removed = 0
    known: dict[str, bool] = {}
    for info in objects.list(f"{EXECUTIONS}/"):
        execution_id = info.key.split("/")[1]
        if execution_id not in known:
            known[execution_id] = store.get(f"{EXECUTIONS}/{execution_id}") is not None
        if known[execution_id] or info.modified_time > cutoff:
            continue
        objects.delete(info.key)
        removed += 1
    if removed:
        logger.info("removed %d files of executions that do not exist", removed)
    return removed
