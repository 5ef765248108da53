from __future__ import annotations

import io
import logging
import os
import random
import tarfile
import tracemalloc
from pathlib import Path

import pytest

from stepforge._packing import (
    PackedFile,
    check_code_size,
    iter_archive_chunks,
    require_packed,
    select_files,
)
from stepforge._rules import CHUNK_BYTES, MAX_CODE_BYTES
from stepforge.errors import (
    InvalidArgumentError,
    ResourceExhaustedError,
    StepforgeError,
)

_NO_EXTRA: dict[str, str | None] = {}


def _write(root: Path, relative: str, content: bytes = b"x") -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def _paths(files: list[PackedFile]) -> list[str]:
    return [packed.relative_path for packed in files]


def _archive(files: list[PackedFile], chunk_size: int = CHUNK_BYTES) -> bytes:
    return b"".join(iter_archive_chunks(files, chunk_size))


def _extract(archive: bytes, destination: Path) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as opened:
        opened.extractall(destination, filter="data")
    return {
        path.relative_to(destination).as_posix(): path.read_bytes()
        for path in destination.rglob("*")
        if path.is_file()
    }


@pytest.fixture
def code(tmp_path: Path) -> Path:
    root = tmp_path / "code"
    _write(root, "requirements.txt", b"numpy\n")
    _write(root, "src/step.py", b"def main():\n    return {}\n")
    _write(root, "src/pkg/util.py", b"VALUE = 1\n")
    _write(root, "src/pkg/util.pyc", b"\0compiled")
    _write(root, "src/__pycache__/step.cpython-311.pyc", b"\0compiled")
    _write(root, ".git/HEAD", b"ref: refs/heads/main\n")
    _write(root, ".hg/store", b"x")
    _write(root, ".svn/entries", b"x")
    _write(root, "data/big.csv", b"a,b\n" * 10)
    return root


def test_whole_folder_is_selected_without_vcs_and_caches(code: Path) -> None:
    files = select_files(code, None, _NO_EXTRA)
    assert _paths(files) == [
        "data/big.csv",
        "requirements.txt",
        "src/pkg/util.py",
        "src/step.py",
    ]
    step = files[-1]
    assert step.absolute_path == (code / "src/step.py").resolve()
    assert step.size == len(b"def main():\n    return {}\n")


def test_included_entries_and_extra_files_are_merged_without_duplicates(
    code: Path,
) -> None:
    files = select_files(
        code,
        ["src/pkg", "./src/step.py", "src/pkg/util.py"],
        {
            "container_config.requirements_path": "requirements.txt",
            "container_config.dockerfile_path": None,
        },
    )
    assert _paths(files) == ["requirements.txt", "src/pkg/util.py", "src/step.py"]


def test_missing_included_entry_names_its_index(code: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="does not exist") as raised:
        select_files(code, ["src", "data", "missing"], _NO_EXTRA)
    field = raised.value.field_violations[0].field
    assert field == "container_config.included_folders[2]"


def test_missing_extra_file_names_its_field(code: Path) -> None:
    with pytest.raises(InvalidArgumentError) as raised:
        select_files(code, None, {"container_config.dockerfile_path": "Dockerfile"})
    assert str(raised.value).startswith("container_config.dockerfile_path:")
    assert "'Dockerfile' does not exist" in str(raised.value)


def test_extra_file_that_is_a_folder_is_rejected(code: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="must be a file") as raised:
        select_files(code, None, {"container_config.requirements_path": "src"})
    assert raised.value.field_violations[0].field == (
        "container_config.requirements_path"
    )


def test_unsafe_included_path_is_rejected_before_reading(code: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="without '..'"):
        select_files(code / "src", ["../requirements.txt"], _NO_EXTRA)


def test_missing_local_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError) as raised:
        select_files(tmp_path / "nowhere", None, _NO_EXTRA)
    assert raised.value.field_violations[0].field == "container_config.local_folder"


