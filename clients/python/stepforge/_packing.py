"""Packs the code of a step from a local folder into a deterministic tar.gz.

The archive is produced while it is sent: memory stays near two chunks
whatever the size of the files.
"""

from __future__ import annotations

import gzip
import logging
import os
import stat
import tarfile
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from stepforge._container_config import normalize_relative_path
from stepforge._rules import CHUNK_BYTES, MAX_CODE_BYTES
from stepforge.errors import (
    InvalidArgumentError,
    ResourceExhaustedError,
    StepforgeError,
)

logger = logging.getLogger(__name__)

# Folders of version control and caches, never code the step runs.
SKIPPED_NAMES = frozenset({".git", ".hg", ".svn", "__pycache__"})
SKIPPED_SUFFIXES = (".pyc",)

_LOCAL_FOLDER_FIELD = "container_config.local_folder"
_INCLUDED_FIELD = "container_config.included_folders"
_LARGEST_SHOWN = 5
# Files are read and compressed in pieces this small so that the compressed
# bytes waiting to be drained never pile up much beyond one chunk.
_READ_PIECE = 64 * 1024
_BLOCK = tarfile.BLOCKSIZE
_RECORD = tarfile.RECORDSIZE

_PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class PackedFile:
    """A file to pack: its path in the archive, where to read it, and its size."""

    relative_path: str
    absolute_path: Path
    size: int
    executable: bool = False


def select_files(
    folder: _PathLike,
    included: Sequence[str] | None,
    extra_files: Mapping[str, str | None],
) -> list[PackedFile]:
    """The files to pack from `folder`, sorted by path and without duplicates.

    `included` lists files and folders relative to `folder`; None packs the whole
    folder. `extra_files` maps a field name, such as
    `container_config.requirements_path`, to a file that must be packed too;
    None values are skipped. Version control folders, `__pycache__` and `*.pyc`
    are left out. A symbolic link is followed when it leads inside `folder`, and
    skipped with a warning when it leads outside.
    """
    root = Path(folder)
    if not root.is_dir():
        raise InvalidArgumentError.for_field(
            _LOCAL_FOLDER_FIELD, f"must be an existing folder, got {str(folder)!r}"
        )
    walker = _Walker(root)
    if included is None:
        walker.add_entry(".", _LOCAL_FOLDER_FIELD)
    else:
        for index, entry in enumerate(included):
            field = f"{_INCLUDED_FIELD}[{index}]"
            walker.add_entry(normalize_relative_path(entry, field), field)
    for field, relative in extra_files.items():
        if relative is not None:
            walker.add_file(normalize_relative_path(relative, field), field)
    return sorted(walker.selected.values(), key=lambda packed: packed.relative_path)


def check_code_size(files: Sequence[PackedFile]) -> None:
    """Raises ResourceExhaustedError when the files pass MAX_CODE_BYTES."""
    total = sum(packed.size for packed in files)
    if total <= MAX_CODE_BYTES:
        return
    largest = sorted(files, key=lambda packed: (-packed.size, packed.relative_path))
    listing = ", ".join(
        f"{packed.relative_path} ({packed.size:,} bytes)"
        for packed in largest[:_LARGEST_SHOWN]
    )
    raise ResourceExhaustedError.for_field(
        _LOCAL_FOLDER_FIELD,
        f"the step code is {total:,} bytes, over the limit of {MAX_CODE_BYTES:,} "
        f"bytes; the largest files are {listing}; list only what the step needs "
        f"in {_INCLUDED_FIELD}, and keep data out of the code",
    )


def require_packed(files: Sequence[PackedFile], function_path: str, field: str) -> None:
    """Raises InvalidArgumentError naming `field` unless `function_path` is packed."""
    normalized = normalize_relative_path(function_path, field)
    if not any(packed.relative_path == normalized for packed in files):
        raise InvalidArgumentError.for_field(
            field,
            f"{function_path!r} is not among the packed files: it must be a file "
            f"of the local folder, and inside {_INCLUDED_FIELD} when that is set",
        )


def iter_archive_chunks(
    files: Sequence[PackedFile], chunk_size: int = CHUNK_BYTES
) -> Iterator[bytes]:
    """Yields a tar.gz of `files` in chunks of at most `chunk_size` bytes.

    The same files give the same bytes: names are sorted, and times, owners and
    modes are fixed. Each file is read in pieces as the archive is produced.
    """
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    sink = _Sink()
    written = 0
    with gzip.GzipFile(fileobj=sink, mode="wb", compresslevel=6, mtime=0) as archive:
        for packed in sorted(files, key=lambda item: item.relative_path):
            header = _tar_header(packed)
            archive.write(header)
            written += len(header)
            for piece in _read_content(packed, min(chunk_size, _READ_PIECE)):
                archive.write(piece)
                yield from sink.drain(chunk_size)
            padding = -packed.size % _BLOCK
            archive.write(bytes(padding))
            written += packed.size + padding
            yield from sink.drain(chunk_size)
        # Two empty blocks end a tar archive; readers expect whole records.
        end = 2 * _BLOCK
        end += -(written + end) % _RECORD
        archive.write(bytes(end))
    yield from sink.drain(chunk_size, final=True)


