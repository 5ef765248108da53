"""A burst of runs: every one is accepted or refused, none is lost."""

from __future__ import annotations

import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from support.s3_server import free_port
from support.step_code import write_step_code
from support.suite import suite_process

from stepforge import Input, Output, StepforgeSdk
from stepforge.errors import ResourceExhaustedError

SUBMITTED = int(os.environ.get("STEPFORGE_BURST", "500"))


def test_500_runs_at_once_are_accepted_or_refused_and_all_accepted_end(
    tmp_path: Path,
) -> None:
    code = write_step_code(tmp_path / "code")
    with suite_process(tmp_path / "data", free_port()) as suite:
        sdk = suite.sdk()
        sdk.create_step(
            function_path="steps.py",
            function_name="echo",
            container_config={"local_folder": str(code)},
            inputs=[Input("text", "string"), Input("count", "number")],
            outputs=[Output("echoed", "string")],
        )
        sdk.create_pipeline(pipeline_name="burst", step_name="echo")

        def submit(index: int) -> str | ResourceExhaustedError:
            try:
                started = sdk.run_pipeline(
                    "burst", inputs={"text": f"n{index}", "count": 1}, wait=False
                )
            except ResourceExhaustedError as refused:
                return refused
            return str(started["execution_id"])

        with ThreadPoolExecutor(max_workers=64) as pool:
            outcomes = list(pool.map(submit, range(SUBMITTED)))
        accepted = [outcome for outcome in outcomes if isinstance(outcome, str)]
        ended = _wait_for_all(sdk, accepted)
        listed = sdk.list_pipeline_executions("burst")
        with_logs = sum(
            1
            for execution_id in accepted[:50]
            if any(
                line["message"].startswith("echo says")
                for line in sdk.get_pipeline_execution_logs(execution_id)
            )
        )
        sdk.close()

    assert len(outcomes) == SUBMITTED
    assert Counter(type(outcome).__name__ for outcome in outcomes).keys() <= {
        "str",
        "ResourceExhaustedError",
    }
    assert len(ended) == len(accepted) == len(listed)
    assert Counter(execution["status"] for execution in ended.values()) == {
        "Succeeded": len(accepted)
    }
    assert all(
        execution["outputs"]["echoed"] == execution["inputs"]["text"]
        for execution in ended.values()
    )
    assert with_logs == min(50, len(accepted))


def _wait_for_all(sdk: StepforgeSdk, ids: list[str]) -> dict[str, dict]:
    ended: dict[str, dict] = {}
    deadline = time.monotonic() + 240
    while len(ended) < len(ids) and time.monotonic() < deadline:
        for execution_id in ids:
            if execution_id in ended:
                continue
            execution = sdk.get_pipeline_execution(execution_id)
            if execution["status"] not in ("Pending", "Running"):
                ended[execution_id] = execution
        time.sleep(0.2)
    return ended
