"""The SDK needs only grpcio and protobuf, and reads as Python 3.9."""

from __future__ import annotations

import ast
import json
import os
import subprocess
from pathlib import Path

from support.sdk_only import SDK_PACKAGE
from support.suite import running_suite

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
