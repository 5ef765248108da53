"""The Node.js client in clients/node, written against the protos alone, drives
a real suite over TLS with a bearer token."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from support.step_code import write_step_code
from support.suite import running_suite

from stepforge import Input, Output
from stepforge.services.core.tls import TlsSettings, ensure_self_signed

ROOT = Path(__file__).resolve().parents[3]
NODE_CLIENT = ROOT / "clients" / "node"
NODE_TIMEOUT_S = 120
# The node tests that need the suite; each must report ok.
NODE_TESTS = (
    "lists the steps and finds the built step",
    "runs the pipeline and reads the printed line and the JSON output",
    "streams a file input in chunks and reads the file output back",
    "a wrong bearer token is refused as UNAUTHENTICATED",
)


def test_the_node_client_runs_a_pipeline_over_tls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = _node()
    tls = TlsSettings(ensure_self_signed(tmp_path / "tls"))
    # running_suite's own SDK reads the CA from the environment.
    monkeypatch.setenv("STEPFORGE_CA_CERT", str(tls.files.ca_cert))
    with running_suite(tmp_path / "data", tls=tls) as suite:
        assert suite.url.startswith("127.0.0.1:")
        code = write_step_code(tmp_path / "code")
        folder = {"local_folder": str(code)}
        suite.sdk.create_step(
            step_name="node_echo",
            function_path="steps.py",
            function_name="echo",
            container_config=folder,
            inputs=[Input("text", "string", is_required=True)],
            outputs=[Output("echoed", "string")],
        )
        suite.sdk.create_step(
            step_name="node_files",
            function_path="steps.py",
            function_name="seed_example",
            container_config=folder,
            inputs=[
                Input("input1", "string"),
                Input("input2", "file"),
                Input("input3", "number"),
            ],
            outputs=[Output("prediction", "file")],
        )
        suite.sdk.create_pipeline(pipeline_name="node-echo", step_name="node_echo")
        suite.sdk.create_pipeline(pipeline_name="node-files", step_name="node_files")
        environment = {
            **os.environ,
            "STEPFORGE_ENVIRONMENT_URL": f"grpcs://{suite.url}",
            "STEPFORGE_SDK_TOKEN": suite.token,
            "STEPFORGE_CA_CERT": str(tls.files.ca_cert),
            "STEPFORGE_NODE_TEST_STEP": "node_echo",
            "STEPFORGE_NODE_TEST_PIPELINE": "node-echo",
            "STEPFORGE_NODE_TEST_FILE_PIPELINE": "node-files",
        }
        result = subprocess.run(
            [node, "--test", "--test-reporter=tap", "clients/node/test/"],
            cwd=ROOT,
            env=environment,
            capture_output=True,
            text=True,
            timeout=NODE_TIMEOUT_S,
        )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert _count(output, "fail") == 0, output
    assert _count(output, "cancelled") == 0, output
    for name in NODE_TESTS:
        assert re.search(rf"^\s*ok \d+ - {re.escape(name)}$", output, re.M), output


def _node() -> str:
    if not (NODE_CLIENT / "node_modules").is_dir():
        pytest.fail("clients/node/node_modules is missing: run `make node-deps`")
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH: the Node.js client needs Node 20 or later")
    return node


def _count(tap: str, word: str) -> int:
    """A number from the closing summary of node's TAP report."""
    found = re.search(rf"^# {word} (\d+)$", tap, re.MULTILINE)
    assert found is not None, f"no '# {word}' line in node's report:\n{tap}"
    return int(found.group(1))
