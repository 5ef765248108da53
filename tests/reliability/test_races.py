"""Concurrent calls on the same thing end in one consistent state."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import pytest
from support.step_code import write_step_code
from support.suite import SuiteUnderTest, running_suite

from stepforge import (
    AlreadyExistsError,
    FailedPreconditionError,
    Input,
    NotFoundError,
    Output,
    StepforgeSdk,
)


@pytest.fixture
def suite(tmp_path: Path) -> Iterator[SuiteUnderTest]:
    with running_suite(tmp_path / "data") as running:
        yield running


def _all_at_once(actions: list[Callable[[], object]]) -> list[object]:
    """Runs every action at the same moment; returns results or exceptions."""
    start = threading.Barrier(len(actions))

    def run(action: Callable[[], object]) -> object:
        start.wait(timeout=30)
        try:
            return action()
        except Exception as error:  # the outcome under test
            return error

    with ThreadPoolExecutor(max_workers=len(actions)) as pool:
        return list(pool.map(run, actions))


def test_twenty_concurrent_creates_of_one_name_make_exactly_one_step(
    suite: SuiteUnderTest, tmp_path: Path
) -> None:
    code = write_step_code(tmp_path / "code")

    def create() -> object:
        return suite.sdk.create_step(
            step_name="contested",
            function_path="steps.py",
            function_name="echo",
            container_config={"local_folder": str(code)},
            inputs=[Input("text", "string")],
            outputs=[Output("echoed", "string")],
        )

    outcomes = _all_at_once([create] * 20)

    kinds = Counter(type(outcome).__name__ for outcome in outcomes)
    assert kinds == {"dict": 1, "AlreadyExistsError": 19}, outcomes
    assert [s["parameters"]["step_name"] for s in suite.sdk.list_steps()] == [
        "contested"
    ]
    assert all(isinstance(outcome, (dict, AlreadyExistsError)) for outcome in outcomes)


def test_concurrent_run_cancel_and_delete_end_consistently(
    suite: SuiteUnderTest, tmp_path: Path
) -> None:
    code = write_step_code(tmp_path / "code")
    sdk = suite.sdk
    sdk.create_step(
        function_path="steps.py",
        function_name="stamp",
        container_config={"local_folder": str(code)},
        inputs=[Input("label", "number")],
        outputs=[Output("label", "number")],
    )
    sdk.create_pipeline(pipeline_name="stamp", step_name="stamp")

    for round_index in range(5):
        started = sdk.run_pipeline("stamp", inputs={"label": round_index}, wait=False)
        execution_id = started["execution_id"]
        outcomes = _all_at_once(
            [
                partial(sdk.cancel_pipeline_execution, execution_id),
                partial(sdk.delete_pipeline_execution, execution_id),
                partial(sdk.get_pipeline_execution, execution_id),
            ]
        )
        cancelled, deleted, _ = outcomes
        # A cancel either stops the run or finds it already ended; a delete
        # succeeds only once it has ended, and otherwise says why.
        assert isinstance(cancelled, (dict, FailedPreconditionError, NotFoundError))
        assert deleted is None or isinstance(deleted, FailedPreconditionError)
        try:
            final = sdk.get_pipeline_execution(execution_id)
        except NotFoundError:
            assert deleted is None
            continue
        _wait_until_ended(sdk, execution_id)
        final = sdk.get_pipeline_execution(execution_id)
        assert final["status"] in ("Succeeded", "Cancelled")
        if isinstance(cancelled, dict):
            assert cancelled["status"] in ("Cancelled", "Succeeded")
    sdk.delete_pipeline("stamp")


def _wait_until_ended(sdk: StepforgeSdk, execution_id: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = sdk.get_pipeline_execution(execution_id)["status"]
        if status not in ("Pending", "Running"):
            return
        time.sleep(0.02)
    raise AssertionError(f"execution {execution_id} did not end")
