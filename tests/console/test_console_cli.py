"""The console from the command line: beside `stepforge up`, and alone as
`stepforge console`."""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from console.console_client import ConsoleClient
from support.suite import SuiteProcess, suite_process
from support.waiting import eventually

from stepforge.services.console.command import (
    add_up_console_options,
    check_up_console_options,
    suite_settings,
)
from stepforge.services.console.settings import DEFAULT_PORT

_CONSOLE_URL = re.compile(r"(http://127\.0\.0\.1:\d+)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def printed_console_url(running: SuiteProcess) -> str:
    found: list[str] = []

    def seen() -> bool:
        for line in list(running.output):
            if line.startswith("web console on "):
                found.append(line.split()[-1])
                return True
        return False

    assert eventually(seen), "".join(running.output)
    return found[0]


def up_options(*flags: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_up_console_options(parser)
    return parser.parse_args(list(flags))


@contextmanager
def console_process(*flags: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`stepforge console` with `flags`, and the URL it printed."""
    process = subprocess.Popen(
        [sys.executable, "-m", "stepforge.services.cli", "console", *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:
            found = _CONSOLE_URL.search(line)
            if line.startswith("stepforge console serving on") and found:
                yield process, found.group(1)
                break
        else:
            raise AssertionError("stepforge console did not start")
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)
        if process.stdout is not None:
            process.stdout.close()


def test_up_serves_the_console_and_prints_its_url(tmp_path: Path) -> None:
    console_port = free_port()

    with suite_process(
        tmp_path / "data", free_port(), "--console-port", str(console_port)
    ) as running:
        url = printed_console_url(running)
        client = ConsoleClient(url)
        signed_in = client.sign_in(running.env["STEPFORGE_SDK_TOKEN"])
        steps = client.get("/steps")

    assert url == f"http://127.0.0.1:{console_port}"
    assert signed_in.status == 303
    assert steps.status == 200
    assert "No steps in this environment yet" in steps.text
    assert "grpcs://127.0.0.1:" in steps.text  # the environment it reads


def test_up_refuses_a_console_port_that_is_taken(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        finished = subprocess.run(
            [
                sys.executable,
                "-m",
                "stepforge.services.cli",
                "up",
                "--data-dir",
                str(tmp_path / "data"),
                "--port",
                "0",
                "--console-port",
                str(port),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert finished.returncode == 2
    assert f"--console-port: cannot listen on 127.0.0.1:{port}" in finished.stderr


def test_up_runs_on_when_the_default_console_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            taken.bind(("127.0.0.1", DEFAULT_PORT))
            taken.listen()
        except OSError:
            pass  # something else holds it, which is what this test needs

        with suite_process(tmp_path / "data", free_port()) as running:
            assert eventually(
                lambda: any(
                    "web console did not start" in line for line in running.output
                )
            )
            with running.sdk() as sdk:
                assert sdk.list_steps() == []


def test_up_refuses_a_public_console_address_over_plain_http() -> None:
    args = up_options("--console-host", "0.0.0.0")

    with pytest.raises(ValueError, match="--console-host 0.0.0.0 is not a loopback"):
        check_up_console_options(args)


def test_up_without_a_console_has_no_console_settings() -> None:
    environment = {"STEPFORGE_ENVIRONMENT_URL": "grpcs://127.0.0.1:50051"}

    assert suite_settings(up_options("--no-console"), environment) is None
    settings = suite_settings(up_options("--console-port", "0"), environment)
    assert settings is not None and settings.port == 0


def test_the_console_command_serves_an_environment_elsewhere(tmp_path: Path) -> None:
    with suite_process(tmp_path / "data", free_port(), "--no-console") as running:
        with console_process(
            "--port",
            "0",
            "--environment-url",
            running.env["STEPFORGE_ENVIRONMENT_URL"],
            "--ca-cert",
            running.env["STEPFORGE_CA_CERT"],
        ) as (process, url):
            client = ConsoleClient(url)
            signed_in = client.sign_in(running.env["STEPFORGE_SDK_TOKEN"])
            pipelines = client.get("/pipelines")
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=20) == 0

    assert signed_in.status == 303
    assert pipelines.status == 200


def test_the_console_command_needs_an_environment_url() -> None:
    environment = {
        key: value
        for key, value in os.environ.items()
        if key != "STEPFORGE_ENVIRONMENT_URL"
    }

    finished = subprocess.run(
        [sys.executable, "-m", "stepforge.services.cli", "console", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment,
    )

    assert finished.returncode == 2
    assert "--environment-url: is required" in finished.stderr
