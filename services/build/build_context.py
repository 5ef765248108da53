"""The build context of a step image: a tar.gz that is the same bytes for the
same content, and the hash of that content, which names the image."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, cast

from stepforge.services.build.dockerfile import (
    CONTEXT_DIR,
    CONTEXT_DOCKERFILE,
    ImageRecipe,
)

# 2000-01-01: a fixed time for every member, so the same content gives the
# same bytes, and one late enough for the zip files that packaging tools build
# from the code (zip cannot hold times before 1980).
MEMBER_MTIME = 946_684_800

_FORMAT_VERSION = b"stepforge-image-context-v1\n"

# Where contexts wait in the object store for their build pod to fetch them.
CONTEXT_PREFIX = "build-contexts/"


@dataclass(frozen=True)
class BuildContext:
    path: Path
    # sha256 over the uncompressed context: the Dockerfile, the suite's
    # scripts and every file of the code, with their names and modes.
    content_sha256: str
    size: int


def write_build_context(
    recipe: ImageRecipe,
    code_root: Path,
    scripts: Mapping[str, bytes],
    target: Path,
) -> BuildContext:
    """Writes the context of `recipe` to `target`: the Dockerfile and
    `scripts` under the suite's folder, the code at `recipe.code_dir`."""
    digest = hashlib.sha256(_FORMAT_VERSION)
    with open(target, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as packed:
            sink = _HashingWriter(packed, digest)
            with tarfile.open(
                fileobj=cast(IO[bytes], sink), mode="w|", format=tarfile.PAX_FORMAT
            ) as tar:
                _add_directory(tar, CONTEXT_DIR)
                _add_bytes(tar, CONTEXT_DOCKERFILE, recipe.dockerfile, 0o644)
                for name in sorted(scripts):
                    _add_bytes(tar, f"{CONTEXT_DIR}/{name}", scripts[name], 0o644)
                _add_code(tar, recipe, code_root)
    return BuildContext(target, digest.hexdigest(), target.stat().st_size)


def _add_code(tar: tarfile.TarFile, recipe: ImageRecipe, code_root: Path) -> None:
    prefix = f"{recipe.code_dir}/" if recipe.code_dir else ""
    if recipe.code_dir:
        _add_directory(tar, recipe.code_dir)
    for relative, path in _walk(code_root):
        if relative in recipe.replaced:
            _add_bytes(tar, prefix + relative, recipe.replaced[relative], 0o644)
        else:
            _add_path(tar, prefix + relative, path)


class _HashingWriter:
    """Passes writes on, hashing what goes through."""

    def __init__(self, out: gzip.GzipFile, digest: hashlib._Hash) -> None:
        self._out = out
        self._digest = digest

    def write(self, data: bytes) -> int:
        self._digest.update(data)
        return self._out.write(data)


def _walk(root: Path) -> Iterator[tuple[str, Path]]:
    """Every entry below `root`, in name order, with its '/'-separated name."""
    for directory, folders, files in os.walk(root):
        folders.sort()
        base = Path(directory)
        entries = sorted(
            [(name, True) for name in folders] + [(name, False) for name in files]
        )
        for name, _ in entries:
            path = base / name
            yield path.relative_to(root).as_posix(), path


def _add_path(tar: tarfile.TarFile, name: str, path: Path) -> None:
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode):
        member = _member(name, tarfile.SYMTYPE, 0o777)
        member.linkname = os.readlink(path)
        tar.addfile(member)
    elif stat.S_ISDIR(info.st_mode):
        _add_directory(tar, name)
    elif stat.S_ISREG(info.st_mode):
        mode = 0o755 if info.st_mode & stat.S_IXUSR else 0o644
        member = _member(name, tarfile.REGTYPE, mode)
        member.size = info.st_size
        with open(path, "rb") as content:
            tar.addfile(member, content)
    else:
        raise ValueError(f"{name!r} in the step's code is not a file or a folder")


def _add_directory(tar: tarfile.TarFile, name: str) -> None:
    tar.addfile(_member(name, tarfile.DIRTYPE, 0o755))


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    member = _member(name, tarfile.REGTYPE, mode)
    member.size = len(data)
    tar.addfile(member, io.BytesIO(data))


def _member(name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.type = kind
    member.mode = mode
    member.mtime = MEMBER_MTIME
    member.uid = member.gid = 0
    member.uname = member.gname = "root"
    return member
