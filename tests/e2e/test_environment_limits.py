"""Each environment's limits, set with the admin command, bind its executions."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from support.step_code import write_step_code
from support.suite import running_suite

from stepforge import Output


def test_limits_set_for_an_environment_apply_to_its_next_runs(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    code = write_step_code(tmp_path / "code")
    with running_suite(data_dir) as suite:
        suite.sdk.create_step(
            function_path="steps.py",
            function_name="rlimits",
            container_config={"local_folder": str(code)},
            outputs=[Output("memory", "number"), Output("open_files", "number")],
        )
        suite.sdk.create_pipeline(pipeline_name="rlimits", step_name="rlimits")
        before = suite.sdk.run_pipeline("rlimits")

        subprocess.run(
            [
                sys.executable, "-m", "stepforge.services.cli", "admin",
                "--data-dir", str(data_dir), "environments", "set-limits",
                "default", "default", "--open-files", "77",
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
        after = suite.sdk.run_pipeline("rlimits")

    assert before["outputs"]["open_files"] == 1024
    assert after["outputs"]["open_files"] == 77
