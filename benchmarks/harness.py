"""What every benchmark here shares: the suite as users run it, timing rounds,
and reporting a measurement next to its floor."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results.json"


@contextmanager
def running_suite(data_dir: Path, *options: str) -> Iterator[tuple[str, str]]:
    """`stepforge up` in its own process on a free port; yields the
    environment URL and token, and stops it on exit."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stepforge.services.cli",
            "--log-level",
            "WARNING",
            "up",
            "--data-dir",
            str(data_dir),
            "--port",
            "0",
            *options,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        values: dict[str, str] = {}
        for line in process.stdout:
            key, _, value = line.strip().partition("=")
            if key.startswith("STEPFORGE_"):
                values[key] = value
            if len(values) == 2:
                break
        else:
            raise RuntimeError("stepforge up exited before it was ready")
        yield values["STEPFORGE_ENVIRONMENT_URL"], values["STEPFORGE_SDK_TOKEN"]
    finally:
        process.terminate()
        process.wait(timeout=30)


def measure(action: Callable[[], object], rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return times


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def compare(case: str, suite: list[float], floor: list[float]) -> dict[str, Any]:
    """One row: the suite's median and p95 next to the floor's, and their ratio."""
    return {
        "case": case,
        "suite_median_s": round(statistics.median(suite), 5),
        "suite_p95_s": round(p95(suite), 5),
        "floor_median_s": round(statistics.median(floor), 5),
        "floor_p95_s": round(p95(floor), 5),
        "ratio_median": round(statistics.median(suite) / statistics.median(floor), 2),
    }


def report(benchmark: str, command: str, rows: list[dict[str, Any]]) -> str:
    """Records `rows` under `benchmark` in results.json and returns a Markdown
    table of them."""
    entry = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "command": command,
        "results": rows,
    }
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results[benchmark] = entry
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        f"{benchmark}: `{command}`, {entry['cores']} cores, "
        f"Python {entry['python']}, {entry['date']}",
        "",
        "| case | median | p95 | floor median | floor p95 | ratio |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        lines.append(
            f"| {row['case']} | {_ms(row['suite_median_s'])} "
            f"| {_ms(row['suite_p95_s'])} "
            f"| {_ms(row['floor_median_s'])} | {_ms(row['floor_p95_s'])} "
            f"| {row['ratio_median']} |"
        )
    return "\n".join(lines)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 10 else f"{seconds:.1f} s"
