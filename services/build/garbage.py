"""Removing stored archives that no step refers to any more."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

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
