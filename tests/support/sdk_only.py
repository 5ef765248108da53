"""A Python that has only the SDK's two dependencies, to prove it needs no more."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from uv import find_uv_bin

SDK_PACKAGE = Path(__file__).resolve().parents[2] / "clients" / "python" / "stepforge"


def make_sdk_only_python(root: Path) -> tuple[Path, Path]:
    """A virtual environment in `root` with only grpcio and protobuf installed
    (at this environment's versions), and a folder holding a copy of the SDK's
    source, CLI included, to put on its path."""
    uv = find_uv_bin()
    environment = {**os.environ, "UV_PYTHON_DOWNLOADS": "never", "NO_COLOR": "1"}
    subprocess.run(
        [uv, "venv", "--no-project", "--python", sys.executable, str(root / "venv")],
        check=True,
        capture_output=True,
        env=environment,
    )
    python = root / "venv" / "bin" / "python"
    pins = [f"{name}=={metadata.version(name)}" for name in ("grpcio", "protobuf")]
    subprocess.run(
        [uv, "pip", "install", "--python", str(python), *pins],
        check=True,
        capture_output=True,
        env=environment,
    )
    source = root / "source"
    shutil.copytree(
        SDK_PACKAGE, source / "stepforge", ignore=shutil.ignore_patterns("__pycache__")
    )
    return python, source
