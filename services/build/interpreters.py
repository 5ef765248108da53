"""Finding the Python interpreters installed on this host."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

_VERSION_PATTERN = re.compile(r"^3\.(\d+)$")
_PROBE_TIMEOUT_S = 10.0

_cache_lock = threading.Lock()
_found: dict[tuple[str, str | None, tuple[Path, ...]], Path | None] = {}
_exact: dict[Path, str] = {}


def find_python(
    version: str,
    *,
    search_path: str | None = None,
    pyenv_roots: Sequence[Path] | None = None,
) -> Path | None:
    """Finds a working interpreter for `version` ("3.X"), or None.

    Looks for `python3.X` on `search_path` (default: $PATH; pyenv shims
    skipped), then in pyenv-style installs `<root>/versions/3.X.*` newest
    patch first. Each candidate is run
    once to confirm its version; answers are kept for the life of the process.
    """
    if not _VERSION_PATTERN.match(version):
        raise ValueError(f"version {version!r} must look like 3.X")
    roots = tuple(default_pyenv_roots() if pyenv_roots is None else pyenv_roots)
    key = (version, search_path, roots)
    with _cache_lock:
        if key in _found:
            return _found[key]
    found = next(
        (c for c in _candidates(version, search_path, roots) if _runs_as(c, version)),
        None,
    )
    with _cache_lock:
        _found[key] = found
    return found


def host_python() -> tuple[Path, str]:
    """The interpreter this process runs on, outside any virtual environment,
    and its "3.X" version."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    base = getattr(sys, "_base_executable", "") or ""
    if base and Path(base).is_file():
        return Path(base), version
    for name in (f"python{version}", "python3"):
        candidate = Path(sys.base_prefix) / "bin" / name
        if candidate.is_file():
            return candidate, version
    return Path(sys.executable), version


def exact_version(python: Path) -> str:
    """The full "3.X.Y" version of the interpreter at `python`."""
    with _cache_lock:
        if python in _exact:
            return _exact[python]
    result = subprocess.run(
        [str(python), "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        timeout=_PROBE_TIMEOUT_S,
        check=True,
    )
    version = result.stdout.strip()
    with _cache_lock:
        _exact[python] = version
    return version


def default_pyenv_roots() -> list[Path]:
    """$PYENV_ROOT, then ~/.pyenv."""
    roots: list[Path] = []
    env_root = os.environ.get("PYENV_ROOT")
    if env_root:
        roots.append(Path(env_root))
    home_root = Path.home() / ".pyenv"
    if home_root not in roots:
        roots.append(home_root)
    return roots


def _candidates(
    version: str, search_path: str | None, roots: Sequence[Path]
) -> list[Path]:
    executable = f"python{version}"
    candidates: list[Path] = []
    on_path = shutil.which(executable, path=search_path)
    # A pyenv shim picks its interpreter from the caller's pyenv settings, so
    # the same path could mean another Python later; the installs behind it
    # are searched directly below.
    shims = [root / "shims" for root in roots]
    if on_path and Path(on_path).parent not in shims:
        candidates.append(Path(on_path))
    patch_pattern = re.compile(rf"^{re.escape(version)}\.(\d+)$")
    for root in roots:
        versions_dir = root / "versions"
        if not versions_dir.is_dir():
            continue
        installs = [
            (int(match.group(1)), entry)
            for entry in versions_dir.iterdir()
            if (match := patch_pattern.match(entry.name))
        ]
        for _, install in sorted(installs, key=lambda item: item[0], reverse=True):
            candidate = install / "bin" / executable
            if candidate.is_file() and candidate not in candidates:
                candidates.append(candidate)
    return candidates


def _runs_as(candidate: Path, version: str) -> bool:
    major, minor = version.split(".")
    try:
        result = subprocess.run(
            [str(candidate), "-c", "import sys; print(sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=_PROBE_TIMEOUT_S,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0 and result.stdout.strip() == f"({major}, {minor})"
