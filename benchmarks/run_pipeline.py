"""run_pipeline overhead, measured next to its floor in the same run.

The suite runs as `stepforge up` in its own process. The step is trivial, so
what is measured is what the platform adds to a run. Its floor is what any
way of running the function in its own environment must do: start the same
interpreter of the step's environment and call the same function.

Two measurements:
- the round trip of one run_pipeline, waiting for its outputs;
- 200 trivial executions queued at once: the time until all have ended, next
  to 200 direct starts of the interpreter run as many at a time as the suite
  runs executions (the core count).

Usage: python benchmarks/run_pipeline.py [--rounds N] [--queued N] [--quick]
    [--results PATH]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from harness import (
    TIME_COLUMNS,
    Column,
    command_line,
    compare,
    measure,
    parse_options,
    report,
    running_suite,
)

from stepforge import Input, Output, StepforgeSdk

DEFAULTS = {"rounds": 30, "queued": 200}
QUICK = {"rounds": 3, "queued": 10}
COLUMNS = (
    *TIME_COLUMNS,
    Column("executions/s", "suite_executions_per_s", "/s"),
    Column("floor executions/s", "floor_executions_per_s", "/s"),
)

STEP = "def trivial(x):\n    return {'y': x}\n"
CALL = "import sys; sys.path.insert(0, '.'); from step import trivial; trivial(1)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, help="round trips (default 30)")
    parser.add_argument("--queued", type=int, help="queued executions (default 200)")
    args = parse_options(parser, argv, DEFAULTS, QUICK)

    with tempfile.TemporaryDirectory(prefix="stepforge-bench-") as scratch:
        root = Path(scratch)
        code = root / "code"
        code.mkdir()
        (code / "step.py").write_text(STEP)
        with running_suite(root / "data") as suite:
            transport = suite.transport
            sdk = suite.sdk()
            sdk.create_step(
                function_path="step.py",
                function_name="trivial",
                container_config={"local_folder": str(code)},
                inputs=[Input("x", "number")],
                outputs=[Output("y", "number")],
            )
            sdk.create_pipeline(pipeline_name="trivial", step_name="trivial")
            python = _step_interpreter(root / "data")

            def run() -> None:
                result = sdk.run_pipeline("trivial", inputs={"x": 1})
                assert result["outputs"] == {"y": 1}

            def direct() -> None:
                subprocess.run([str(python), "-c", CALL], cwd=code, check=True)

            run()
            direct()
            rows = [
                compare(
                    "run_pipeline round trip",
                    measure(run, args.rounds),
                    measure(direct, args.rounds),
                )
            ]
            queued = _queued(sdk, args.queued)
            floor = _direct_in_parallel(direct, args.queued)
            row = compare(f"{args.queued} queued executions", [queued], [floor])
            row["suite_executions_per_s"] = round(args.queued / queued, 1)
            row["floor_executions_per_s"] = round(args.queued / floor, 1)
            rows.append(row)
            sdk.close()

    command = command_line("run_pipeline.py", args, list(DEFAULTS))
    table = report(
        "run_pipeline",
        command,
        rows,
        columns=COLUMNS,
        results=args.results,
        transport=transport,
    )
    print(table)
    return 0


def _queued(sdk: StepforgeSdk, count: int) -> float:
    """Seconds from the first submission until every execution has ended."""
    started = time.perf_counter()
    ids = [
        sdk.run_pipeline("trivial", inputs={"x": 1}, wait=False)["execution_id"]
        for _ in range(count)
    ]
    for execution_id in ids:
        while sdk.get_pipeline_execution(execution_id)["status"] not in (
            "Succeeded",
            "Failed",
        ):
            time.sleep(0.01)
    elapsed = time.perf_counter() - started
    failed = [i for i in ids if sdk.get_pipeline_execution(i)["status"] != "Succeeded"]
    assert not failed, f"{len(failed)} executions failed"
    return elapsed


def _direct_in_parallel(direct: Callable[[], None], count: int) -> float:
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(lambda _: direct(), range(count)))
    return time.perf_counter() - started


def _step_interpreter(data_dir: Path) -> Path:
    environments = list((data_dir / "build" / "envs").glob("*/bin/python"))
    assert len(environments) == 1, environments
    return environments[0]


if __name__ == "__main__":
    sys.exit(main())
