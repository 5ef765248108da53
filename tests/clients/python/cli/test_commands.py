"""The `stepforge` user commands, end to end against a real suite."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.step_code import write_step_code
from support.suite import SuiteUnderTest, running_suite
from support.waiting import eventually

from stepforge import Input, Output
from stepforge.cli import main

CLI_PACKAGE = Path(__file__).resolve().parents[4] / "clients/python/stepforge/cli"
SERVER_PACKAGES = ("grpc_health", "grpc_reflection", "grpc_status", "minio")

# grpc imports the health and reflection packages by itself when they are
# installed; what counts is what importing the CLI (and asking its help) adds.
_IMPORTED_MODULES = """
import contextlib, io, json, sys
import grpc
before = set(sys.modules)
from stepforge.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    main(["--help"])
added = sorted(set(sys.modules) - before)
print(json.dumps({"added": added, "all": sorted(sys.modules)}))
"""


@dataclass
class Outcome:
    status: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


class Cli:
    """Runs `stepforge ...` in this process, signed in to the suite."""

    def __init__(
        self, suite: SuiteUnderTest, capsys: pytest.CaptureFixture[str]
    ) -> None:
        self._suite = suite
        self._capsys = capsys

    def __call__(self, *argv: str) -> Outcome:
        self._capsys.readouterr()
        status = main([*argv, "--url", self._suite.url, "--token", self._suite.token])
        captured = self._capsys.readouterr()
        return Outcome(status, captured.out, captured.err)

    def ok(self, *argv: str) -> Outcome:
        outcome = self(*argv)
        assert outcome.status == 0, outcome.err
        assert outcome.err == "", "nothing, progress included, goes to a non-TTY"
        return outcome


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SuiteUnderTest]:
    """One suite for the module, with the pipelines its tests run."""
    root = tmp_path_factory.mktemp("cli")
    code = write_step_code(root / "code")
    steps = {
        "echo": (
            [
                Input("text", "string", is_required=True),
                Input("count", "number", default_value=1),
            ],
            [Output("echoed", "string")],
        ),
        "seed_example": (
            [
                Input("input1", "string", is_required=True),
                Input("input2", "file"),
                Input("input3", "number"),
            ],
            [Output("prediction", "file")],
        ),
        "sleeps": ([Input("seconds", "number"), Input("marker", "string")], []),
        "passthrough": ([Input("data", "json")], [Output("data", "json")]),
    }
    with running_suite(root / "data") as running:
        for function, (inputs, outputs) in steps.items():
            running.sdk.create_step(
                function_path="steps.py",
                function_name=function,
                container_config={"local_folder": str(code)},
                inputs=inputs,
                outputs=outputs,
            )
            if function != "passthrough":
                running.sdk.create_pipeline(function.replace("_", "-"), function)
        yield running


@pytest.fixture
def cli(suite: SuiteUnderTest, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(suite, capsys)


# Steps.


def test_steps_are_listed_read_downloaded_and_deleted(
    cli: Cli, suite: SuiteUnderTest, tmp_path: Path
) -> None:
    table = cli.ok("steps", "list").out.splitlines()
    assert table[0].split() == ["NAME", "STATUS", "ORIGIN", "FUNCTION", "UPDATED"]
    rows = {line.split()[0]: line.split() for line in table[1:]}
    assert rows["passthrough"][1:4] == ["Ready", "local", "steps.py:passthrough"]

    listed = cli.ok("steps", "list", "--json").json()
    assert {step["parameters"]["step_name"] for step in listed} >= {"echo", "sleeps"}
    assert set(listed[0]) == {"parameters", "container_config", "creation_info"}

    fields = cli.ok("steps", "get", "passthrough").out
    assert "function:" in fields and "steps.py:passthrough" in fields
    assert "data (json)" in fields
    got = cli.ok("steps", "get", "passthrough", "--json").json()
    assert got == suite.sdk.get_step("passthrough")

    downloaded = cli.ok("steps", "download", "passthrough", "--folder", str(tmp_path))
    assert downloaded.out.strip() == f"wrote {tmp_path / 'passthrough.tgz'}"
    with tarfile.open(tmp_path / "passthrough.tgz") as archive:
        assert "steps.py" in archive.getnames()

    deleted = cli.ok("steps", "delete", "passthrough", "--json").json()
    assert deleted == {"step_name": "passthrough", "deleted": True}
    assert suite.sdk.get_step("passthrough") is None
    missing = cli("steps", "get", "passthrough")
    assert missing.status == 1
    assert missing.err == "stepforge: step 'passthrough' does not exist\n"


def test_step_download_goes_to_the_current_folder_by_default(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    written = cli.ok("steps", "download", "echo", "--json").json()

    assert written == {"step_name": "echo", "path": "echo.tgz"}
    assert tarfile.is_tarfile(tmp_path / "echo.tgz")


# Pipelines.


def test_pipelines_are_created_listed_read_and_deleted(
    cli: Cli, suite: SuiteUnderTest
) -> None:
    created = cli.ok("pipelines", "create", "second-echo", "--step", "echo").out
    assert "name:       second-echo" in created
    assert "step:       echo" in created

    table = cli.ok("pipelines", "list").out.splitlines()
    assert table[0].split() == ["NAME", "STEP", "CREATED"]
    steps = {line.split()[0]: line.split()[1] for line in table[1:]}
    assert steps["second-echo"] == "echo"
    assert steps["seed-example"] == "seed_example"
    listed = cli.ok("pipelines", "list", "--json").json()
    by_name = {pipeline["pipeline_name"]: pipeline for pipeline in listed}
    assert by_name["second-echo"]["step_name"] == "echo"
    assert set(by_name["second-echo"]) == {"pipeline_name", "step_name", "created_at"}
    got = cli.ok("pipelines", "get", "second-echo", "--json").json()
    assert set(got) == {"pipeline_name", "step_name", "created_at"}
    assert got["step_name"] == "echo"

    assert cli.ok("pipelines", "delete", "second-echo").out == (
        "deleted pipeline second-echo\n"
    )
    assert suite.sdk.get_pipeline("second-echo") is None
    assert cli("pipelines", "get", "second-echo").status == 1


def test_an_unknown_step_exits_1_with_the_sdk_message(cli: Cli) -> None:
    outcome = cli("pipelines", "create", "orphan", "--step", "no-such-step")

    assert outcome.status == 1
    assert outcome.out == ""
    assert outcome.err.startswith("stepforge: ")
    assert "no-such-step" in outcome.err
    assert len(outcome.err.splitlines()) == 1


# Runs.


def test_run_sends_inputs_and_files_and_writes_file_outputs(
    cli: Cli, suite: SuiteUnderTest, tmp_path: Path
) -> None:
    data = tmp_path / "data.csv"
    data.write_text("a,b\n1,2\n")
    out = tmp_path / "out"

    shown = cli.ok(
        "run",
        "seed-example",
        "--input",
        "input1=abc",
        "--input",
        "input3=3",
        "--input-file",
        f"input2={data}",
        "--output-dir",
        str(out),
        "--json",
    ).json()

    assert set(shown) == {"execution_id", "outputs"}
    assert shown["outputs"] == {
        "prediction": {"path": str(out / "prediction"), "size_bytes": 8}
    }
    assert (out / "prediction").read_bytes() == b"A,B\n1,2\n"
    execution = suite.sdk.get_pipeline_execution(shown["execution_id"])
    # 3 parsed as JSON is the number, which a NUMBER input accepts.
    assert execution["inputs"]["input3"] == 3
    assert execution["inputs"]["input1"] == "abc"


def test_run_prints_outputs_for_people(cli: Cli, tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    data.write_bytes(b"xyz")

    text = cli.ok(
        "run",
        "seed-example",
        "--input",
        "input1=abc",
        "--input-file",
        f"input2={data}",
        "--output-dir",
        str(tmp_path),
    ).out

    lines = dict(line.split(": ", 1) for line in text.splitlines())
    assert lines["outputs.prediction"].strip() == f"{tmp_path / 'prediction'} (3 B)"
    assert (tmp_path / "prediction").read_bytes() == b"XYZ"


def test_run_inputs_are_json_when_they_parse_and_text_otherwise(cli: Cli) -> None:
    quoted = cli.ok("run", "echo", "--input", 'text="3"', "--input", "count=2")
    assert "outputs.echoed: 33" in quoted.out
    as_text = cli.ok("run", "echo", "--input", "text=ab c", "--json").json()
    assert as_text["outputs"] == {"echoed": "ab c"}

    number = cli("run", "echo", "--input", "text=3")

    assert number.status == 1
    assert "inputs.text" in number.err


def test_run_usage_errors_exit_2(cli: Cli) -> None:
    without_value = cli("run", "echo", "--input", "text")
    assert without_value.status == 2
    assert "give NAME=VALUE" in without_value.err

    twice = cli("run", "echo", "--input", "text=a", "--input-file", "text=f")
    assert twice.status == 2
    assert "input 'text' is given twice" in twice.err


def test_a_missing_input_file_names_the_input(cli: Cli, tmp_path: Path) -> None:
    outcome = cli(
        "run",
        "seed-example",
        "--input",
        "input1=a",
        "--input-file",
        f"input2={tmp_path / 'absent.csv'}",
    )

    assert outcome.status == 1
    assert outcome.err.startswith("stepforge: --input-file input2: cannot read")


def test_a_failed_run_exits_1_with_the_reason(cli: Cli, tmp_path: Path) -> None:
    outcome = cli(
        "run",
        "sleeps",
        "--input",
        "seconds=30",
        "--input",
        f"marker={tmp_path / 'pid'}",
        "--timeout",
        "0.5",
    )

    assert outcome.status == 1
    assert re.match(r"stepforge: execution \S+ failed: \S", outcome.err)


# Executions.


def test_an_execution_started_without_waiting_is_followed_and_read(
    cli: Cli, tmp_path: Path
) -> None:
    started = cli.ok(
        "run",
        "sleeps",
        "--no-wait",
        "--input",
        "seconds=0.5",
        "--input",
        f"marker={tmp_path / 'pid'}",
        "--json",
    ).json()
    assert started["outputs"] == {}
    execution_id = started["execution_id"]

    followed = cli.ok("executions", "logs", execution_id, "--follow", "--json")
    lines = [json.loads(line) for line in followed.out.splitlines()]
    assert set(lines[0]) == {"timestamp", "stream", "message"}
    assert lines[-1]["message"] == "execution succeeded"
    assert {"tick 0", "tick 4"} <= {line["message"] for line in lines}

    for_people = cli.ok("executions", "logs", execution_id).out.splitlines()
    assert any(line.split()[1:] == ["stdout", "tick", "4"] for line in for_people)
    assert cli.ok("executions", "logs", execution_id, "--json").json() == lines

    got = cli.ok("executions", "get", execution_id, "--json").json()
    assert set(got) == {
        "execution_id",
        "pipeline_name",
        "step_name",
        "status",
        "created_at",
        "started_at",
        "ended_at",
        "failure_reason",
        "inputs",
        "outputs",
        "gpu_devices",
    }
    assert got["status"] == "Succeeded"
    assert got["inputs"]["seconds"] == 0.5
    assert "status:" in cli.ok("executions", "get", execution_id).out

    table = cli.ok("executions", "list", "sleeps").out.splitlines()
    assert table[0].split() == ["ID", "STATUS", "CREATED", "ENDED", "FAILURE"]
    assert execution_id in {line.split()[0] for line in table[1:]}
    listed = cli.ok("executions", "list", "sleeps", "--json").json()
    assert execution_id in {item["execution_id"] for item in listed}


def test_a_running_execution_is_cancelled(cli: Cli, tmp_path: Path) -> None:
    marker = tmp_path / "pid"
    execution_id = cli.ok(
        "run",
        "sleeps",
        "--no-wait",
        "--input",
        "seconds=60",
        "--input",
        f"marker={marker}",
        "--json",
    ).json()["execution_id"]
    assert eventually(marker.exists)

    cancelled = cli.ok("executions", "cancel", execution_id, "--json").json()

    assert cancelled["execution_id"] == execution_id
    assert cancelled["status"] == "Cancelled"
    again = cli("executions", "cancel", execution_id)
    assert again.status == 1 and again.err.startswith("stepforge: ")


def test_execution_outputs_are_printed_or_written(cli: Cli, tmp_path: Path) -> None:
    echoed = cli.ok(
        "run", "echo", "--input", "text=ab", "--input", "count=2", "--json"
    ).json()
    data = tmp_path / "data.csv"
    data.write_bytes(b"abc")
    seeded = cli.ok(
        "run",
        "seed-example",
        "--input",
        "input1=a",
        "--input-file",
        f"input2={data}",
        "--output-dir",
        str(tmp_path / "run"),
        "--json",
    ).json()

    value = cli.ok("executions", "output", echoed["execution_id"], "echoed").json()
    assert value == "abab"

    target = tmp_path / "prediction.csv"
    written = cli.ok(
        "executions",
        "output",
        seeded["execution_id"],
        "prediction",
        "--to",
        str(target),
    )
    assert written.out.startswith(f"wrote {target}")
    assert target.read_bytes() == b"ABC"
    into_folder = cli.ok(
        "executions",
        "output",
        seeded["execution_id"],
        "prediction",
        "--to",
        str(tmp_path),
        "--json",
    ).json()
    assert into_folder == {
        "execution_id": seeded["execution_id"],
        "output_name": "prediction",
        "path": str(tmp_path / "prediction"),
        "size_bytes": 3,
    }

    unprinted = cli("executions", "output", seeded["execution_id"], "prediction")
    assert unprinted.status == 1
    assert unprinted.out == ""
    assert "--to: is required" in unprinted.err


# The command itself.


def test_the_console_command_runs_in_its_own_process(suite: SuiteUnderTest) -> None:
    finished = subprocess.run(
        [sys.executable, "-m", "stepforge.cli", "pipelines", "list", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **os.environ,
            "STEPFORGE_ENVIRONMENT_URL": suite.url,
            "STEPFORGE_SDK_TOKEN": suite.token,
        },
        check=False,
    )

    assert finished.returncode == 0, finished.stderr
    names = {item["pipeline_name"] for item in json.loads(finished.stdout)}
    assert {"echo", "seed-example", "sleeps"} <= names


def test_without_an_environment_the_url_is_asked_for(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STEPFORGE_ENVIRONMENT_URL", raising=False)

    status = main(["steps", "list", "--token", "t"])

    assert status == 1
    assert "--url: is required" in capsys.readouterr().err


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0

    listed = capsys.readouterr().out
    for command in ("steps", "pipelines", "run", "executions", "up", "serve"):
        assert f"\n    {command} " in listed or f"\n    {command}\n" in listed
    assert "admin" in listed and "demo" in listed


def test_server_commands_go_to_the_services_command(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--log-level", "WARNING", "serve", "--help"]) == 0

    assert capsys.readouterr().out.startswith("usage: stepforge serve")
    assert main(["up", "--port", "not-a-number"]) == 2
    assert "invalid int value" in capsys.readouterr().err


def test_importing_the_cli_imports_no_server_module() -> None:
    finished = subprocess.run(
        [sys.executable, "-c", _IMPORTED_MODULES],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    imported = json.loads(finished.stdout)
    assert "stepforge.cli._run" in imported["added"]
    assert _server_modules(imported["added"]) == []
    assert not any(
        name.startswith(("minio", "stepforge.services")) for name in imported["all"]
    )


def _run_sdk_only(
    python_and_source: tuple[Path, Path], *argv: str, **variables: str
) -> subprocess.CompletedProcess[str]:
    python, source = python_and_source
    return subprocess.run(
        [str(python), "-m", "stepforge.cli", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=source,
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(source), **variables},
        check=False,
    )


def test_the_cli_runs_where_only_grpcio_and_protobuf_are_installed(
    suite: SuiteUnderTest, sdk_only_python: tuple[Path, Path]
) -> None:
    finished = _run_sdk_only(
        sdk_only_python,
        "pipelines",
        "get",
        "echo",
        "--json",
        STEPFORGE_ENVIRONMENT_URL=suite.url,
        STEPFORGE_SDK_TOKEN=suite.token,
    )

    assert finished.returncode == 0, finished.stderr
    assert json.loads(finished.stdout)["step_name"] == "echo"


def test_a_server_command_without_the_services_says_what_is_missing(
    sdk_only_python: tuple[Path, Path],
) -> None:
    finished = _run_sdk_only(sdk_only_python, "up", "--port", "0")

    assert finished.returncode == 1
    assert "up needs the server's dependencies" in finished.stderr
    assert "stepforge[server]" in finished.stderr


def _server_modules(modules: list[str]) -> list[str]:
    return [
        name
        for name in modules
        if name.split(".")[0] in SERVER_PACKAGES or name.startswith("stepforge.serv")
    ]


def test_cli_modules_parse_as_python_3_9() -> None:
    sources = sorted(CLI_PACKAGE.glob("*.py"))
    assert len(sources) >= 8
    for path in sources:
        ast.parse(path.read_text(), filename=str(path), feature_version=(3, 9))
