"""The peak resident memory of processes and of every process they start."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from types import TracebackType

import psutil  # type: ignore[import-untyped]
from harness import MiB

RUNNER_ROLE = "step runner"


class PeakMemory:
    """Samples the RSS of named root processes and their descendants in a
    thread, every `interval_s`; `peaks_mib()` gives the peak of each role.

    A root's role is its name; a descendant's is `step runner` for the
    execution runner, else the name of its nearest root and the program it
    runs, so the runners of successive executions count as one role.
    """

    def __init__(self, roots: Mapping[str, int], interval_s: float = 0.02) -> None:
        self._roots = {name: psutil.Process(pid) for name, pid in roots.items()}
        self._names = {pid: name for name, pid in roots.items()}
        self._interval_s = interval_s
        self._nearest_root: dict[int, str] = {}
        self._peaks: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._sample()
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def peaks_mib(self) -> dict[str, float]:
        peaks = sorted(self._peaks.items())
        return {role: round(peak / MiB, 1) for role, peak in peaks}

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self._sample()

    def _sample(self) -> None:
        seen: set[int] = set()
        for name, root in self._roots.items():
            try:
                family = [root, *root.children(recursive=True)]
            except psutil.Error:
                continue
            for process in family:
                if process.pid in seen:
                    continue
                seen.add(process.pid)
                try:
                    role = self._role(process, name)
                    rss = process.memory_info().rss
                except psutil.Error:
                    continue  # it ended between the listing and the reading
                self._peaks[role] = max(self._peaks.get(role, 0), rss)

    def _role(self, process: psutil.Process, listed_under: str) -> str:
        own = self._names.get(process.pid)
        if own is not None:
            return own
        root = self._nearest_root.get(process.pid)
        if root is None:
            # A root may start another, as the benchmark starts the suite: a
            # descendant belongs to its nearest root.
            root = next(
                (
                    self._names[parent.pid]
                    for parent in process.parents()
                    if parent.pid in self._names
                ),
                listed_under,
            )
            self._nearest_root[process.pid] = root
        # Read each time: a wrapper (a shell, unshare) may exec the runner
        # under the same pid.
        return _child_role(root, process)


def _child_role(root_name: str, process: psutil.Process) -> str:
    command = process.cmdline()
    if any(os.path.basename(part) == "runner.py" for part in command):
        return RUNNER_ROLE
    program = os.path.basename(command[0]) if command else process.name()
    return f"{root_name} > {program}"
