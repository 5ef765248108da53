"""Chunked streaming to and from local files, shared by both stores."""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from stepforge.services.core.limits import CHUNK_BYTES

logger = logging.getLogger(__name__)


class ChunkReader(Iterator[bytes]):
    """Yields `read(chunk_size)` until it returns nothing, then closes the source.

    Closing also happens when iteration fails or the reader is dropped unfinished,
    so an abandoned download never leaks a file or a connection.
    """

    def __init__(
        self,
        read: Callable[[int], bytes],
        close: Callable[[], None],
        chunk_size: int = CHUNK_BYTES,
    ) -> None:
        check_chunk_size(chunk_size)
        self._read = read
        self._close: Callable[[], None] | None = close
        self._chunk_size = chunk_size

    def __iter__(self) -> ChunkReader:
        return self

    def __next__(self) -> bytes:
        if self._close is None:
            raise StopIteration
        try:
            data = self._read(self._chunk_size)
        except BaseException:
            self.close()
            raise
        if not data:
            self.close()
            raise StopIteration
        return data

    def close(self) -> None:
        close, self._close = self._close, None
        if close is not None:
            close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # a finalizer must not raise; the source is gone anyway
            logger.debug("closing an abandoned chunk reader failed", exc_info=True)


def check_chunk_size(chunk_size: int) -> None:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int):
        raise TypeError(f"chunk_size {chunk_size!r}: must be an int")
    if chunk_size <= 0:
        raise ValueError(f"chunk_size {chunk_size}: must be positive")


def spool(chunks: Iterable[bytes], folder: Path, stem: str) -> tuple[Path, int]:
    """Writes the chunks to a new temp file in `folder` and flushes it to disk.

    Returns the temp file and the byte count; on any failure the temp file is
    gone. The caller moves the file into place with `os.replace`, which is atomic
    because the temp file sits on the same filesystem as its destination.
    """
    temp = folder / f"{stem}.{secrets.token_hex(8)}.part"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    # 0o666 lets the process umask decide the final permissions, as for any file.
    fd = os.open(temp, flags, 0o666)
    try:
        with os.fdopen(fd, "wb") as out:
            size = 0
            for chunk in chunks:
                out.write(chunk)
                size += len(chunk)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return temp, size


def write_file_atomically(path: Path, chunks: Iterable[bytes]) -> int:
    """Replaces `path` with the chunks' content, whole or not at all."""
    temp, size = spool(chunks, path.parent, f".{path.name}")
    try:
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    sync_folder(path.parent)
    return size


def read_file_chunks(path: Path, chunk_size: int = CHUNK_BYTES) -> ChunkReader:
    """Opens `path` now and yields its content in chunks of at most `chunk_size`."""
    check_chunk_size(chunk_size)
    # The reader owns the file from here and closes it when done or dropped.
    file = open(path, "rb")
    return ChunkReader(file.read, file.close, chunk_size)


def sync_folder(folder: Path) -> None:
    """Makes a rename inside `folder` durable; a no-op where folders cannot sync."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
