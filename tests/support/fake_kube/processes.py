"""A container's process: started in its own session, output into its log,
killed as a group."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
from collections.abc import Callable
from typing import IO

from .logs import MAX_LINE_BYTES, ContainerLog
from .runtimes import LocalCommand

logger = logging.getLogger(__name__)

_READER_JOIN_S = 2.0


class ContainerProcess:
    """One running container; `on_exit` is called once it ended and its output
    is all logged."""

    def __init__(
        self, command: LocalCommand, log: ContainerLog, on_exit: Callable[[], None]
    ) -> None:
        """Starts the process; OSError if it cannot start."""
        self._log = log
        self._on_exit = on_exit
        self._exited = threading.Event()
        self._popen = subprocess.Popen(
            command.argv,
            env=command.env,
            cwd=command.cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self.pid = self._popen.pid
        self._exit_code: int | None = None
        self._readers = [
            _reader(self._popen.stdout, "stdout", log),
            _reader(self._popen.stderr, "stderr", log),
        ]
        threading.Thread(
            target=self._wait, name=f"fake-kube-wait-{self.pid}", daemon=True
        ).start()

    @property
    def exit_code(self) -> int | None:
        """The exit code once the process ended and its output is logged;
        128 + N for a process killed by signal N, as container runtimes say."""
        return self._exit_code if self._exited.is_set() else None

    def signal(self, signum: int) -> None:
        """Sends `signum` to the process group (the whole container)."""
        try:
            os.killpg(self.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def _wait(self) -> None:
        code = self._popen.wait()
        # When a container's main process ends, the rest of it goes too.
        self.signal(signal.SIGKILL)
        # A process that left the group may hold the pipes open for longer.
        for reader in self._readers:
            reader.join(timeout=_READER_JOIN_S)
        self._exit_code = 128 - code if code < 0 else code
        self._log.close()
        logger.debug("container process %d ended with %d", self.pid, self._exit_code)
        self._exited.set()
        self._on_exit()


def _reader(pipe: IO[bytes] | None, stream: str, log: ContainerLog) -> threading.Thread:
    def read() -> None:
        assert pipe is not None
        with pipe:
            while True:
                line = pipe.readline(MAX_LINE_BYTES)
                if not line:
                    return
                log.append(stream, line)

    thread = threading.Thread(target=read, name=f"fake-kube-log-{stream}", daemon=True)
    thread.start()
    return thread
