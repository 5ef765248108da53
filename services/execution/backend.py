"""What the execution service asks of a backend, whichever runs the steps."""

from __future__ import annotations

from typing import Protocol

from stepforge.services.execution.store import StoredExecution


class ExecutionBackend(Protocol):
    """Runs accepted executions and ends each through the Lifecycle."""

    def submit(self, run: StoredExecution) -> None:
        """Takes a pending execution; returns at once."""
        ...

    def cancel(self, name: str) -> bool:
        """Stops the execution wherever it is; False when this backend does
        not run it."""
        ...

    def recover(self, active: list[StoredExecution]) -> None:
        """Settles the executions a previous start left active."""
        ...

    def shutdown(self, timeout_s: float = 10.0) -> None:
        """Stops the backend's threads."""
        ...
