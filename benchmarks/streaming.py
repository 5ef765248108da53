"""Streaming throughput and peak memory, measured next to their floor in the
same run.

The suite runs as `stepforge up` in its own process. Two cases:
- a code archive of about 5 MB (incompressible files just under the code
  limit) streamed through create_step, a new step per round from the same
  folder; its floor packs the same files with the SDK's packer and writes the
  chunks to a local object store directly;
- a file of --size-mib MiB through run_pipeline as a FILE input of a
  passthrough step and back as its FILE output, written to a path by
  get_pipeline_execution_output; its floor copies the same file on the same
  disk twice, in and out, syncing each copy as the object store syncs what
  it keeps.

Throughput is the size of the archive or file over the median time of a
round. While the suite is measured, the resident memory of the benchmark
process (the SDK), of `stepforge up` and of every process it starts (the
step's runner among them) is sampled every 20 ms, and the peak of each is
reported; so is the benchmark process's peak while the floor runs, which it
does first.

Usage: python benchmarks/streaming.py [--rounds N] [--size-mib N]
    [--file-rounds N] [--quick] [--results PATH]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from harness import (
    Column,
    MiB,
    command_line,
    compare,
    measure,
    megabytes_per_s,
    parse_options,
    report,
    running_suite,
)
from peak_memory import RUNNER_ROLE, PeakMemory

from stepforge import Input, Output, StepforgeSdk
from stepforge._packing import iter_archive_chunks, select_files
from stepforge.services.core.object_store import LocalObjectStore

DEFAULTS = {"rounds": 10, "size_mib": 1024, "file_rounds": 3}
QUICK = {"rounds": 2, "size_mib": 64, "file_rounds": 1}

ENTRY = "def entryStep(dataX_input):\n    return {'result_output': dataX_input}\n"
PASSTHROUGH = 'def passthrough(data):\n    return {"data": data}\n'
# Just under the 5,000,000-byte code limit, in files of random bytes, which
# gzip cannot shrink: the archive is as large as the code.
CODE_FILE_BYTES = 700_000
CODE_FILES = 7
SDK_ROLE = "benchmark (SDK)"
SUITE_ROLE = "stepforge up"

COLUMNS = (
    Column("case", "case", "text"),
    Column("median", "suite_median_s", "s"),
    Column("p95", "suite_p95_s", "s"),
    Column("floor median", "floor_median_s", "s"),
    Column("ratio", "ratio_median", "x"),
    Column("throughput", "suite_mb_per_s", "MB/s"),
    Column("floor throughput", "floor_mb_per_s", "MB/s"),
    Column("peak RSS SDK", "peak_rss_sdk_mib", "MiB"),
    Column("peak RSS up", "peak_rss_up_mib", "MiB"),
    Column("peak RSS runner", "peak_rss_runner_mib", "MiB"),
    Column("peak RSS floor", "floor_peak_rss_mib", "MiB"),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, help="archive rounds (default 10)")
    parser.add_argument("--size-mib", type=int, help="file size (default 1024)")
    parser.add_argument("--file-rounds", type=int, help="file rounds (default 3)")
    args = parse_options(parser, argv, DEFAULTS, QUICK)

    with tempfile.TemporaryDirectory(prefix="stepforge-bench-") as scratch:
        root = Path(scratch)
        with running_suite(root / "data") as suite:
            transport = suite.transport
            roots = {SDK_ROLE: os.getpid(), SUITE_ROLE: suite.pid}
            with suite.sdk() as sdk:
                rows = [
                    _archive_case(sdk, root, roots, args.rounds),
                    _file_case(sdk, root, roots, args.size_mib, args.file_rounds),
                ]

    command = command_line("streaming.py", args, list(DEFAULTS))
    table = report(
        "streaming",
        command,
        rows,
        columns=COLUMNS,
        results=args.results,
        transport=transport,
    )
    print(table)
    return 0


def _archive_case(
    sdk: StepforgeSdk, root: Path, roots: dict[str, int], rounds: int
) -> dict[str, Any]:
    folder = _code_folder(root / "code")
    files = select_files(folder, None, {})
    archive_bytes = sum(len(chunk) for chunk in iter_archive_chunks(files))
    names = iter(range(1_000_000))

    def create() -> None:
        step = sdk.create_step(
            step_name=f"archive-{next(names)}",
            function_path="entry.py",
            function_name="entryStep",
            container_config={"local_folder": str(folder)},
            inputs=[Input(name="dataX_input", data_type="json")],
            outputs=[Output(name="result_output", data_type="json")],
        )
        assert step["creation_info"]["status"] == "Ready"

    store = LocalObjectStore(root / "floor-objects")
    keys = iter(range(1_000_000))

    def pack_and_store() -> None:
        chunks = iter_archive_chunks(select_files(folder, None, {}))
        stored = store.put_stream(f"floor/{next(keys)}.tar.gz", chunks)
        assert stored == archive_bytes

    def pack() -> None:
        for _ in iter_archive_chunks(select_files(folder, None, {})):
            pass

    # The floor runs first, so that its peak is not what the suite's rounds
    # left behind in the same process.
    with PeakMemory({SDK_ROLE: roots[SDK_ROLE]}) as floor_memory:
        floor_times = measure(pack_and_store, rounds)
    create()  # builds the environment once; later rounds reuse it
    with PeakMemory(roots) as suite_memory:
        suite_times = measure(create, rounds)
    row = _row(
        f"{archive_bytes / 1e6:.1f} MB archive through create_step",
        archive_bytes,
        suite_times,
        floor_times,
        suite_memory,
        floor_memory,
    )
    # Packing alone, to tell the packer's share from the store's in the floor.
    row["pack_median_s"] = round(statistics.median(measure(pack, rounds)), 5)
    row["archive_bytes"] = archive_bytes
    return row


def _file_case(
    sdk: StepforgeSdk,
    root: Path,
    roots: dict[str, int],
    size_mib: int,
    rounds: int,
) -> dict[str, Any]:
    code = root / "passthrough"
    code.mkdir()
    (code / "steps.py").write_text(PASSTHROUGH)
    sdk.create_step(
        function_path="steps.py",
        function_name="passthrough",
        container_config={"local_folder": str(code)},
        inputs=[Input("data", "file")],
        outputs=[Output("data", "file")],
    )
    sdk.create_pipeline(pipeline_name="passthrough", step_name="passthrough")
    source = root / "input.bin"
    expected = _write_incompressible(source, size_mib * MiB)
    output = root / "output.bin"
    executions: list[str] = []

    def round_trip() -> None:
        result = sdk.run_pipeline("passthrough", inputs={"data": str(source)})
        executions.append(result["execution_id"])
        sdk.get_pipeline_execution_output(
            result["execution_id"], "data", path=str(output)
        )
        assert output.stat().st_size == size_mib * MiB

    def forget_round() -> None:
        # The next round must not find the previous copies in the way, nor
        # the disk fill up with stored inputs and outputs, nor pay for
        # writing back what this round left unsynced.
        _check_copy(output, expected)
        output.unlink()
        sdk.delete_pipeline_execution(executions[-1])
        os.sync()

    stored = root / "floor-stored.bin"

    def copy_in_and_out() -> None:
        _durable_copy(source, stored)
        _durable_copy(stored, output)

    def forget_copies() -> None:
        _check_copy(output, expected)
        stored.unlink()
        output.unlink()
        os.sync()

    with PeakMemory({SDK_ROLE: roots[SDK_ROLE]}) as floor_memory:
        floor_times = measure(copy_in_and_out, rounds, between=forget_copies)
    with PeakMemory(roots) as suite_memory:
        suite_times = measure(round_trip, rounds, between=forget_round)
    source.unlink()
    return _row(
        f"{size_mib} MiB file through run_pipeline and back",
        size_mib * MiB,
        suite_times,
        floor_times,
        suite_memory,
        floor_memory,
    )


def _row(
    case: str,
    size_bytes: int,
    suite_times: list[float],
    floor_times: list[float],
    suite_memory: PeakMemory,
    floor_memory: PeakMemory,
) -> dict[str, Any]:
    row = compare(case, suite_times, floor_times)
    row["suite_mb_per_s"] = megabytes_per_s(size_bytes, row["suite_median_s"])
    row["floor_mb_per_s"] = megabytes_per_s(size_bytes, row["floor_median_s"])
    peaks = suite_memory.peaks_mib()
    row["peak_rss_sdk_mib"] = peaks.get(SDK_ROLE)
    row["peak_rss_up_mib"] = peaks.get(SUITE_ROLE)
    row["peak_rss_runner_mib"] = peaks.get(RUNNER_ROLE)
    row["peak_rss_mib_by_process"] = peaks
    row["floor_peak_rss_mib"] = floor_memory.peaks_mib()[SDK_ROLE]
    return row


def _code_folder(folder: Path) -> Path:
    folder.mkdir()
    (folder / "entry.py").write_text(ENTRY)
    for index in range(CODE_FILES):
        (folder / f"weights-{index}.bin").write_bytes(os.urandom(CODE_FILE_BYTES))
    return folder


def _write_incompressible(path: Path, size: int) -> str:
    """Writes `size` bytes that no compressor shrinks; returns their SHA-256."""
    block = bytearray(os.urandom(MiB))
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        for index in range(size // MiB):
            block[:8] = index.to_bytes(8, "big")
            digest.update(block)
            out.write(block)
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest()


def _check_copy(path: Path, expected: str) -> None:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for piece in iter(lambda: file.read(MiB), b""):
            digest.update(piece)
    assert digest.hexdigest() == expected, f"{path} is not a copy of the input"


def _durable_copy(source: Path, target: Path) -> None:
    shutil.copyfile(source, target)
    descriptor = os.open(target, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


if __name__ == "__main__":
    sys.exit(main())
