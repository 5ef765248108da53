"""Safe extraction of a step's code archive (a gzip-compressed tar).

Every member is checked before anything of it is written, sizes are counted
against the cap as the stream is read, and the result appears at the target
only once all of it was accepted.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import posixpath
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path
from typing import IO

from stepforge.services.core.limits import MAX_ARCHIVE_MEMBERS, MAX_CODE_BYTES

_CHUNK = 64 * 1024

# Decompressed bytes tolerated after the tar end marker: tar writers pad to a
# record size, anything much larger is not padding.
_MAX_TRAILING_BYTES = 1024 * 1024

_READ_ERRORS = (tarfile.TarError, gzip.BadGzipFile, EOFError, zlib.error)


class ArchiveError(ValueError):
    """The archive is not a well-formed, safe code archive."""


def extract_archive(
    archive_path: Path,
    target: Path,
    *,
    max_members: int = MAX_ARCHIVE_MEMBERS,
    max_total_bytes: int = MAX_CODE_BYTES,
) -> None:
    """Extracts the .tar.gz at `archive_path` into the new directory `target`.

    Raises ArchiveError naming the member and the rule it breaks; on any error
    nothing is left at `target`. `target` must not exist yet.
    """
    target = Path(target)
    if target.exists() or target.is_symlink():
        raise FileExistsError(f"extraction target {target} already exists")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        with open(archive_path, "rb") as raw:
            _Extraction(staging, max_members, max_total_bytes).run(raw)
        staging.chmod(0o755)
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


class _Extraction:
    """One pass over the archive stream into the staging directory."""

    def __init__(self, root: Path, max_members: int, max_total_bytes: int) -> None:
        self._root = root
        self._max_members = max_members
        self._max_total_bytes = max_total_bytes
        self._members = 0
        self._total_bytes = 0
        self._files: set[str] = set()
        self._dirs: set[str] = set()
        # Symlinks are made after every other member so that nothing is ever
        # written through a link taken from the archive.
        self._symlinks: list[tuple[str, str]] = []

    def run(self, raw: IO[bytes]) -> None:
        try:
            with gzip.GzipFile(fileobj=raw, mode="rb") as compressed:
                with tarfile.open(fileobj=compressed, mode="r|") as tar:
                    for member in tar:
                        self._extract(tar, member)
                # Reading to the end makes gzip verify its checksum and length.
                _drain(compressed)
        except _READ_ERRORS as exc:
            raise ArchiveError(
                f"the code archive is not a valid .tar.gz: {exc}"
            ) from exc
        self._make_symlinks()

    def _extract(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        self._members += 1
        if self._members > self._max_members:
            raise ArchiveError(
                f"the code archive has more than {self._max_members} members"
            )
        name = _member_name(member)
        if name is None:
            return
        if member.isdir():
            self._make_dir(name, member)
        elif member.issym():
            self._add_symlink(name, member)
        elif member.islnk():
            self._copy_hard_link(name, member)
        elif member.isreg() and not member.issparse():
            self._write_file(name, member, tar)
        else:
            raise ArchiveError(
                f"archive member {name!r} is a {_kind(member)}; only regular "
                "files, directories and links are allowed"
            )

    def _apply_data_filter(self, member: tarfile.TarInfo) -> None:
        # A second opinion from the standard library, asked after this
        # module's own checks so that their messages come first.
        try:
            tarfile.data_filter(member, str(self._root))
        except tarfile.FilterError as exc:
            raise ArchiveError(f"archive member {member.name!r}: {exc}") from exc

    def _make_dir(self, name: str, member: tarfile.TarInfo) -> None:
        if name in self._files:
            raise ArchiveError(f"archive member {name!r} is both a file and a folder")
        self._apply_data_filter(member)
        path = self._root / name
        self._make_parents(name)
        if not path.is_dir():
            path.mkdir(mode=0o755)
        self._dirs.add(name)

    def _write_file(
        self, name: str, member: tarfile.TarInfo, tar: tarfile.TarFile
    ) -> None:
        self._claim_file_name(name)
        self._reserve(name, member.size)
        self._apply_data_filter(member)
        source = tar.extractfile(member)
        if source is None:
            raise ArchiveError(f"archive member {name!r} has no readable content")
        with source, self._open_new(name, member.mode) as out:
            written = 0
            while chunk := source.read(_CHUNK):
                written += len(chunk)
                if written > member.size:
                    raise ArchiveError(
                        f"archive member {name!r} holds more than its declared size"
                    )
                out.write(chunk)

    def _copy_hard_link(self, name: str, member: tarfile.TarInfo) -> None:
        link = _normalized_link_target(name, member.linkname, hard=True)
        if link not in self._files:
            raise ArchiveError(
                f"archive member {name!r} is a hard link to {member.linkname!r}, "
                "which is not a regular file earlier in the archive"
            )
        self._claim_file_name(name)
        source_path = self._root / link
        self._reserve(name, source_path.stat().st_size)
        self._apply_data_filter(member)
        with (
            open(source_path, "rb") as source,
            self._open_new(name, member.mode) as out,
        ):
            shutil.copyfileobj(source, out, _CHUNK)

    def _add_symlink(self, name: str, member: tarfile.TarInfo) -> None:
        _normalized_link_target(name, member.linkname, hard=False)
        self._claim_file_name(name)
        self._apply_data_filter(member)
        self._symlinks.append((name, member.linkname))

    def _make_symlinks(self) -> None:
        for name, link_target in self._symlinks:
            self._make_parents(name)
            os.symlink(link_target, self._root / name)
        # Checked once all exist: a later link can change where an earlier
        # one leads, so only the finished tree says where each one ends up.
        root = os.path.realpath(self._root)
        for name, link_target in self._symlinks:
            resolved = os.path.realpath(self._root / name)
            if os.path.commonpath([root, resolved]) != root:
                raise ArchiveError(
                    f"archive member {name!r} is a symlink to {link_target!r}, "
                    "which leads outside the code folder"
                )

    def _claim_file_name(self, name: str) -> None:
        if name in self._files:
            raise ArchiveError(f"archive member {name!r} appears more than once")
        if name in self._dirs:
            raise ArchiveError(f"archive member {name!r} is both a file and a folder")
        self._files.add(name)

    def _reserve(self, name: str, size: int) -> None:
        self._total_bytes += size
        if self._total_bytes > self._max_total_bytes:
            raise ArchiveError(
                f"the code archive extracts to more than {self._max_total_bytes} "
                f"bytes (reached at member {name!r})"
            )

    def _make_parents(self, name: str) -> None:
        parent = posixpath.dirname(name)
        if not parent:
            return
        ancestors = _ancestors(parent)
        blocking = next((p for p in ancestors if p in self._files), None)
        if blocking is not None:
            raise ArchiveError(
                f"archive member {name!r} lies inside {blocking!r}, which is not "
                "a folder"
            )
        (self._root / parent).mkdir(mode=0o755, parents=True, exist_ok=True)
        self._dirs.update(ancestors)

    def _open_new(self, name: str, mode: int) -> IO[bytes]:
        self._make_parents(name)
        # Only the owner-execute bit carries over: setuid, setgid, sticky and
        # write access for others never do.
        permissions = 0o755 if mode & 0o100 else 0o644
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        descriptor = os.open(self._root / name, flags, permissions)
        os.fchmod(descriptor, permissions)
        return os.fdopen(descriptor, "wb")


def _member_name(member: tarfile.TarInfo) -> str | None:
    """The member's normalized relative name; None for the archive root."""
    raw = member.name
    if "\x00" in raw:
        raise ArchiveError(f"archive member {raw!r} has a NUL byte in its name")
    if raw.startswith("/") or posixpath.isabs(raw):
        raise ArchiveError(f"archive member {raw!r} has an absolute path")
    parts = [part for part in raw.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ArchiveError(f"archive member {raw!r} contains '..'")
    if not parts:
        if member.isdir():
            return None
        raise ArchiveError(f"archive member {raw!r} has an empty name")
    return "/".join(parts)


def _normalized_link_target(name: str, link_target: str, *, hard: bool) -> str:
    kind = "hard link" if hard else "symlink"
    if not link_target or link_target.startswith("/"):
        raise ArchiveError(
            f"archive member {name!r} is a {kind} to the absolute path {link_target!r}"
        )
    # Hard link targets name another member; symlink targets are relative to
    # the link's own folder.
    base = "" if hard else posixpath.dirname(name)
    joined = posixpath.normpath(posixpath.join(base, link_target))
    if joined == ".." or joined.startswith("../"):
        raise ArchiveError(
            f"archive member {name!r} is a {kind} to {link_target!r}, which "
            "leads outside the code folder"
        )
    return joined


def _ancestors(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def _kind(member: tarfile.TarInfo) -> str:
    if member.ischr():
        return "character device"
    if member.isblk():
        return "block device"
    if member.isfifo():
        return "FIFO"
    if member.issparse():
        return "sparse file"
    return f"member of unsupported type {member.type!r}"


def _drain(compressed: gzip.GzipFile) -> None:
    trailing = 0
    while chunk := compressed.read(_CHUNK):
        trailing += len(chunk)
        if trailing > _MAX_TRAILING_BYTES:
            raise ArchiveError("the code archive has unexpected data after its end")


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's content, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()
