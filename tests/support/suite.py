"""Starting the real suite for a test: in this process, or as `stepforge up`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stepforge import StepforgeSdk
from stepforge.services.config import ServerConfig
from stepforge.services.suite import RunningSuite, read_env_file, start

START_TIMEOUT_S = 30.0


@dataclass
class SuiteUnderTest:
    suite: RunningSuite
    sdk: StepforgeSdk
    token: str
    object_store_url: str
    # Signed in with the project's admin token, for project settings.
    admin_sdk: StepforgeSdk
    admin_token: str

    @property
    def url(self) -> str:
        return self.suite.url


@contextmanager
def running_suite(
    data_dir: Path, object_store_url: str | None = None, **settings: Any
) -> Iterator[SuiteUnderTest]:
    """The whole suite on a free loopback port, with an SDK signed in to it;
    `settings` are further ServerConfig fields."""
    config = ServerConfig(
        data_dir=data_dir, port=0, object_store_url=object_store_url, **settings
    )
    suite = start(config)
    try:
        assert suite.env_file is not None
        values = read_env_file(suite.env_file)
        url = values["STEPFORGE_ENVIRONMENT_URL"]
        sdk = StepforgeSdk(url, values["STEPFORGE_SDK_TOKEN"])
        admin_sdk = StepforgeSdk(url, values["STEPFORGE_ADMIN_TOKEN"])
        try:
            yield SuiteUnderTest(
                suite,
                sdk,
                values["STEPFORGE_SDK_TOKEN"],
                config.resolved_object_store_url(),
                admin_sdk,
                values["STEPFORGE_ADMIN_TOKEN"],
            )
        finally:
            sdk.close()
            admin_sdk.close()
    finally:
        suite.stop()


@dataclass
class SuiteProcess:
    process: subprocess.Popen[str]
    env: dict[str, str]
    # The last lines the suite printed, for a failing test to show.
    output: deque[str] = field(default_factory=lambda: deque(maxlen=200))

    def sdk(self, *, admin: bool = False) -> StepforgeSdk:
        """An SDK signed in as the env file says, trusting the suite's TLS."""
        return StepforgeSdk(
            self.env["STEPFORGE_ENVIRONMENT_URL"],
            self.env["STEPFORGE_ADMIN_TOKEN" if admin else "STEPFORGE_SDK_TOKEN"],
            ca_cert=self.env.get("STEPFORGE_CA_CERT"),
        )

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                return self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait(timeout=20)


@contextmanager
def suite_process(data_dir: Path, port: int, *extra: str) -> Iterator[SuiteProcess]:
    """`stepforge up` as a user runs it, stopped (then killed) at the end."""
    env_file = data_dir / "env"
    command = [
        sys.executable,
        "-m",
        "stepforge.services.cli",
        "up",
        "--data-dir",
        str(data_dir),
        "--port",
        str(port),
        *extra,
    ]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    handle = SuiteProcess(process, {})
    try:
        handle.env = _wait_for_env(process, env_file, port, handle.output)
        # The suite logs every request it accepts; a pipe nobody reads would
        # fill up and stop it at its next log line.
        drain = threading.Thread(
            target=_keep_tail, args=(process, handle.output), daemon=True
        )
        drain.start()
        yield handle
    finally:
        handle.stop()
        if process.stdout is not None:
            process.stdout.close()


def _keep_tail(process: subprocess.Popen[str], tail: deque[str]) -> None:
    assert process.stdout is not None
    try:
        for line in process.stdout:
            tail.append(line)
    except ValueError:
        return  # the pipe was closed while the suite stopped


def _wait_for_env(
    process: subprocess.Popen[str], env_file: Path, port: int, seen: deque[str]
) -> dict[str, str]:
    deadline = time.monotonic() + START_TIMEOUT_S
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        seen.append(line)
        if line.startswith("the project admin token is"):
            values = read_env_file(env_file)
            assert values["STEPFORGE_ENVIRONMENT_URL"].endswith(f":{port}")
            return values
    process.kill()
    raise AssertionError("stepforge up did not start:\n" + "".join(seen))
