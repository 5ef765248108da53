"""The SDK needs only grpcio and protobuf, and reads as Python 3.9."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from support.suite import running_suite
from uv import find_uv_bin

SDK_PACKAGE = Path(__file__).resolve().parents[3] / "clients" / "python" / "stepforge"

# Run in a virtual environment holding grpcio and protobuf only, with the SDK's
# source on its path: a full create_step, then the list of what got imported.
_SCRIPT = """
import json, sys
from importlib.metadata import distributions
from pathlib import Path
from stepforge import Input, Output, StepforgeSdk

folder = Path(sys.argv[1])
with StepforgeSdk() as sdk:
    step = sdk.create_step(
        function_path="src/entry.py",
        function_name="entry",
        container_config={"local_folder": str(folder)},
        inputs=[Input(name="x", data_type="json")],
        outputs=[Output(name="y", data_type="json")],
    )
    sdk.download_step_local_folder("entry", str(folder / "out"))
try:
    import stepforge.services
    services = "importable"
except ImportError:
    services = "absent"
print(json.dumps({
    "status": step["creation_info"]["status"],
    "downloaded": (folder / "out" / "entry.tgz").is_file(),
    "services": services,
    "installed": sorted(
        d.metadata["Name"].lower().replace("_", "-") for d in distributions()
    ),
}))
"""


@pytest.fixture(scope="module")
def sdk_only_python(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A Python with only grpcio and protobuf installed, and the SDK's source."""
    root = tmp_path_factory.mktemp("sdk-only")
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


def test_sdk_creates_a_step_with_only_grpcio_and_protobuf(
    sdk_only_python: tuple[Path, Path], tmp_path: Path
) -> None:
    python, source = sdk_only_python
    folder = tmp_path / "code"
    (folder / "src").mkdir(parents=True)
    (folder / "src" / "entry.py").write_text("def entry(x):\n    return {'y': x}\n")

    with running_suite(tmp_path / "data") as suite:
        finished = subprocess.run(
            [str(python), "-c", _SCRIPT, str(folder)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
            env={
                "PATH": os.environ["PATH"],
                "PYTHONPATH": str(source),
                "STEPFORGE_ENVIRONMENT_URL": suite.url,
                "STEPFORGE_SDK_TOKEN": suite.token,
            },
            check=False,
        )

    assert finished.returncode == 0, finished.stderr
    result = json.loads(finished.stdout.splitlines()[-1])
    assert result["status"] == "Ready"
    assert result["downloaded"] is True
    assert result["services"] == "absent"
    # grpcio brings typing-extensions along; nothing else may be there.
    assert result["installed"] == ["grpcio", "protobuf", "typing-extensions"]


def test_sdk_modules_parse_as_python_3_9() -> None:
    sources = sorted(SDK_PACKAGE.glob("*.py"))
    assert len(sources) > 5
    for path in sources:
        ast.parse(path.read_text(), filename=str(path), feature_version=(3, 9))
