"""Stopping a test server's process, and showing what it printed."""

from __future__ import annotations

import os
import subprocess
from typing import IO

STOP_TIMEOUT_S = 5.0
OUTPUT_TAIL_BYTES = 4000


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it has not exited within STOP_TIMEOUT_S."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT_S)


def output_tail(log: IO[bytes]) -> str:
    """The last OUTPUT_TAIL_BYTES a server wrote to the file `log`."""
    # pread leaves the shared file offset alone, which the server still writes at.
    size = os.fstat(log.fileno()).st_size
    start = max(0, size - OUTPUT_TAIL_BYTES)
    tail = os.pread(log.fileno(), size - start, start)
    return tail.decode("utf-8", errors="replace")
