"""`kill -9` of the suite while a step's requirements install: after the
restart the build resumes from the stored archive and the step becomes Ready."""

from __future__ import annotations

import signal
import threading
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from support.s3_server import free_port
from support.suite import suite_process
from support.waiting import eventually

from stepforge import Input, StepforgeSdk


@contextmanager
def slow_package_index(
    folder: Path, delay_s: float
) -> Iterator[tuple[str, list[float]]]:
    """Serves `folder` on loopback, answering each request after `delay_s`;
    yields its URL and the times requests came."""
    requests: list[float] = []

    class Slow(SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(folder), **kwargs)

        def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
            requests.append(time.monotonic())
            time.sleep(delay_s)
            super().do_GET()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", requests
    finally:
        server.shutdown()
        server.server_close()


def _wheel(folder: Path) -> None:
    folder.mkdir(parents=True)
    info = "slowdep-1.0.dist-info"
    with zipfile.ZipFile(folder / "slowdep-1.0-py3-none-any.whl", "w") as archive:
        archive.writestr("slowdep.py", "VALUE = 1\n")
        archive.writestr(
            f"{info}/METADATA", "Metadata-Version: 2.1\nName: slowdep\nVersion: 1.0\n"
        )
        archive.writestr(
            f"{info}/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
            "Tag: py3-none-any\n",
        )
        archive.writestr(f"{info}/RECORD", "")


def test_a_build_a_crash_interrupts_resumes_after_the_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    port = free_port()
    wheels = tmp_path / "wheels"
    _wheel(wheels)
    code = tmp_path / "code"
    code.mkdir()
    (code / "main.py").write_text("import slowdep\n\ndef main(x):\n    return {}\n")

    with slow_package_index(wheels, delay_s=3.0) as (index, requests):
        (code / "requirements.txt").write_text(
            f"--no-index\n--find-links {index}\nslowdep==1.0\n"
        )
        with suite_process(data_dir, port) as first:
            sdk = first.sdk()
            creating = threading.Thread(
                target=_create_quietly, args=(sdk, code), daemon=True
            )
            creating.start()
            assert eventually(lambda: bool(requests), timeout_s=30)
            first.stop(signal.SIGKILL)
            sdk.close()
        assert len(requests) >= 1

        with suite_process(data_dir, port) as second:
            with second.sdk() as sdk:
                assert eventually(lambda: _status(sdk) != "Pending", timeout_s=60)
                step = sdk.get_step("main")
                log = sdk.get_step_build_log("main")

    assert step is not None and step["creation_info"]["status"] == "Ready", log
    assert "build resumed after a restart" in log


def _create_quietly(sdk: StepforgeSdk, code: Path) -> None:
    try:
        sdk.create_step(
            function_path="main.py",
            function_name="main",
            container_config={
                "local_folder": str(code),
                "requirements_path": "requirements.txt",
            },
            inputs=[Input("x", "number")],
        )
    except Exception:
        pass  # the suite is killed under it; the restart is what is tested


def _status(sdk: StepforgeSdk) -> str:
    step = sdk.get_step("main")
    return "Missing" if step is None else str(step["creation_info"]["status"])
