"""The runner holds its own process, and so the step, to the spec's limits."""

from __future__ import annotations

import resource
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from support.runner_steps import Outcome, StepDir, step_for_param

MB = 1024 * 1024

# Reports what the step's process may use, and whether the runner itself
# imported `resource` (the step's own import comes after the check).
LIMITS_SEEN = """
import sys

def run():
    runner_imported = "resource" in sys.modules
    import resource
    return {"seen": {
        "runner_imported_resource": runner_imported,
        "memory": list(resource.getrlimit(resource.RLIMIT_AS)),
        "cpu": list(resource.getrlimit(resource.RLIMIT_CPU)),
        "open_files": list(resource.getrlimit(resource.RLIMIT_NOFILE)),
    }}
"""


_LOWERED = (
    "import os, resource, sys\n"
    "limit = int(sys.argv[1])\n"
    "resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


class LimitedStep(StepDir):
    """A step folder whose `step.py` the runner runs under the limits given."""

    def run_limited(
        self,
        limits: Any = None,
        outputs: list[dict[str, Any]] | None = None,
        host_open_files: int | None = None,
    ) -> Outcome:
        fields: dict[str, Any] = {"protocol": 1, "outputs": outputs or []}
        if limits is not None:
            fields["limits"] = limits
        launcher: list[str] = []
        if host_open_files is not None:
            # The runner replaces a parent that lowered the hard limit first.
            launcher = [sys.executable, "-c", _LOWERED, str(host_open_files)]
        return self.run(launcher=launcher, **fields)

    def seen(self, limits: Any = None, **options: Any) -> dict[str, Any]:
        self.write("step.py", LIMITS_SEEN)
        outcome = self.run_limited(limits, [_json_output("seen")], **options)
        assert outcome.returncode == 0, outcome.stderr
        seen: dict[str, Any] = outcome.result["outputs"]["seen"]["value"]
        return seen


@pytest.fixture(params=["host", "python3.8"])
def step(request: pytest.FixtureRequest, tmp_path: Path) -> LimitedStep:
    return step_for_param(request, tmp_path, LimitedStep)


def _json_output(name: str) -> dict[str, Any]:
    return {"name": name, "data_type": "json", "default": None}


def test_soft_and_hard_limits_are_both_set_with_cpu_grace(step: LimitedStep) -> None:
    seen = step.seen({"memory_bytes": 900 * MB, "cpu_seconds": 50, "open_files": 64})

    assert seen["memory"] == [900 * MB, 900 * MB]
    assert seen["cpu"] == [50, 55]
    assert seen["open_files"] == [64, 64]


def test_no_limits_in_the_spec_change_nothing(step: LimitedStep) -> None:
    seen = step.seen()

    assert seen["runner_imported_resource"] is False
    assert seen["memory"] == list(resource.getrlimit(resource.RLIMIT_AS))
    assert seen["cpu"] == list(resource.getrlimit(resource.RLIMIT_CPU))
    assert seen["open_files"] == list(resource.getrlimit(resource.RLIMIT_NOFILE))


def test_a_limit_above_the_hosts_hard_limit_is_lowered_to_it(
    step: LimitedStep,
) -> None:
    seen = step.seen({"open_files": 50}, host_open_files=40)

    assert seen["open_files"] == [40, 40]


def test_memory_past_the_limit_fails_naming_the_limit(step: LimitedStep) -> None:
    step.write("step.py", "def run():\n    data = bytearray(600 * 1024 * 1024)\n")

    outcome = step.run_limited({"memory_bytes": 200 * MB})

    assert outcome.reason == (
        "MemoryError: the step used more than its memory limit of 209715200 bytes"
    )
    assert outcome.result["error_type"] == "MemoryError"


def test_a_step_that_fills_its_memory_still_gets_a_result_and_traceback(
    step: LimitedStep,
) -> None:
    step.write(
        "step.py",
        """
        def run():
            held = []
            while True:
                held.append(bytearray(64 * 1024))
        """,
    )

    outcome = step.run_limited({"memory_bytes": 200 * MB})

    assert outcome.reason.startswith("MemoryError: the step used more than")
    assert "Traceback (most recent call last):" in outcome.stderr


def test_a_memory_error_without_a_memory_limit_keeps_its_own_reason(
    step: LimitedStep,
) -> None:
    step.write("step.py", "def run():\n    raise MemoryError('made up')\n")

    outcome = step.run_limited({"open_files": 64})

    assert outcome.reason == "MemoryError: made up"


def test_open_files_past_the_limit_fail_the_step(step: LimitedStep) -> None:
    step.write(
        "step.py",
        """
        def run():
            handles = [open(__file__) for _ in range(100)]
        """,
    )

    outcome = step.run_limited({"open_files": 50})

    assert outcome.reason.startswith("OSError: [Errno 24] Too many open files")
    assert outcome.result["error_type"] == "OSError"
    assert "Traceback (most recent call last):" in outcome.stderr


def test_a_step_that_keeps_every_descriptor_still_gets_its_result(
    step: LimitedStep,
) -> None:
    step.write(
        "step.py",
        """
        HANDLES = []

        def run():
            while True:
                HANDLES.append(open(__file__))
        """,
    )

    outcome = step.run_limited({"open_files": 50})

    assert outcome.reason.startswith("OSError: [Errno 24] Too many open files")


def test_cpu_time_past_the_limit_kills_the_step_with_sigxcpu(
    step: LimitedStep,
) -> None:
    step.write("step.py", "def run():\n    while True:\n        pass\n")

    outcome = step.run_limited({"cpu_seconds": 1})

    assert outcome.returncode == -signal.SIGXCPU
    assert outcome.result is None


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        pytest.param([], "spec field 'limits' must be an object", id="array"),
        pytest.param(
            {"memory_bytes": 0},
            "spec 'limits' field 'memory_bytes' must be an integer from 1 to",
            id="zero",
        ),
        pytest.param(
            {"cpu_seconds": True},
            "spec 'limits' field 'cpu_seconds' must be an integer from 1 to",
            id="bool",
        ),
        pytest.param(
            {"open_files": 2**63},
            "spec 'limits' field 'open_files' must be an integer from 1 to",
            id="too big",
        ),
        pytest.param(
            {"output_bytes": 10}, "spec 'limits' has no field 'output_bytes'", id="key"
        ),
    ],
)
def test_bad_limits_exit_2_naming_the_field(
    tmp_path: Path, limits: Any, message: str
) -> None:
    step = LimitedStep(tmp_path, sys.executable)
    step.write("step.py", "def run():\n    pass\n")

    outcome = step.run_limited(limits)

    assert outcome.returncode == 2
    assert outcome.result["error_type"] == "SpecError"
    assert outcome.result["reason"].startswith(message)
