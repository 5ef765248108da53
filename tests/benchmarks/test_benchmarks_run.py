"""Every benchmark runs in quick mode and records positive figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
# Figures each benchmark must record on every row, beyond the case's name.
FIGURES = {
    "create_step": ["suite_median_s", "floor_median_s", "ratio_median"],
    "streaming": [
        "suite_median_s",
        "floor_median_s",
        "ratio_median",
        "suite_mb_per_s",
        "floor_mb_per_s",
        "peak_rss_sdk_mib",
        "peak_rss_up_mib",
        "floor_peak_rss_mib",
    ],
    "run_pipeline": ["suite_median_s", "floor_median_s", "ratio_median"],
    "control_plane": [
        "suite_calls_per_s",
        "floor_calls_per_s",
        "throughput_ratio",
        "suite_p99_s",
        "floor_p99_s",
    ],
}


@pytest.mark.slow
def test_run_all_quick_records_positive_figures_for_every_benchmark(
    tmp_path: Path,
) -> None:
    results = tmp_path / "results.json"
    default_results = BENCHMARKS / "results.json"
    before = _fingerprint(default_results)

    finished = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "run_all.py"),
            "--quick",
            "--results",
            str(results),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )

    assert finished.returncode == 0, finished.stderr[-4000:]
    recorded = json.loads(results.read_text())
    assert set(recorded) == set(FIGURES)
    for benchmark, figures in FIGURES.items():
        rows = recorded[benchmark]["results"]
        assert rows, benchmark
        for row in rows:
            missing = [name for name in figures if not _positive(row.get(name))]
            assert missing == [], (benchmark, row)
            # Other figures may round to zero in quick mode (a runner that
            # ends between two memory samples), but none is negative.
            assert _no_negative_number(row), (benchmark, row)
    archive, file = recorded["streaming"]["results"]
    assert archive["archive_bytes"] > 4_800_000
    assert _positive(file["peak_rss_runner_mib"]), file
    tables = results.with_suffix(".md").read_text()
    for benchmark in FIGURES:
        assert f"## {benchmark}" in tables
    assert _fingerprint(default_results) == before


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def _no_negative_number(value: Any) -> bool:
    if isinstance(value, dict):
        return all(_no_negative_number(item) for item in value.values())
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value >= 0
    return True


def _fingerprint(path: Path) -> tuple[int, int] | None:
    if not path.exists():
        return None
    info = path.stat()
    return info.st_mtime_ns, info.st_size
