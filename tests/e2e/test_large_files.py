"""A 1 GiB file through a step and back: memory must not grow with its size."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest
from support.s3_server import free_port
from support.step_code import write_step_code
from support.suite import suite_process

from stepforge import Input, Output

GiB = 1024**3
MiB = 1024**2
MEMORY_LIMIT_BYTES = 200 * MiB


class PeakMemory:
    """Samples the resident memory of processes and their children."""

    def __init__(self, roots: list[int]) -> None:
        self.peaks: dict[str, int] = {}
        self._roots = [psutil.Process(pid) for pid in roots]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            for root in self._roots:
                try:
                    family = [root, *root.children(recursive=True)]
                except psutil.NoSuchProcess:
                    continue
                for process in family:
                    try:
                        label = f"{process.pid} {' '.join(process.cmdline()[:4])}"
                        rss = process.memory_info().rss
                    except psutil.Error:
                        continue
                    self.peaks[label] = max(self.peaks.get(label, 0), rss)

    @contextmanager
    def running(self) -> Iterator[PeakMemory]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()


def write_large_file(path: Path, size: int) -> str:
    block = os.urandom(MiB)
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        for index in range(size // MiB):
            piece = index.to_bytes(8, "big") + block[8:]
            digest.update(piece)
            out.write(piece)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(MiB):
            digest.update(chunk)
    return digest.hexdigest()


_CLIENT = """
import sys
from stepforge import StepforgeSdk

source, copy = sys.argv[1:]
with StepforgeSdk() as sdk:
    result = sdk.run_pipeline("passthrough", inputs={"data": source})
    sdk.get_pipeline_execution_output(result["execution_id"], "data", path=copy)
"""


@pytest.mark.slow
def test_a_1_gib_file_streams_through_a_step_within_bounded_memory(
    tmp_path: Path,
) -> None:
    source = tmp_path / "big.bin"
    expected = write_large_file(source, GiB)
    code = write_step_code(tmp_path / "code")

    with suite_process(tmp_path / "data", free_port()) as suite:
        with suite.sdk() as sdk:
            sdk.create_step(
                function_path="steps.py",
                function_name="passthrough",
                container_config={"local_folder": str(code)},
                inputs=[Input("data", "file")],
                outputs=[Output("data", "file")],
            )
            sdk.create_pipeline(pipeline_name="passthrough", step_name="passthrough")
        copy = tmp_path / "copy.bin"
        # The SDK runs in a process of its own, so what is measured is its use
        # alone, not what this test process gathered before.
        client = subprocess.Popen(
            [sys.executable, "-c", _CLIENT, str(source), str(copy)],
            env={**os.environ, **suite.env},
        )
        sampler = PeakMemory([client.pid, suite.process.pid])
        with sampler.running():
            assert client.wait(timeout=600) == 0

    for label, peak in sorted(sampler.peaks.items()):
        print(f"peak {peak / MiB:7.1f} MiB  {label}")
    assert file_sha256(Path(copy)) == expected
    runner_seen = [label for label in sampler.peaks if "runner.py" in label]
    assert runner_seen, sampler.peaks
    over = {
        label: peak
        for label, peak in sampler.peaks.items()
        if peak > MEMORY_LIMIT_BYTES
    }
    assert over == {}, sampler.peaks
