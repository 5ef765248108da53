"""create_step latency, measured next to its floor in the same run.

The suite runs as `stepforge up` in its own process, as users run it. Each
round creates a new step from the same one-file folder, so the code archive
and the virtual environment are already cached, which is the common case once
a project has built its first step. The floor is what any platform must do:
pack the same files and write them to the same object store.

Usage: python benchmarks/create_step.py [--rounds N] [--output PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from stepforge import Input, Output, StepforgeSdk
from stepforge._packing import iter_archive_chunks, select_files
from stepforge.services.core.object_store import LocalObjectStore

ENTRY = "def entryStep(dataX_input):\n    return {'result_output': dataX_input}\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument(
        "--output", type=Path, default=Path(__file__).parent / "results.json"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="stepforge-bench-") as scratch:
        root = Path(scratch)
        plain = _folder(root / "plain", requirements=None)
        with_requirements = _folder(root / "req", requirements=_local_wheel(root))
        with _suite(root / "data") as (url, token):
            sdk = StepforgeSdk(url, token)
            floor_store = LocalObjectStore(root / "floor-objects")
            cases = [
                ("one file, no requirements", plain, None),
                (
                    "one file, cached requirements",
                    with_requirements,
                    "requirements.txt",
                ),
            ]
            results = []
            for label, folder, requirements in cases:
                create = _creator(sdk, folder, requirements)
                create()  # builds the environment once; later rounds reuse it
                suite_times = _measure(create, args.rounds)
                floor_times = _measure(_floor(folder, floor_store), args.rounds)
                results.append(_summary(label, suite_times, floor_times))
            sdk.close()

    report = {
        "benchmark": "create_step",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "rounds": args.rounds,
        "command": "python benchmarks/create_step.py --rounds " + str(args.rounds),
        "results": results,
    }
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(_markdown(report))
    return 0


def _creator(
    sdk: StepforgeSdk, folder: Path, requirements: str | None
) -> Callable[[], None]:
    counter = iter(range(1_000_000))
    config: dict[str, object] = {"local_folder": str(folder)}
    if requirements:
        config["requirements_path"] = requirements

    def create() -> None:
        step = sdk.create_step(
            step_name=f"bench-{folder.name}-{next(counter)}",
            function_path="entry.py",
            function_name="entryStep",
            container_config=config,
            inputs=[Input(name="dataX_input", data_type="json")],
            outputs=[Output(name="result_output", data_type="json")],
        )
        assert step["creation_info"]["status"] == "Ready"

    return create


def _floor(folder: Path, store: LocalObjectStore) -> Callable[[], None]:
    counter = iter(range(1_000_000))
    extra = (
        {"requirements": "requirements.txt"}
        if (folder / "requirements.txt").exists()
        else {}
    )

    def pack_and_store() -> None:
        files = select_files(folder, None, extra)
        store.put_stream(f"floor/{next(counter)}.tar.gz", iter_archive_chunks(files))

    return pack_and_store


def _measure(action: Callable[[], None], rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return times


def _summary(label: str, suite: list[float], floor: list[float]) -> dict[str, object]:
    suite_median, floor_median = statistics.median(suite), statistics.median(floor)
    return {
        "case": label,
        "suite_median_s": round(suite_median, 4),
        "suite_p95_s": round(_p95(suite), 4),
        "floor_median_s": round(floor_median, 5),
        "floor_p95_s": round(_p95(floor), 5),
        "ratio_median": round(suite_median / floor_median, 1),
    }


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def _markdown(report: dict[str, object]) -> str:
    lines = [
        f"create_step, {report['rounds']} rounds, {report['cores']} cores, "
        f"Python {report['python']}, {report['date']}",
        "",
        "| case | median | p95 | floor median | floor p95 | ratio |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in report["results"]:  # type: ignore[attr-defined]
        lines.append(
            f"| {row['case']} | {row['suite_median_s'] * 1000:.1f} ms "
            f"| {row['suite_p95_s'] * 1000:.1f} ms "
            f"| {row['floor_median_s'] * 1000:.2f} ms "
            f"| {row['floor_p95_s'] * 1000:.2f} ms | {row['ratio_median']} |"
        )
    return "\n".join(lines)


def _folder(path: Path, requirements: Path | None) -> Path:
    path.mkdir(parents=True)
    (path / "entry.py").write_text(ENTRY)
    if requirements is not None:
        (path / "requirements.txt").write_text(
            f"--no-index\n--find-links {requirements.parent}\nbenchdep==1.0\n"
        )
    return path


def _local_wheel(root: Path) -> Path:
    """A tiny wheel on disk, so the cached-requirements case needs no network."""
    wheels = root / "wheels"
    wheels.mkdir()
    wheel = wheels / "benchdep-1.0-py3-none-any.whl"
    info = "benchdep-1.0.dist-info"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("benchdep.py", "VALUE = 1\n")
        archive.writestr(
            f"{info}/METADATA", "Metadata-Version: 2.1\nName: benchdep\nVersion: 1.0\n"
        )
        archive.writestr(
            f"{info}/WHEEL",
            "Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: true\n"
            "Tag: py3-none-any\n",
        )
        archive.writestr(f"{info}/RECORD", "")
    return wheel


class _suite:
    """`stepforge up` on a free port, stopped on exit."""

    def __init__(self, data_dir: Path) -> None:
        self._data_dir = data_dir

    def __enter__(self) -> tuple[str, str]:
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "stepforge.services.cli",
                "--log-level",
                "WARNING",
                "up",
                "--data-dir",
                str(self._data_dir),
                "--port",
                "0",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        values = {}
        for line in self._process.stdout:
            key, _, value = line.strip().partition("=")
            if key.startswith("STEPFORGE_"):
                values[key] = value
            if len(values) == 2:
                return values["STEPFORGE_ENVIRONMENT_URL"], values[
                    "STEPFORGE_SDK_TOKEN"
                ]
        raise RuntimeError("stepforge up exited before it was ready")

    def __exit__(self, *exc_info: object) -> None:
        self._process.terminate()
        self._process.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
