from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

from stepforge.services.build.build_context import CONTEXT_PREFIX
from stepforge.services.build.garbage import collect_stale_build_contexts
from stepforge.services.core.object_store import LocalObjectStore


def test_build_contexts_older_than_their_urls_are_removed(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    source = tmp_path / "context.tar.gz"
    source.write_bytes(b"context")
    for name in ("stale", "fresh"):
        store.put_file(f"{CONTEXT_PREFIX}{name}.tar.gz", source)
    store.put_file("archives/old.tar.gz", source)
    two_hours_ago = time.time() - 7200
    for key in (f"{CONTEXT_PREFIX}stale.tar.gz", "archives/old.tar.gz"):
        os.utime(tmp_path / "objects" / key, (two_hours_ago, two_hours_ago))

    removed = collect_stale_build_contexts(store, timedelta(hours=1))

    assert removed == 1
    assert sorted(info.key for info in store.list()) == [
        "archives/old.tar.gz",
        f"{CONTEXT_PREFIX}fresh.tar.gz",
    ]