def test_symlink_outside_the_folder_is_skipped_with_a_warning(
    code: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = _write(tmp_path, "outside/secret.txt", b"secret")
    (code / "src/leak.txt").symlink_to(secret)
    (code / "src/leak_dir").symlink_to(secret.parent, target_is_directory=True)
    with caplog.at_level(logging.WARNING, logger="stepforge._packing"):
        files = select_files(code, None, _NO_EXTRA)
    assert not any("leak" in path for path in _paths(files))
    assert all(packed.absolute_path.is_relative_to(code.resolve()) for packed in files)
    warned = " ".join(record.getMessage() for record in caplog.records)
    assert "src/leak.txt" in warned and "src/leak_dir" in warned


def test_included_entry_leading_outside_is_rejected(code: Path, tmp_path: Path) -> None:
    (code / "shared").symlink_to(_write(tmp_path, "elsewhere/lib.py").parent)
    with pytest.raises(InvalidArgumentError, match="leads outside") as raised:
        select_files(code, ["src", "shared"], _NO_EXTRA)
    assert raised.value.field_violations[0].field == (
        "container_config.included_folders[1]"
    )


def test_symlinks_inside_the_folder_are_followed_and_loops_end(
    code: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (code / "main.py").symlink_to(code / "src/step.py")
    (code / "lib").symlink_to(code / "src/pkg", target_is_directory=True)
    (code / "src/pkg/again").symlink_to(code / "src", target_is_directory=True)
    (code / "src/pkg/dangling.py").symlink_to(code / "gone.py")
    with caplog.at_level(logging.WARNING, logger="stepforge._packing"):
        files = select_files(code, None, _NO_EXTRA)
    paths = _paths(files)
    assert "main.py" in paths
    assert "lib/util.py" in paths
    # src/pkg/again leads back to src, which holds it: followed once from lib,
    # never from inside src itself.
    assert "lib/again/step.py" in paths
    assert "src/pkg/again/step.py" not in paths
    assert not any(path.endswith("dangling.py") for path in paths)
    assert "src/pkg/again" in caplog.text


def test_size_within_limit_passes() -> None:
    check_code_size([PackedFile("a.py", Path("/a.py"), MAX_CODE_BYTES)])


def test_size_over_limit_names_the_five_largest_files() -> None:
    sizes = [2_000_000, 1_500_000, 900_000, 400_000, 300_000, 200_000, 1]
    files = [
        PackedFile(f"file{index}.bin", Path(f"/file{index}.bin"), size)
        for index, size in enumerate(sizes)
    ]
    with pytest.raises(ResourceExhaustedError) as raised:
        check_code_size(files)
    message = str(raised.value)
    assert raised.value.code is None
    assert "5,300,001 bytes" in message
    assert "5,000,000 bytes" in message
    for index in range(5):
        assert f"file{index}.bin ({sizes[index]:,} bytes)" in message
    assert "file5.bin" not in message
    assert "container_config.included_folders" in message


def test_packing_is_deterministic_and_ignores_times(code: Path) -> None:
    files = select_files(code, None, _NO_EXTRA)
    first = _archive(files)
    os.utime(code / "src/step.py", (1_000_000, 1_000_000))
    assert _archive(select_files(code, None, _NO_EXTRA)) == first
    # gzip header bytes 4..8 hold its modification time.
    assert first[:2] == b"\x1f\x8b" and first[4:8] == bytes(4)


def test_archive_round_trips_to_exactly_the_selected_files(
    code: Path, tmp_path: Path
) -> None:
    _write(code, "src/" + "long_name_" * 12 + ".py", b"long")
    _write(code, "src/données_été.py", b"accents")
    _write(code, "src/empty.txt", b"")
    script = _write(code, "run.sh", b"#!/bin/sh\n")
    script.chmod(0o700)
    (code / "src/step.py").chmod(0o600)
    files = select_files(code, None, _NO_EXTRA)

    extracted = _extract(_archive(files, chunk_size=1000), tmp_path / "out")

    assert extracted == {
        packed.relative_path: packed.absolute_path.read_bytes() for packed in files
    }
    with tarfile.open(fileobj=io.BytesIO(_archive(files)), mode="r:gz") as opened:
        members = opened.getmembers()
    assert [member.name for member in members] == _paths(files)
    for member in members:
        assert member.isfile()
        assert (member.mtime, member.uid, member.gid) == (0, 0, 0)
        assert (member.uname, member.gname) == ("", "")
        assert member.mode == (0o755 if member.name == "run.sh" else 0o644)


def test_chunks_never_exceed_the_chunk_size(code: Path) -> None:
    _write(code, "data/noise.bin", random.Random(1).randbytes(50_000))
    files = select_files(code, None, _NO_EXTRA)
    chunks = list(iter_archive_chunks(files, chunk_size=4096))
    assert len(chunks) > 10
    assert all(0 < len(chunk) <= 4096 for chunk in chunks)
    assert all(len(chunk) == 4096 for chunk in chunks[:-1])


def test_large_incompressible_file_streams_in_bounded_memory(tmp_path: Path) -> None:
    size = 4 * 1024 * 1024
    _write(tmp_path, "model.bin", random.Random(2).randbytes(size))
    files = select_files(tmp_path, None, _NO_EXTRA)
    chunk_size = 256 * 1024

    chunk_sizes = []
    tracemalloc.start()
    try:
        for chunk in iter_archive_chunks(files, chunk_size):
            chunk_sizes.append(len(chunk))
            del chunk
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert len(chunk_sizes) >= size // chunk_size
    assert max(chunk_sizes) <= chunk_size
    assert sum(chunk_sizes) > size
    # About two chunks and the compressor's state; holding the file or the
    # archive whole would take more than 4 MiB.
    assert peak < 5 * chunk_size


def test_default_chunks_are_at_most_one_mebibyte(tmp_path: Path) -> None:
    _write(tmp_path, "model.bin", random.Random(3).randbytes(4_000_000))
    chunks = list(iter_archive_chunks(select_files(tmp_path, None, _NO_EXTRA)))
    assert len(chunks) >= 4
    assert all(len(chunk) <= CHUNK_BYTES for chunk in chunks)


def test_no_files_give_a_valid_empty_archive(tmp_path: Path) -> None:
    with tarfile.open(fileobj=io.BytesIO(_archive([])), mode="r:gz") as opened:
        assert opened.getmembers() == []


def test_file_changed_after_selection_fails_packing(code: Path) -> None:
    files = select_files(code, ["src/step.py"], _NO_EXTRA)
    _write(code, "src/step.py", b"def main():\n    return {'grown': True}\n")
    with pytest.raises(StepforgeError, match="src/step.py changed"):
        _archive(files)


def test_chunk_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="chunk_size"):
        next(iter_archive_chunks([], chunk_size=0))


def test_function_path_must_be_packed(code: Path) -> None:
    files = select_files(code, ["src"], _NO_EXTRA)
    require_packed(files, "./src/step.py", "function_path")
    with pytest.raises(
        InvalidArgumentError, match="not among the packed files"
    ) as raised:
        require_packed(files, "requirements.txt", "function_path")
    assert raised.value.field_violations[0].field == "function_path"
    with pytest.raises(InvalidArgumentError, match="relative"):
        require_packed(files, "/src/step.py", "function_path")
