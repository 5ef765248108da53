"""The object store in a local folder: the embedded default."""

from __future__ import annotations

import errno
import logging
import os
import stat as stat_mode
import uuid
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path

from stepforge.services.core.limits import CHUNK_BYTES
from stepforge.services.core.object_store.base import (
    ObjectInfo,
    ObjectNotFoundError,
    ObjectStoreError,
    ObjectStoreUnavailableError,
)
from stepforge.services.core.object_store.keys import (
    RESERVED_TOP_FOLDER,
    is_valid_key,
    validate_key,
    validate_prefix,
)
from stepforge.services.core.object_store.streams import (
    ChunkReader,
    check_chunk_size,
    read_file_chunks,
    spool,
    sync_folder,
    write_file_atomically,
)

logger = logging.getLogger(__name__)

# A concurrent delete may prune a folder between our mkdir and rename; a few
# retries settle that race.
_PLACE_ATTEMPTS = 5

_MISSING = (FileNotFoundError, NotADirectoryError, IsADirectoryError)


class LocalObjectStore:
    """Keys are files under `root`; unfinished writes live in `root/.tmp`."""

    def __init__(self, root: Path) -> None:
        self._root = Path(root).absolute()
        self._temp = self._root / RESERVED_TOP_FOLDER
        try:
            self._temp.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ObjectStoreUnavailableError(
                f"{self.describe()}: cannot create the folder {self._temp}: {exc}"
            ) from exc

    @property
    def root(self) -> Path:
        return self._root

    def describe(self) -> str:
        return f"local:{self._root}"

    def put_file(self, key: str, path: Path) -> None:
        target = self._path(key)
        with open(path, "rb") as source:
            self._store(key, target, iter(lambda: source.read(CHUNK_BYTES), b""))

    def move_file(self, key: str, path: Path) -> None:
        target = self._path(key)
        self._temp.mkdir(parents=True, exist_ok=True)
        temp = self._temp / f"move-{uuid.uuid4().hex}"
        try:
            os.rename(path, temp)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            # Another file system: copied, then the caller's file removed.
            self.put_file(key, path)
            Path(path).unlink(missing_ok=True)
            return
        try:
            with open(temp, "rb") as moved:
                os.fsync(moved.fileno())
            self._place(key, temp, target)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise

    def put_stream(self, key: str, chunks: Iterable[bytes]) -> int:
        return self._store(key, self._path(key), chunks)

    def iter_chunks(self, key: str, chunk_size: int = CHUNK_BYTES) -> Iterator[bytes]:
        return self._open(key, chunk_size)

    def download_file(self, key: str, path: Path) -> None:
        chunks = self._open(key, CHUNK_BYTES)
        try:
            write_file_atomically(Path(path), chunks)
        finally:
            chunks.close()

    def stat(self, key: str) -> ObjectInfo:
        target = self._path(key)
        try:
            info = os.stat(target)
        except _MISSING as exc:
            raise self._not_found(key) from exc
        if not stat_mode.S_ISREG(info.st_mode):
            raise self._not_found(key)
        return _object_info(key, info)

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except ObjectNotFoundError:
            return False
        return True

    def delete(self, key: str) -> None:
        target = self._path(key)
        try:
            os.unlink(target)
        except _MISSING:
            return
        except PermissionError:
            # Some systems answer EPERM, not EISDIR, when the key is a folder.
            if target.is_dir():
                return
            raise
        self._prune(target.parent)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return self._walk(self._root, "", validate_prefix(prefix))

    def _open(self, key: str, chunk_size: int) -> ChunkReader:
        target = self._path(key)
        check_chunk_size(chunk_size)
        try:
            return read_file_chunks(target, chunk_size)
        except _MISSING as exc:
            raise self._not_found(key) from exc

    def _store(self, key: str, target: Path, chunks: Iterable[bytes]) -> int:
        temp, size = spool(chunks, self._temp, "put")
        try:
            self._place(key, temp, target)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        logger.debug("stored %s (%d bytes) in %s", key, size, self.describe())
        return size

    def _place(self, key: str, temp: Path, target: Path) -> None:
        for attempt in range(1, _PLACE_ATTEMPTS + 1):
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
            except (FileExistsError, NotADirectoryError) as exc:
                raise self._clash(key) from exc
            try:
                os.replace(temp, target)
            except FileNotFoundError:
                if attempt == _PLACE_ATTEMPTS:
                    raise
                continue
            except IsADirectoryError as exc:
                # Only an empty folder, left by a crash or a racing delete, may go.
                try:
                    target.rmdir()
                except OSError:
                    raise self._clash(key) from exc
                if attempt == _PLACE_ATTEMPTS:
                    raise self._clash(key) from exc
                continue
            sync_folder(target.parent)
            return

    def _walk(self, folder: Path, folder_key: str, prefix: str) -> Iterator[ObjectInfo]:
        # Sorting folders by `name/` yields keys in exact key order while reading
        # one folder at a time, since every key under a folder starts with
        # `name/`; folders that cannot hold the prefix are never opened.
        try:
            entries = os.scandir(folder)
        except (FileNotFoundError, NotADirectoryError):
            return
        with entries:
            named = []
            for entry in entries:
                if not folder_key and entry.name == RESERVED_TOP_FOLDER:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    named.append((f"{folder_key}{entry.name}/", entry))
                elif entry.is_file(follow_symlinks=False):
                    named.append((f"{folder_key}{entry.name}", entry))
        for key, entry in sorted(named, key=lambda pair: pair[0]):
            if key.endswith("/"):
                if key.startswith(prefix) or prefix.startswith(key):
                    yield from self._walk(Path(entry.path), key, prefix)
                continue
            if not key.startswith(prefix) or not is_valid_key(key):
                continue
            try:
                info = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            yield _object_info(key, info)

    def _prune(self, folder: Path) -> None:
        """Removes folders that the delete left empty, up to the root."""
        while folder != self._root and self._root in folder.parents:
            try:
                folder.rmdir()
            except OSError:
                return
            folder = folder.parent

    def _path(self, key: str) -> Path:
        return self._root.joinpath(*validate_key(key).split("/"))

    def _not_found(self, key: str) -> ObjectNotFoundError:
        return ObjectNotFoundError(f"{self.describe()}: no object at key {key!r}")

    def _clash(self, key: str) -> ObjectStoreError:
        return ObjectStoreError(
            f"{self.describe()}: key {key!r} clashes with an existing key; a local "
            "store cannot hold both 'a' and keys under 'a/'"
        )


def _object_info(key: str, info: os.stat_result) -> ObjectInfo:
    modified = datetime.fromtimestamp(info.st_mtime, tz=timezone.utc)
    return ObjectInfo(key=key, size=info.st_size, modified_time=modified)
