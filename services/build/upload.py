"""Receiving a streamed code archive: counted, hashed and capped while it flows."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from stepforge.services.core.errors import InvalidArgument, ResourceExhausted
from stepforge.services.core.limits import CHUNK_BYTES, MAX_CODE_BYTES
from stepforge.v1 import build_pb2


@dataclass(frozen=True)
class ReceivedArchive:
    path: Path
    sha256: str
    size: int


def receive_archive(
    requests: Iterator[build_pb2.CreateStepRequest],
    directory: Path,
    *,
    max_bytes: int = MAX_CODE_BYTES,
) -> ReceivedArchive:
    """Writes the archive chunks that follow the header to a private file.

    Reading stops at the first byte past `max_bytes`; on any error the partial
    file is removed, so nothing is left behind.
    """
    directory.mkdir(parents=True, exist_ok=True)
    descriptor, name = tempfile.mkstemp(dir=directory, suffix=".tar.gz.part")
    path = Path(name)
    digest = hashlib.sha256()
    size = 0
    try:
        with os.fdopen(descriptor, "wb") as file:
            for index, request in enumerate(requests, start=1):
                if request.WhichOneof("payload") != "archive_chunk":
                    raise InvalidArgument(
                        f"requests[{index}]",
                        "only the first message may hold the header",
                    )
                chunk = request.archive_chunk
                if len(chunk) > CHUNK_BYTES:
                    raise InvalidArgument(
                        f"requests[{index}].archive_chunk",
                        f"must be at most {CHUNK_BYTES} bytes",
                    )
                size += len(chunk)
                if size > max_bytes:
                    raise ResourceExhausted(
                        "archive_chunk",
                        f"the code archive exceeds the limit of {max_bytes:,} bytes; "
                        "select less with container_config.included_folders",
                    )
                digest.update(chunk)
                file.write(chunk)
            file.flush()
            os.fsync(file.fileno())
        if size == 0:
            raise InvalidArgument("archive_chunk", "the code archive is empty")
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return ReceivedArchive(path=path, sha256=digest.hexdigest(), size=size)


def archive_key(sha256: str) -> str:
    """Where an archive lives in the object store: named by its content."""
    return f"archives/sha256/{sha256}.tar.gz"


ARCHIVE_PREFIX = "archives/sha256/"
