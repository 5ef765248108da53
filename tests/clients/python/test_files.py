from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import pytest

from stepforge._files import write_atomically


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _failing_after(*chunks: bytes) -> Iterator[bytes]:
    yield from chunks
    raise OSError("the source broke")


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o027], ids=oct)
def test_written_file_gets_the_permissions_open_wb_gives(
    tmp_path: Path, set_umask: Callable[[int], None], mask: int
) -> None:
    target = tmp_path / "out.bin"
    reference = tmp_path / "reference.bin"
    set_umask(mask)

    write_atomically([b"a", b"b"], target)
    with open(reference, "wb"):
        pass

    assert _mode(target) == 0o666 & ~mask
    assert _mode(target) == _mode(reference)


def test_every_chunk_is_written_in_order_over_an_existing_target(
    tmp_path: Path,
) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"previous content, longer than the new one")

    write_atomically(iter([b"one ", b"", b"two ", b"three"]), target)

    assert target.read_bytes() == b"one two three"
    assert [path.name for path in tmp_path.iterdir()] == ["out.bin"]


def test_a_failed_write_leaves_an_existing_target_untouched(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"previous")

    with pytest.raises(OSError, match="the source broke"):
        write_atomically(_failing_after(b"partial"), target)

    assert target.read_bytes() == b"previous"
    assert [path.name for path in tmp_path.iterdir()] == ["out.bin"]


def test_a_failed_write_of_a_new_target_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="the source broke"):
        write_atomically(_failing_after(b"partial"), tmp_path / "out.bin")

    assert list(tmp_path.iterdir()) == []


def test_an_interrupted_write_leaves_nothing(tmp_path: Path) -> None:
    def interrupted() -> Iterator[bytes]:
        yield b"partial"
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomically(interrupted(), tmp_path / "out.bin")

    assert os.listdir(tmp_path) == []
