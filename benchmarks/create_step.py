"""create_step latency, measured next to its floor in the same run.

The suite runs as `stepforge up` in its own process, as users run it. Each
round creates a new step from the same one-file folder, so the code archive
and the virtual environment are already cached, which is the common case once
a project has built its first step. The floor is what any platform must do:
pack the same files and write them to the same object store.

Usage: python benchmarks/create_step.py [--rounds N] [--quick] [--results PATH]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from harness import (
    command_line,
    compare,
    measure,
    parse_options,
    report,
    running_suite,
)

from stepforge import Input, Output, StepforgeSdk
from stepforge._packing import iter_archive_chunks, select_files
from stepforge.services.core.object_store import LocalObjectStore

DEFAULTS = {"rounds": 30}
QUICK = {"rounds": 3}

ENTRY = "def entryStep(dataX_input):\n    return {'result_output': dataX_input}\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, help="rounds per case (default 30)")
    args = parse_options(parser, argv, DEFAULTS, QUICK)

    with tempfile.TemporaryDirectory(prefix="stepforge-bench-") as scratch:
        root = Path(scratch)
        plain = _folder(root / "plain", requirements=None)
        with_requirements = _folder(root / "req", requirements=_local_wheel(root))
        with running_suite(root / "data") as suite:
            transport = suite.transport
            sdk = suite.sdk()
            floor_store = LocalObjectStore(root / "floor-objects")
            cases = [
                ("one file, no requirements", plain, None),
                (
                    "one file, cached requirements",
                    with_requirements,
                    "requirements.txt",
                ),
            ]
            rows = []
            for label, folder, requirements in cases:
                create = _creator(sdk, folder, requirements)
                create()  # builds the environment once; later rounds reuse it
                suite_times = measure(create, args.rounds)
                floor_times = measure(_floor(folder, floor_store), args.rounds)
                rows.append(compare(label, suite_times, floor_times))
            sdk.close()

    command = command_line("create_step.py", args, list(DEFAULTS))
    table = report(
        "create_step",
        command,
        rows,
        results=args.results,
        transport=transport,
    )
    print(table)
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


if __name__ == "__main__":
    sys.exit(main())
