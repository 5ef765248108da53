"""Where archives, file inputs/outputs and logs live: one interface, two stores."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

from stepforge.services.core.object_store.base import (
    InvalidKeyError,
    ObjectInfo,
    ObjectNotFoundError,
    ObjectStore,
    ObjectStoreError,
    ObjectStoreUnavailableError,
    PresigningStore,
)
from stepforge.services.core.object_store.local import LocalObjectStore
from stepforge.services.core.object_store.s3 import S3ObjectStore

__all__ = [
    "ACCESS_KEY_ENV",
    "SECRET_KEY_ENV",
    "InvalidKeyError",
    "LocalObjectStore",
    "ObjectInfo",
    "ObjectNotFoundError",
    "ObjectStore",
    "ObjectStoreError",
    "ObjectStoreUnavailableError",
    "PresigningStore",
    "S3ObjectStore",
    "open_object_store",
]

ACCESS_KEY_ENV = "STEPFORGE_S3_ACCESS_KEY"
SECRET_KEY_ENV = "STEPFORGE_S3_SECRET_KEY"

_S3_SCHEMES = ("s3", "minio")
_S3_FORM = "s3://ACCESS:SECRET@host:port/bucket[/prefix][?secure=...&region=...]"
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


def open_object_store(url: str) -> ObjectStore:
    """Opens the store that `url` names.

    `file:///abs/path` or a plain path is a local folder. A bucket is
    `s3://ACCESS:SECRET@host:port/bucket[/prefix]?secure=false&region=...`, with
    `minio://` as a synonym; percent-encode any ':', '/' or '@' in the keys. Keys
    absent from the URL come from STEPFORGE_S3_ACCESS_KEY and
    STEPFORGE_S3_SECRET_KEY.
    """
    if not isinstance(url, str) or not url.strip():
        raise ValueError("object store URL: must not be empty")
    if "://" not in url:
        return LocalObjectStore(Path(url))
    scheme = url.split("://", 1)[0].lower()
    if scheme == "file":
        return _open_local(url)
    if scheme in _S3_SCHEMES:
        return _open_s3(url)
    raise ValueError(
        f"object store URL {_redacted(url)!r}: the scheme must be file, s3 or minio"
    )


def _open_local(url: str) -> LocalObjectStore:
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost") or parts.query or parts.fragment:
        raise ValueError(
            f"object store URL {url!r}: a file URL must be file:///absolute/path, "
            "with no host, query or fragment"
        )
    path = unquote(parts.path)
    if not path.startswith("/"):
        raise ValueError(f"object store URL {url!r}: the path must be absolute")
    return LocalObjectStore(Path(path))


def _open_s3(url: str) -> S3ObjectStore:
    shown = _redacted(url)
    parts = urlsplit(url)
    if parts.fragment:
        raise ValueError(f"object store URL {shown!r}: must have no fragment")
    try:
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise ValueError(
            f"object store URL {shown!r}: the port must be a number from 0 to "
            "65535; percent-encode any ':', '/' or '@' in the keys"
        ) from exc
    if not host:
        raise ValueError(f"object store URL {shown!r}: must name a host, as {_S3_FORM}")
    endpoint = f"[{host}]" if ":" in host else host
    if port is not None:
        endpoint = f"{endpoint}:{port}"
    bucket, _, prefix = parts.path.lstrip("/").partition("/")
    if not bucket:
        raise ValueError(
            f"object store URL {shown!r}: the path must start with the bucket, "
            f"as {_S3_FORM}"
        )
    options = _s3_options(parts, shown)
    return S3ObjectStore(
        endpoint,
        _credential(parts.username, ACCESS_KEY_ENV, "access key", shown),
        _credential(parts.password, SECRET_KEY_ENV, "secret key", shown),
        bucket,
        secure=options.get("secure") == "true",
        region=options.get("region"),
        prefix=prefix,
    )


def _s3_options(parts: SplitResult, shown: str) -> dict[str, str]:
    options: dict[str, str] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name not in ("secure", "region"):
            raise ValueError(
                f"object store URL {shown!r}: unknown option {name!r}; the options "
                "are secure and region"
            )
        if name in options:
            raise ValueError(f"object store URL {shown!r}: option {name!r} repeats")
        if name == "secure":
            lowered = value.lower()
            if lowered not in _TRUE | _FALSE:
                raise ValueError(
                    f"object store URL {shown!r}: option secure must be true or "
                    f"false, not {value!r}"
                )
            value = "true" if lowered in _TRUE else "false"
        elif not value:
            raise ValueError(f"object store URL {shown!r}: option region is empty")
        options[name] = value
    return options


def _credential(in_url: str | None, env_name: str, what: str, shown: str) -> str:
    if in_url:
        return unquote(in_url)
    from_env = os.environ.get(env_name, "")
    if not from_env:
        raise ValueError(
            f"object store URL {shown!r}: no {what}; put it in the URL, as "
            f"{_S3_FORM}, or set {env_name}"
        )
    return from_env


def _redacted(url: str) -> str:
    """The URL without its credentials, fit for messages and logs."""
    scheme, sep, rest = url.partition("://")
    # The last '@' before the query ends the credentials even when an unescaped
    # '/' inside the secret has already broken the URL apart.
    head, mark, query = rest.partition("?")
    if "@" in head:
        head = "***@" + head.rpartition("@")[2]
    return f"{scheme}{sep}{head}{mark}{query}"