class _Walker:
    """Collects files under a root, following symbolic links that stay inside."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.real_root = os.path.realpath(root)
        self.selected: dict[str, PackedFile] = {}

    def add_entry(self, relative: str, field: str) -> None:
        real = self._real_inside(relative, field)
        if os.path.isdir(real):
            self._walk(relative, real, frozenset())
        elif os.path.isfile(real):
            self._add(relative, real)
        else:
            raise InvalidArgumentError.for_field(
                field, f"{relative!r} is neither a file nor a folder"
            )

    def add_file(self, relative: str, field: str) -> None:
        real = self._real_inside(relative, field)
        if not os.path.isfile(real):
            raise InvalidArgumentError.for_field(
                field, f"{relative!r} must be a file of the local folder {self.root}"
            )
        self._add(relative, real)

    def _real_inside(self, relative: str, field: str) -> str:
        path = self.root / relative
        if not os.path.lexists(path):
            raise InvalidArgumentError.for_field(
                field,
                f"{relative!r} does not exist in the local folder {self.root} "
                "(a setting create_step is not given comes from the project)",
            )
        real = os.path.realpath(path)
        if not self._is_inside(real):
            raise InvalidArgumentError.for_field(
                field, f"{relative!r} leads outside the local folder {self.root}"
            )
        return real

    def _walk(self, relative: str, real_dir: str, ancestors: frozenset[str]) -> None:
        ancestors = ancestors | {real_dir}
        with os.scandir(real_dir) as scanned:
            entries = sorted(scanned, key=lambda entry: entry.name)
        for entry in entries:
            if entry.name in SKIPPED_NAMES:
                continue
            child = entry.name if relative == "." else f"{relative}/{entry.name}"
            real = os.path.join(real_dir, entry.name)
            if entry.is_symlink():
                real = os.path.realpath(real)
                if not self._is_inside(real):
                    logger.warning(
                        "Skipping %s: a symbolic link to %s, outside the local "
                        "folder %s",
                        child,
                        real,
                        self.root,
                    )
                    continue
            if os.path.isdir(real):
                if real in ancestors:
                    logger.warning(
                        "Skipping %s: a symbolic link to a folder that contains it",
                        child,
                    )
                    continue
                self._walk(child, real, ancestors)
            elif os.path.isfile(real):
                if not entry.name.endswith(SKIPPED_SUFFIXES):
                    self._add(child, real)
            else:
                logger.warning("Skipping %s: not a regular file or folder", child)

    def _add(self, relative: str, real: str) -> None:
        status = os.stat(real)
        self.selected[relative] = PackedFile(
            relative_path=relative,
            absolute_path=Path(real),
            size=status.st_size,
            executable=bool(status.st_mode & stat.S_IXUSR),
        )

    def _is_inside(self, real: str) -> bool:
        return os.path.commonpath([self.real_root, real]) == self.real_root


class _Sink:
    """Receives compressed bytes until the generator drains them as chunks."""

    def __init__(self) -> None:
        self._pieces: deque[bytes] = deque()
        self._size = 0

    def write(self, data: bytes) -> int:
        if data:
            self._pieces.append(bytes(data))
            self._size += len(data)
        return len(data)

    def flush(self) -> None:
        """Nothing to flush: drain() hands the bytes on."""

    def drain(self, chunk_size: int, final: bool = False) -> Iterator[bytes]:
        while self._size >= chunk_size or (final and self._size):
            # No local keeps a chunk alive while the consumer holds it.
            yield self._take(chunk_size)

    def _take(self, chunk_size: int) -> bytes:
        taken: list[bytes] = []
        wanted = min(chunk_size, self._size)
        while wanted:
            piece = self._pieces.popleft()
            if len(piece) > wanted:
                self._pieces.appendleft(piece[wanted:])
                piece = piece[:wanted]
            taken.append(piece)
            wanted -= len(piece)
        chunk = b"".join(taken)
        self._size -= len(chunk)
        return chunk


def _tar_header(packed: PackedFile) -> bytes:
    info = tarfile.TarInfo(packed.relative_path)
    info.size = packed.size
    info.mtime = 0
    info.mode = 0o755 if packed.executable else 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _read_content(packed: PackedFile, piece_size: int) -> Iterator[bytes]:
    remaining = packed.size
    with open(packed.absolute_path, "rb") as handle:
        while remaining:
            piece = handle.read(min(piece_size, remaining))
            if not piece:
                break
            remaining -= len(piece)
            yield piece
        # The header already promised `size` bytes; a file that changed since
        # it was selected would make the archive lie.
        if remaining or handle.read(1):
            raise StepforgeError(
                f"{packed.relative_path} changed while the step code was being "
                "packed; create the step again"
            )
