"""A step's folder run straight by the runner script, as the executor would."""

from __future__ import annotations

import glob
import json
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from stepforge.services.execution import runner

RUNNER = Path(runner.__file__)
PYTHON_38 = sorted(glob.glob("/root/.pyenv/versions/3.8.*/bin/python3.8"))


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str
    result: Any

    @property
    def outputs(self) -> dict[str, Any]:
        assert self.result["status"] == "succeeded", (self.result, self.stderr)
        outputs: dict[str, Any] = self.result["outputs"]
        return outputs

    @property
    def reason(self) -> str:
        assert self.returncode == 1, self.stderr
        assert self.result["status"] == "failed", self.result
        reason: str = self.result["reason"]
        return reason


class StepDir:
    """A step's code folder plus everything the executor would hand the runner."""

    def __init__(self, root: Path, python: str) -> None:
        self.root = root
        self.python = python
        self.code = root / "code"
        self.output_dir = root / "out"
        self.result_path = root / "result.json"
        self.spec_path = root / "spec.json"
        self.code.mkdir()
        self.output_dir.mkdir()

    def write(self, relative: str, source: str) -> Path:
        path = self.code / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
        return path

    def spec(self, **fields: Any) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "function_path": "step.py",
            "function_name": "run",
            "inputs": {},
            "outputs": [],
            "output_dir": str(self.output_dir),
            "result_path": str(self.result_path),
            "max_json_bytes": 60000,
        }
        spec.update(fields)
        return spec

    def run(
        self,
        spec: dict[str, Any] | None = None,
        *,
        launcher: Sequence[str] = (),
        **fields: Any,
    ) -> Outcome:
        """Runs the runner on `spec` (or `spec(**fields)`), started through
        `launcher` when one is given."""
        self.spec_path.write_text(json.dumps(spec or self.spec(**fields)))
        completed = subprocess.run(
            [*launcher, self.python, "-u", str(RUNNER), str(self.spec_path)],
            cwd=self.code,
            capture_output=True,
            text=True,
            timeout=60,
        )
        result = None
        if self.result_path.exists():
            result = json.loads(self.result_path.read_text())
        return Outcome(completed.returncode, completed.stdout, completed.stderr, result)


StepT = TypeVar("StepT", bound=StepDir)


def step_for_param(
    request: pytest.FixtureRequest, root: Path, kind: type[StepT]
) -> StepT:
    """A `kind` folder in `root` for the fixture's param: "host" runs this
    interpreter, "python3.8" the oldest Python a step may choose."""
    if request.param == "host":
        return kind(root, sys.executable)
    if not PYTHON_38:
        pytest.skip("pyenv has no Python 3.8 here")
    return kind(root, PYTHON_38[-1])
