"""Object metadata helpers: times, names, uids and owners."""

from __future__ import annotations

import copy
import random
import time
import uuid
from datetime import datetime, timezone
from typing import Any

# The characters Kubernetes draws generated name suffixes from (no vowels, so
# no words).
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_SUFFIX_LENGTH = 5

Obj = dict[str, Any]


def now() -> str:
    """The current time as Kubernetes writes most timestamps (seconds, UTC)."""
    return format_time(time.time())


def format_time(seconds: float) -> str:
    """`seconds` since the epoch as RFC 3339 in UTC, whole seconds."""
    moment = datetime.fromtimestamp(int(seconds), tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def format_time_ns(nanoseconds: int) -> str:
    """`nanoseconds` since the epoch as RFC 3339 with nanoseconds, as log
    timestamps are written."""
    seconds, fraction = divmod(nanoseconds, 1_000_000_000)
    moment = datetime.fromtimestamp(seconds, tz=timezone.utc)
    return f"{moment.strftime('%Y-%m-%dT%H:%M:%S')}.{fraction:09d}Z"


def parse_time(text: str) -> float:
    """Seconds since the epoch of an RFC 3339 time; ValueError if malformed."""
    cleaned = text.strip()
    if cleaned.endswith("Z"):
        cleaned = cleaned[:-1] + "+00:00"
    whole, dot, rest = cleaned.partition(".")
    if dot:
        # Python parses at most microseconds: drop the nanoseconds' tail.
        digits = "".join(ch for ch in rest if ch.isdigit())
        zone = rest[len(digits) :]
        cleaned = f"{whole}.{digits[:6].ljust(6, '0')}{zone}"
    return datetime.fromisoformat(cleaned).timestamp()


def new_uid() -> str:
    """A fresh object uid."""
    return str(uuid.uuid4())


def generated_name(prefix: str) -> str:
    """`prefix` plus a random suffix, as the API server expands generateName."""
    suffix = "".join(random.choices(_SUFFIX_ALPHABET, k=_SUFFIX_LENGTH))
    return prefix + suffix


def name_of(obj: Obj) -> str:
    """metadata.name."""
    name: str = obj["metadata"]["name"]
    return name


def controller_of(obj: Obj) -> Obj | None:
    """The ownerReference marked as controller, if any."""
    for owner in obj.get("metadata", {}).get("ownerReferences") or []:
        if owner.get("controller"):
            found: Obj = owner
            return found
    return None


def owner_reference(owner: Obj) -> Obj:
    """An ownerReference to `owner` that makes it the controller."""
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": name_of(owner),
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def is_deleting(obj: Obj) -> bool:
    """Whether deletion of `obj` has begun."""
    return bool(obj["metadata"].get("deletionTimestamp"))


def clone(obj: Obj) -> Obj:
    """A deep copy, so callers never share the store's dicts."""
    return copy.deepcopy(obj)
