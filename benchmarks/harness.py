"""What every benchmark here shares: the suite as users run it, options, timing
rounds, and reporting a measurement next to its floor."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import grpc

from stepforge import StepforgeSdk

RESULTS = Path(__file__).parent / "results.json"
MB = 1_000_000
MiB = 1024 * 1024


@dataclass(frozen=True)
class Column:
    """One column of a results table: its header, the row key it shows, and the
    unit that decides how a value is written."""

    header: str
    key: str
    unit: str


TIME_COLUMNS = (
    Column("case", "case", "text"),
    Column("median", "suite_median_s", "s"),
    Column("p95", "suite_p95_s", "s"),
    Column("floor median", "floor_median_s", "s"),
    Column("floor p95", "floor_p95_s", "s"),
    Column("ratio", "ratio_median", "x"),
)


@dataclass(frozen=True)
class Suite:
    """A running `stepforge up`: its process, where it listens, its token, and
    the authority its certificate comes from when it serves TLS."""

    pid: int
    data_dir: Path
    url: str
    token: str
    ca_cert: Path | None

    @property
    def target(self) -> str:
        """`host:port`, without the URL's scheme."""
        return self.url.split("://", 1)[-1]

    @property
    def transport(self) -> str:
        return "plaintext" if self.ca_cert is None else "TLS"

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),)

    def sdk(self) -> StepforgeSdk:
        if self.ca_cert is None:
            return StepforgeSdk(self.url, self.token)
        return StepforgeSdk(self.url, self.token, ca_cert=str(self.ca_cert))

    def channel(
        self, target: str | None = None, options: Sequence[tuple[str, Any]] = ()
    ) -> grpc.Channel:
        """A channel to `target` (default: the suite) over the suite's
        transport: TLS trusting its authority, or plaintext."""
        if self.ca_cert is None:
            return grpc.insecure_channel(target or self.target, options)
        credentials = grpc.ssl_channel_credentials(self.ca_cert.read_bytes())
        return grpc.secure_channel(target or self.target, credentials, options)


@contextmanager
def running_suite(data_dir: Path, *options: str) -> Iterator[Suite]:
    """`stepforge up` in its own process on a free port, with its defaults
    otherwise; stops it on exit."""
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
            "--no-console",
            *options,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        # The last line `up` prints at start; the values are in its env file.
        for line in process.stdout:
            if line.startswith("the project admin token"):
                break
        else:
            raise RuntimeError("stepforge up exited before it was ready")
        values = _env_file(data_dir / "env")
        ca_cert = values.get("STEPFORGE_CA_CERT")
        yield Suite(
            pid=process.pid,
            data_dir=data_dir,
            url=values["STEPFORGE_ENVIRONMENT_URL"],
            token=values["STEPFORGE_SDK_TOKEN"],
            ca_cert=Path(ca_cert) if ca_cert else None,
        )
    finally:
        process.terminate()
        process.wait(timeout=30)


def parse_options(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    defaults: Mapping[str, object],
    quick: Mapping[str, object],
) -> argparse.Namespace:
    """Parses `argv` with `--quick` and `--results` added to `parser`.

    The options named in `defaults` must default to None there: an option
    not given takes its value from `quick` under `--quick`, else `defaults`.
    """
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes and rounds, to check that the benchmark runs",
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=RESULTS,
        help=f"the JSON file the figures are recorded in (default {RESULTS})",
    )
    args = parser.parse_args(argv)
    chosen = quick if args.quick else defaults
    for name, value in chosen.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def command_line(script: str, args: argparse.Namespace, names: Sequence[str]) -> str:
    """The command that repeats this run: `script` with each named option."""
    options = " ".join(
        f"--{name.replace('_', '-')} {getattr(args, name)}" for name in names
    )
    return f"python benchmarks/{script} {options}".rstrip()


def measure(
    action: Callable[[], object],
    rounds: int,
    between: Callable[[], object] | None = None,
) -> list[float]:
    """Times `action` `rounds` times; `between` runs untimed after each round."""
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
        if between is not None:
            between()
    return times


def percentile(values: Sequence[float], fraction: float) -> float:
    """The value at `fraction` (0 to 1) of the sorted values, by nearest rank."""
    if not values:
        raise ValueError("percentile needs at least one value")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def p95(values: list[float]) -> float:
    return percentile(values, 0.95)


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


def megabytes_per_s(size_bytes: int, seconds: float) -> float:
    return round(size_bytes / MB / seconds, 1)


def report(
    benchmark: str,
    command: str,
    rows: list[dict[str, Any]],
    *,
    columns: Sequence[Column] = TIME_COLUMNS,
    results: Path = RESULTS,
    transport: str | None = None,
) -> str:
    """Records `rows` under `benchmark` in the `results` JSON file and returns
    a Markdown table of them. `transport` is the suite's, when it served."""
    entry = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "transport": transport,
        "command": command,
        "columns": [[column.header, column.key, column.unit] for column in columns],
        "results": rows,
    }
    recorded = json.loads(results.read_text()) if results.exists() else {}
    recorded[benchmark] = entry
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(recorded, indent=2) + "\n")
    return render(benchmark, entry)


def render(benchmark: str, entry: Mapping[str, Any]) -> str:
    """The Markdown table of one benchmark's entry in the results file."""
    columns = [Column(*spec) for spec in entry.get("columns", [])] or TIME_COLUMNS
    transport = f", suite over {entry['transport']}" if entry.get("transport") else ""
    lines = [
        f"{benchmark}: `{entry['command']}`, {entry['cores']} cores, "
        f"Python {entry['python']}{transport}, {entry['date']}",
        "",
        "| " + " | ".join(column.header for column in columns) + " |",
        "|" + " --- |" * len(columns),
    ]
    for row in entry["results"]:
        cells = [_cell(row.get(column.key), column.unit) for column in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _env_file(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    values = {}
    for line in path.read_text().splitlines():
        key, separator, value = line.partition("=")
        if separator:
            values[key.strip()] = value.strip()
    return values


def _cell(value: object, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "text" or not isinstance(value, (int, float)):
        return str(value)
    if unit == "s":
        return _ms(value)
    if unit == "MB/s":
        return f"{value:,.0f} MB/s" if value >= 100 else f"{value:.1f} MB/s"
    if unit == "MiB":
        return f"{value:,.0f} MiB"
    if unit == "/s":
        return f"{value:,.0f}/s" if value >= 100 else f"{value:.1f}/s"
    if unit == "x":
        return f"{value:g}"
    raise ValueError(f"column unit {unit!r}: must be text, s, MB/s, MiB, /s or x")


def _ms(seconds: float) -> str:
    if seconds < 0.001:
        return f"{seconds * 1000:.2f} ms"
    return f"{seconds * 1000:.1f} ms" if seconds < 10 else f"{seconds:.1f} s"
