from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

from stepforge.services.build.interpreters import (
    default_pyenv_roots,
    exact_version,
    find_python,
    host_python,
)


def _fake_python(path: Path, reports: str) -> Path:
    """A script that answers the version probe like an interpreter would."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho '{reports}'\n")
    path.chmod(0o755)
    return path


def _pyenv_install(root: Path, install: str, reports: str) -> Path:
    minor = ".".join(install.split(".")[:2])
    return _fake_python(root / "versions" / install / "bin" / f"python{minor}", reports)


def test_newest_working_pyenv_patch_is_chosen(tmp_path: Path) -> None:
    root = tmp_path / "pyenv"
    _pyenv_install(root, "3.10.2", "(3, 10)")
    expected = _pyenv_install(root, "3.10.11", "(3, 10)")
    _pyenv_install(root, "3.10.20", "(3, 9)")
    _pyenv_install(root, "3.10.30t", "(3, 10)")
    _pyenv_install(root, "3.1.99", "(3, 1)")

    found = find_python("3.10", search_path=str(tmp_path / "empty"), pyenv_roots=[root])

    assert found == expected


def test_later_pyenv_root_is_searched_when_the_first_has_none(tmp_path: Path) -> None:
    first = tmp_path / "first"
    (first / "versions").mkdir(parents=True)
    second = tmp_path / "second"
    expected = _pyenv_install(second, "3.12.4", "(3, 12)")

    found = find_python("3.12", search_path="", pyenv_roots=[first, second])

    assert found == expected


def test_interpreter_on_the_search_path_comes_first(tmp_path: Path) -> None:
    root = tmp_path / "pyenv"
    _pyenv_install(root, "3.11.9", "(3, 11)")
    on_path = _fake_python(tmp_path / "bin" / "python3.11", "(3, 11)")

    found = find_python("3.11", search_path=str(tmp_path / "bin"), pyenv_roots=[root])

    assert found == on_path


def test_broken_interpreter_on_the_search_path_is_skipped(tmp_path: Path) -> None:
    root = tmp_path / "pyenv"
    expected = _pyenv_install(root, "3.9.1", "(3, 9)")
    shim = tmp_path / "bin" / "python3.9"
    shim.parent.mkdir()
    shim.write_text("#!/bin/sh\necho 'python3.9: command not found' >&2\nexit 127\n")
    shim.chmod(0o755)

    found = find_python("3.9", search_path=str(shim.parent), pyenv_roots=[root])

    assert found == expected


def test_missing_version_gives_none(tmp_path: Path) -> None:
    root = tmp_path / "pyenv"
    _pyenv_install(root, "3.10.2", "(3, 10)")

    assert find_python("3.99", search_path="", pyenv_roots=[root]) is None


def test_answer_is_kept_for_the_process(tmp_path: Path) -> None:
    root = tmp_path / "pyenv"
    script = _pyenv_install(root, "3.13.1", "(3, 13)")
    assert find_python("3.13", search_path="", pyenv_roots=[root]) == script

    script.unlink()

    assert find_python("3.13", search_path="", pyenv_roots=[root]) == script


def test_malformed_version_is_refused() -> None:
    with pytest.raises(ValueError, match="must look like 3.X"):
        find_python("python3.10")


def test_pyenv_root_variable_is_searched_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "custom"))

    assert default_pyenv_roots() == [tmp_path / "custom", Path.home() / ".pyenv"]


def test_real_pyenv_install_is_found() -> None:
    roots = default_pyenv_roots()
    if not any((root / "versions").glob("3.12.*") for root in roots):
        pytest.skip("no pyenv Python 3.12 on this machine")

    found = find_python("3.12", search_path="")

    assert found is not None
    assert exact_version(found).startswith("3.12.")


def test_host_python_is_the_base_interpreter() -> None:
    path, version = host_python()

    assert version == f"{sys.version_info.major}.{sys.version_info.minor}"
    if sys.prefix != sys.base_prefix:
        assert not path.is_relative_to(Path(sys.prefix))
    probe = subprocess.run(
        [str(path), "-c", "import sys; print(sys.prefix == sys.base_prefix)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "True"


def test_exact_version_of_the_host() -> None:
    path, _ = host_python()

    assert exact_version(path) == platform.python_version()


def test_pyenv_shim_on_the_search_path_is_skipped(tmp_path: Path) -> None:
    root = tmp_path / "pyenv"
    expected = _pyenv_install(root, "3.11.2", "(3, 11)")
    _fake_python(root / "shims" / "python3.11", "(3, 11)")

    found = find_python("3.11", search_path=str(root / "shims"), pyenv_roots=[root])

    assert found == expected
