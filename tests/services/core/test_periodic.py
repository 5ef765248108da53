"""Background housekeeping: runs at once, survives a failing round, stops."""

from __future__ import annotations

import threading

import pytest

from stepforge.services.core.periodic import Periodic


def test_a_failing_round_is_logged_and_the_next_one_still_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rounds: list[int] = []
    second = threading.Event()

    def action() -> None:
        rounds.append(len(rounds))
        if len(rounds) == 1:
            raise RuntimeError("store unreachable")
        second.set()

    periodic = Periodic("test-gc", action, interval_s=0.01)
    periodic.start()
    try:
        assert second.wait(10)
    finally:
        periodic.stop()

    assert "test-gc failed; retrying later" in caplog.text


def test_stop_ends_the_rounds() -> None:
    ran = threading.Event()
    periodic = Periodic("test-gc", ran.set, interval_s=3600)
    periodic.start()
    assert ran.wait(10)

    periodic.stop()
    ran.clear()

    # The thread left its wait at once and will not run the action again.
    assert not any(t.name == "test-gc" and t.is_alive() for t in _settled())
    assert not ran.is_set()


def _settled() -> list[threading.Thread]:
    for thread in threading.enumerate():
        if thread.name == "test-gc":
            thread.join(10)
    return threading.enumerate()
