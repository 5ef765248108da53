"""Removing stored archives that no step refers to any more, and build
contexts that no build pod can fetch any more."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

from stepforge.services.build.build_context import CONTEXT_PREFIX
from stepforge.services.build.upload import ARCHIVE_PREFIX
from stepforge.services.core.object_store import ObjectStore
from stepforge.services.core.registry_client import RegistryClient

logger = logging.getLogger(__name__)


def collect_unreferenced_archives(
    store: ObjectStore, registry: RegistryClient, grace: timedelta
) -> int:
    """Deletes archives no step refers to, sparing those younger than `grace`:
    an upload stores its archive a moment before the registry records it."""
    referenced = registry.referenced_archives()
    cutoff = datetime.now(timezone.utc) - grace
    removed = 0
    for info in store.list(ARCHIVE_PREFIX):
        sha256 = info.key.removeprefix(ARCHIVE_PREFIX).removesuffix(".tar.gz")
        if sha256 in referenced or info.modified_time > cutoff:
            continue
        store.delete(info.key)
        removed += 1
    if removed:
        logger.info(
            "removed %d unreferenced archives from %s", removed, store.describe()
        )
    return removed


def collect_stale_build_contexts(store: ObjectStore, max_age: timedelta) -> int:
    """Deletes build contexts older than `max_age`, the life of the URLs that
    pods fetch them through: left by a build service that stopped while a
    build ran, since a build deletes its own context when it ends."""
    cutoff = datetime.now(timezone.utc) - max_age
    removed = 0
    for info in store.list(CONTEXT_PREFIX):
        if info.modified_time <= cutoff:
            store.delete(info.key)
            removed += 1
    if removed:
        logger.info(
            "removed %d stale build contexts from %s", removed, store.describe()
        )
    return removed
