from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from stepforge.services.build.archive import ArchiveError, extract_archive


def _file(
    name: str, data: bytes = b"", mode: int = 0o644
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    return info, data


def _special(
    name: str, kind: bytes, linkname: str = "", mode: int = 0o755
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.mode = mode
    return info, b""


def _write(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


@pytest.fixture
def places(tmp_path: Path) -> tuple[Path, Path]:
    """A folder for archives and a separate one to extract into."""
    archives = tmp_path / "archives"
    archives.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    return archives / "code.tar.gz", out


def _rejects(archive: Path, out: Path, match: str, **limits: int) -> None:
    target = out / "code"
    with pytest.raises(ArchiveError, match=match):
        extract_archive(archive, target, **limits)
    assert list(out.iterdir()) == [], "a failed extraction left files behind"


def _tree(root: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        name = path.relative_to(root).as_posix()
        if path.is_symlink():
            found[name] = "-> " + os.readlink(path)
        elif path.is_dir():
            found[name] = "dir"
        else:
            found[name] = path.read_bytes().decode()
    return found


def test_good_archive_extracts_exactly(places: tuple[Path, Path]) -> None:
    archive, out = places
    _write(
        archive,
        [
            _special(".", tarfile.DIRTYPE),
            _file("./main.py", b"def run(): pass\n"),
            _file("pkg/__init__.py", b""),
            _file("pkg/helper.py", b"X = 1\n"),
            _special("empty", tarfile.DIRTYPE),
            _file("bin/tool.sh", b"#!/bin/sh\n", mode=0o755),
            _special("pkg/alias.py", tarfile.SYMTYPE, "helper.py"),
            _special("copy.py", tarfile.LNKTYPE, "main.py"),
        ],
    )
    target = out / "code"

    extract_archive(archive, target)

    assert _tree(target) == {
        "bin": "dir",
        "bin/tool.sh": "#!/bin/sh\n",
        "copy.py": "def run(): pass\n",
        "empty": "dir",
        "main.py": "def run(): pass\n",
        "pkg": "dir",
        "pkg/__init__.py": "",
        "pkg/alias.py": "-> helper.py",
        "pkg/helper.py": "X = 1\n",
    }
    assert (target / "pkg" / "alias.py").read_text() == "X = 1\n"
    assert stat.S_IMODE((target / "bin" / "tool.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((target / "main.py").stat().st_mode) == 0o644
    assert [p.name for p in out.iterdir()] == ["code"]


def test_special_permission_bits_are_dropped(places: tuple[Path, Path]) -> None:
    archive, out = places
    _write(
        archive,
        [
            _special("shared", tarfile.DIRTYPE, mode=0o3777),
            _file("shared/suid", b"x", mode=0o6755),
            _file("shared/sticky", b"x", mode=0o1777),
            _file("writable", b"x", mode=0o666),
        ],
    )
    target = out / "code"

    extract_archive(archive, target)

    assert stat.S_IMODE((target / "shared" / "suid").stat().st_mode) == 0o755
    assert stat.S_IMODE((target / "shared" / "sticky").stat().st_mode) == 0o755
    assert stat.S_IMODE((target / "writable").stat().st_mode) == 0o644
    assert stat.S_IMODE((target / "shared").stat().st_mode) & 0o7022 == 0


@pytest.mark.parametrize(
    ("member", "match"),
    [
        (_file("/etc/evil", b"x"), "absolute path"),
        (_file("../evil", b"x"), r"contains '\.\.'"),
        (_file("a/../../evil", b"x"), r"contains '\.\.'"),
        (_special("link", tarfile.SYMTYPE, "/etc/passwd"), "absolute path"),
        (_special("a/link", tarfile.SYMTYPE, "../../etc"), "leads outside"),
        (_special("hard", tarfile.LNKTYPE, "/etc/passwd"), "absolute path"),
        (_special("hard", tarfile.LNKTYPE, "../outside"), "leads outside"),
        (_special("hard", tarfile.LNKTYPE, "nowhere.py"), "not a regular file earlier"),
        (_special("tty", tarfile.CHRTYPE), "character device"),
        (_special("disk", tarfile.BLKTYPE), "block device"),
        (_special("pipe", tarfile.FIFOTYPE), "FIFO"),
    ],
    ids=[
        "absolute",
        "dotdot",
        "nested-dotdot",
        "symlink-absolute",
        "symlink-outside",
        "hardlink-absolute",
        "hardlink-outside",
        "hardlink-unknown",
        "char-device",
        "block-device",
        "fifo",
    ],
)
def test_unsafe_member_is_rejected(
    places: tuple[Path, Path],
    member: tuple[tarfile.TarInfo, bytes],
    match: str,
) -> None:
    archive, out = places
    _write(archive, [_file("ok.py", b"x = 1\n"), member])

    _rejects(archive, out, match)


def test_symlinks_that_escape_only_together_are_rejected(
    places: tuple[Path, Path],
) -> None:
    archive, out = places
    # Each link alone stays inside; once both exist, "up" leads to the parent.
    _write(
        archive,
        [
            _special("up", tarfile.SYMTYPE, "here/.."),
            _special("here", tarfile.SYMTYPE, "."),
        ],
    )

    _rejects(archive, out, "'up' is a symlink .* leads outside")


def test_member_inside_a_symlink_is_rejected(places: tuple[Path, Path]) -> None:
    archive, out = places
    _write(
        archive,
        [
            _special("sub", tarfile.DIRTYPE),
            _special("alias", tarfile.SYMTYPE, "sub"),
            _file("alias/file.py", b"x"),
        ],
    )

    _rejects(archive, out, "inside 'alias', which is not a folder")


def test_duplicate_member_is_rejected(places: tuple[Path, Path]) -> None:
    archive, out = places
    _write(archive, [_file("a.py", b"1"), _file("./a.py", b"2")])

    _rejects(archive, out, "'a.py' appears more than once")


def test_too_many_members_is_rejected(places: tuple[Path, Path]) -> None:
    archive, out = places
    _write(archive, [_file(f"f{i}.py", b"") for i in range(4)])

    _rejects(archive, out, "more than 3 members", max_members=3)


def test_inflation_bomb_is_rejected(places: tuple[Path, Path]) -> None:
    archive, out = places
    _write(archive, [_file("zeros.bin", bytes(32 * 1024 * 1024))])
    assert archive.stat().st_size < 100_000

    _rejects(
        archive, out, "more than 1000000 bytes.*'zeros.bin'", max_total_bytes=1_000_000
    )


def test_size_cap_applies_before_the_member_is_read(
    places: tuple[Path, Path],
) -> None:
    archive, out = places
    # A header that promises a terabyte followed by almost nothing: had the
    # content been read first, the stream would end early instead.
    info = tarfile.TarInfo("huge.bin")
    info.size = 10**12
    archive.write_bytes(gzip.compress(info.tobuf() + bytes(512)))

    _rejects(archive, out, "more than 5000000 bytes.*'huge.bin'")


def test_size_cap_counts_all_members_together(places: tuple[Path, Path]) -> None:
    archive, out = places
    _write(
        archive,
        [
            _file("a.bin", bytes(600)),
            _file("b.bin", bytes(600)),
            _special("c.bin", tarfile.LNKTYPE, "a.bin"),
        ],
    )

    _rejects(archive, out, "more than 1500 bytes.*'c.bin'", max_total_bytes=1500)


def test_not_a_gzip_file_is_rejected(places: tuple[Path, Path]) -> None:
    archive, out = places
    archive.write_bytes(b"just some text, not an archive")

    _rejects(archive, out, "not a valid .tar.gz")


def test_gzip_that_is_not_a_tar_is_rejected(places: tuple[Path, Path]) -> None:
    archive, out = places
    archive.write_bytes(gzip.compress(b"print('hello')\n" * 100))

    _rejects(archive, out, "not a valid .tar.gz")


def test_truncated_archive_is_rejected(places: tuple[Path, Path]) -> None:
    archive, out = places
    _write(archive, [_file("random.bin", os.urandom(50_000))])
    archive.write_bytes(archive.read_bytes()[:20_000])

    _rejects(archive, out, "not a valid .tar.gz")


def test_corrupted_archive_is_rejected(places: tuple[Path, Path]) -> None:
    archive, out = places
    _write(archive, [_file("random.bin", os.urandom(50_000))])
    damaged = bytearray(archive.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    archive.write_bytes(bytes(damaged))

    _rejects(archive, out, "not a valid .tar.gz")


def test_existing_target_is_left_alone(places: tuple[Path, Path]) -> None:
    archive, out = places
    _write(archive, [_file("a.py", b"new")])
    target = out / "code"
    target.mkdir()
    (target / "a.py").write_text("old")

    with pytest.raises(FileExistsError):
        extract_archive(archive, target)
    assert (target / "a.py").read_text() == "old"
