"""A step cannot read what the services keep: tokens, keys, metadata, stored
files, other runs. It still has its own code, inputs and environment."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.step_code import write_step_code
from support.suite import running_suite

from stepforge import Input, Output
from stepforge.services.execution.sandbox import sandbox_available


@pytest.mark.skipif(
    not sandbox_available(),
    reason="this host lets no process make a mount namespace; steps then see "
    "the services' files, as SECURITY.md says",
)
def test_a_step_sees_none_of_the_services_files(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    code = write_step_code(tmp_path / "code")
    with running_suite(data_dir) as suite:
        suite.sdk.create_step(
            function_path="steps.py",
            function_name="peek",
            container_config={"local_folder": str(code)},
            inputs=[Input("paths", "array")],
            outputs=[Output("seen", "json")],
        )
        suite.sdk.create_pipeline(pipeline_name="peek", step_name="peek")
        secrets = [
            data_dir / "service-token",
            data_dir / "env",
            data_dir / "registry" / "registry.db",
            data_dir / "objects",
            data_dir / "build" / "code",
            data_dir / "execution" / "executions.db",
        ]
        seen = suite.sdk.run_pipeline(
            "peek", inputs={"paths": [str(path) for path in secrets] + ["steps.py"]}
        )["outputs"]["seen"]
        other_runs = suite.sdk.run_pipeline(
            "peek", inputs={"paths": [str(data_dir / "execution" / "runs")]}
        )["outputs"]["seen"]
        suite.sdk.create_step(
            function_path="steps.py",
            function_name="capabilities",
            container_config={"local_folder": str(code)},
            outputs=[Output("effective", "string"), Output("bounding", "string")],
        )
        suite.sdk.create_pipeline(pipeline_name="caps", step_name="capabilities")
        capabilities = suite.sdk.run_pipeline("caps")["outputs"]
        # The services themselves still see everything.
        assert (data_dir / "service-token").read_text().strip()

    for path in secrets:
        hidden = ("PermissionError", "FileNotFoundError", 0, [])
        assert seen[str(path)] in hidden, (path, seen[str(path)])
    assert seen["steps.py"] == len((code / "steps.py").read_bytes())
    assert len(other_runs[str(data_dir / "execution" / "runs")]) == 1
    # Not even a step run by root may unmount what hides the services' files.
    assert capabilities == {"effective": "0" * 16, "bounding": "0" * 16}
