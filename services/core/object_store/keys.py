"""The key rules every object store enforces, so both stores accept the same keys."""

from __future__ import annotations

import re

from stepforge.services.core.object_store.base import InvalidKeyError

# The local store keeps unfinished writes in this top-level folder; S3 rejects it
# too so that a key valid on one store is valid on the other.
RESERVED_TOP_FOLDER = ".tmp"

MAX_KEY_CHARS = 1024
MAX_SEGMENT_CHARS = 255

_KEY_CHARS = re.compile(r"[A-Za-z0-9._/-]*")


def validate_key(key: str) -> str:
    """Returns `key` unchanged, or raises InvalidKeyError naming the broken rule."""
    if not isinstance(key, str):
        raise InvalidKeyError(f"key {key!r}: must be a string")
    if not key:
        raise InvalidKeyError("key '': must not be empty")
    shown = _shown(key)
    _check_common(key, "key")
    segments = key.split("/")
    if "" in segments:
        raise InvalidKeyError(
            f"key {shown}: must not hold an empty segment ('//' or a trailing '/')"
        )
    if "." in segments:
        raise InvalidKeyError(f"key {shown}: must not hold a '.' segment")
    if segments[0] == RESERVED_TOP_FOLDER:
        raise InvalidKeyError(
            f"key {shown}: the top folder {RESERVED_TOP_FOLDER!r} is reserved"
        )
    if any(len(segment) > MAX_SEGMENT_CHARS for segment in segments):
        raise InvalidKeyError(
            f"key {shown}: each segment must be at most {MAX_SEGMENT_CHARS} characters"
        )
    return key


def validate_prefix(prefix: str) -> str:
    """Returns `prefix` unchanged if some valid key could start with it."""
    if not isinstance(prefix, str):
        raise InvalidKeyError(f"prefix {prefix!r}: must be a string")
    if prefix:
        _check_common(prefix, "prefix")
        if "//" in prefix:
            raise InvalidKeyError(f"prefix {prefix!r}: must not hold '//'")
    return prefix


def is_valid_key(key: str) -> bool:
    try:
        validate_key(key)
    except InvalidKeyError:
        return False
    return True


def _check_common(text: str, field: str) -> None:
    shown = _shown(text)
    if len(text) > MAX_KEY_CHARS:
        raise InvalidKeyError(
            f"{field} {shown}: must be at most {MAX_KEY_CHARS} characters"
        )
    if not _KEY_CHARS.fullmatch(text):
        raise InvalidKeyError(
            f"{field} {shown}: may hold only letters, digits, '.', '_', '-' and '/'"
        )
    if text.startswith("/"):
        raise InvalidKeyError(f"{field} {shown}: must not start with '/'")
    if ".." in text:
        raise InvalidKeyError(f"{field} {shown}: must not hold '..'")


def _shown(text: str) -> str:
    """The text as a message quotes it, cut short so a huge key stays readable."""
    return repr(text) if len(text) <= 80 else repr(text[:80]) + "..."
