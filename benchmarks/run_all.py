"""Runs every benchmark, each in a fresh process with its defaults (or its
quick settings), then writes the Markdown tables of all of them next to the
results file (results.md beside results.json) and prints them.

A fresh process per benchmark keeps one benchmark's memory and threads out of
the next one's figures. A benchmark that fails does not stop the others; the
exit status says whether all succeeded.

Usage: python benchmarks/run_all.py [--quick] [--results PATH]
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

from harness import RESULTS, render

logger = logging.getLogger(__name__)

BENCHMARKS = ("create_step", "streaming", "run_pipeline", "control_plane")
HERE = Path(__file__).parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes and rounds for each"
    )
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    failed = []
    for benchmark in BENCHMARKS:
        command = [sys.executable, str(HERE / f"{benchmark}.py")]
        command += ["--results", str(args.results)]
        if args.quick:
            command.append("--quick")
        logger.info("running %s", " ".join(command))
        started = time.perf_counter()
        finished = subprocess.run(command, stdout=subprocess.DEVNULL)
        logger.info(
            "%s ended with status %d after %.1f s",
            benchmark,
            finished.returncode,
            time.perf_counter() - started,
        )
        if finished.returncode != 0:
            failed.append(benchmark)

    tables = markdown(args.results, [b for b in BENCHMARKS if b not in failed])
    args.results.with_suffix(".md").write_text(tables)
    print(tables)
    if failed:
        logger.error("failed: %s", ", ".join(failed))
        return 1
    return 0


def markdown(results: Path, benchmarks: list[str]) -> str:
    """The tables of the named benchmarks' entries in the `results` file."""
    recorded = json.loads(results.read_text()) if results.exists() else {}
    sections = ["# Benchmark results", ""]
    for benchmark in benchmarks:
        sections += [f"## {benchmark}", "", render(benchmark, recorded[benchmark]), ""]
    return "\n".join(sections)


if __name__ == "__main__":
    sys.exit(main())
