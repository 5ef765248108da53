"""Local files written whole or not at all."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

# The flags and mode open(path, "wb") uses, plus O_EXCL so that a name taken
# meanwhile is never written over; the kernel applies the umask to the mode.
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
_CREATE_MODE = 0o666
_NAME_ATTEMPTS = 100


def write_atomically(chunks: Iterable[bytes], target: Path) -> None:
    """Writes the chunks to `target`, replacing it only once all are written.

    The file gets the permissions open(target, "wb") gives a new file. On any
    failure nothing partial is left behind and an existing target is untouched.
    """
    # Written beside the target and renamed, so a failed write leaves no
    # truncated file.
    part, descriptor = _create_beside(target)
    try:
        with open(descriptor, "wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
        os.replace(part, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(part)
        raise


def _create_beside(target: Path) -> tuple[Path, int]:
    for _ in range(_NAME_ATTEMPTS):
        part = target.with_name(f".{target.name}.{secrets.token_hex(6)}.part")
        try:
            return part, os.open(part, _CREATE_FLAGS, _CREATE_MODE)
        except FileExistsError:
            continue
    raise FileExistsError(f"no free name for a temporary file beside {target}")
