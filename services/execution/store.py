"""The execution service's SQLite store: executions and their log lines."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from stepforge.services.core.errors import NotFound
from stepforge.services.core.sqlite import Database
from stepforge.v1 import common_pb2, execution_pb2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS executions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    environment_id TEXT NOT NULL,
    name TEXT NOT NULL UNIQUE,
    pipeline TEXT NOT NULL,
    status INTEGER NOT NULL,
    execution BLOB NOT NULL,
    step BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS executions_by_status ON executions (status);
CREATE TABLE IF NOT EXISTS log_lines (
    execution TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    time_ns INTEGER NOT NULL,
    stream INTEGER NOT NULL,
    text TEXT NOT NULL,
    PRIMARY KEY (execution, sequence)
);
"""

ACTIVE_STATUSES = (
    execution_pb2.EXECUTION_STATUS_PENDING,
    execution_pb2.EXECUTION_STATUS_RUNNING,
)


@dataclass(frozen=True)
class StoredExecution:
    """An execution with what it needs to run: the step as it was at submit."""

    environment: str
    execution: execution_pb2.Execution
    step: common_pb2.Step


@dataclass(frozen=True)
class StoredLine:
    sequence: int
    time_ns: int
    stream: int
    text: str


class ExecutionStore:
    """Every method is one transaction; safe to call from many threads."""

    def __init__(self, path: Path) -> None:
        self._db = Database(path, _SCHEMA)

    def close(self) -> None:
        self._db.close()

    def insert(
        self,
        environment: str,
        execution: execution_pb2.Execution,
        step: common_pb2.Step,
    ) -> None:
        with self._db.transaction() as db:
            db.execute(
                "INSERT INTO executions"
                " (environment_id, name, pipeline, status, execution, step)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    environment,
                    execution.name,
                    execution.pipeline,
                    execution.status,
                    execution.SerializeToString(),
                    step.SerializeToString(),
                ),
            )

    def update(self, execution: execution_pb2.Execution) -> None:
        with self._db.transaction() as db:
            changed = db.execute(
                "UPDATE executions SET status = ?, execution = ? WHERE name = ?",
                (execution.status, execution.SerializeToString(), execution.name),
            ).rowcount
        if not changed:
            raise NotFound(f"name: execution {execution.name!r} does not exist")

    def get(self, name: str) -> StoredExecution | None:
        with self._db.reading() as db:
            row = db.execute(
                "SELECT environment_id, execution, step FROM executions WHERE name = ?",
                (name,),
            ).fetchone()
        return _stored(row) if row else None

    def page(
        self, environment: str, pipeline: str, before_seq: int | None, limit: int
    ) -> list[tuple[int, execution_pb2.Execution]]:
        """Newest first; `before_seq` continues a previous page."""
        query = "SELECT seq, execution FROM executions WHERE environment_id = ?"
        arguments: list[object] = [environment]
        if pipeline:
            query += " AND pipeline = ?"
            arguments.append(pipeline)
        if before_seq is not None:
            query += " AND seq < ?"
            arguments.append(before_seq)
        query += " ORDER BY seq DESC LIMIT ?"
        arguments.append(limit)
        with self._db.reading() as db:
            rows = db.execute(query, arguments).fetchall()
        return [(row[0], execution_pb2.Execution.FromString(row[1])) for row in rows]

    def active(self) -> list[StoredExecution]:
        """Executions that have not ended, oldest first."""
        with self._db.reading() as db:
            rows = db.execute(
                "SELECT environment_id, execution, step FROM executions"
                f" WHERE status IN ({', '.join('?' * len(ACTIVE_STATUSES))})"
                " ORDER BY seq",
                ACTIVE_STATUSES,
            ).fetchall()
        return [_stored(row) for row in rows]

    def delete(self, name: str) -> None:
        with self._db.transaction() as db:
            db.execute("DELETE FROM log_lines WHERE execution = ?", (name,))
            db.execute("DELETE FROM executions WHERE name = ?", (name,))

    def append_lines(self, execution: str, lines: Sequence[StoredLine]) -> None:
        with self._db.transaction() as db:
            db.executemany(
                "INSERT INTO log_lines (execution, sequence, time_ns, stream, text)"
                " VALUES (?, ?, ?, ?, ?)",
                [
                    (execution, line.sequence, line.time_ns, line.stream, line.text)
                    for line in lines
                ],
            )

    def lines(self, execution: str, from_sequence: int, limit: int) -> list[StoredLine]:
        with self._db.reading() as db:
            rows = db.execute(
                "SELECT sequence, time_ns, stream, text FROM log_lines"
                " WHERE execution = ? AND sequence >= ? ORDER BY sequence LIMIT ?",
                (execution, from_sequence, limit),
            ).fetchall()
        return [StoredLine(*row) for row in rows]

    def next_sequence(self, execution: str) -> int:
        with self._db.reading() as db:
            row = db.execute(
                "SELECT MAX(sequence) FROM log_lines WHERE execution = ?", (execution,)
            ).fetchone()
        return 0 if row[0] is None else int(row[0]) + 1


def _stored(row: tuple[str, bytes, bytes]) -> StoredExecution:
    return StoredExecution(
        environment=row[0],
        execution=execution_pb2.Execution.FromString(row[1]),
        step=common_pb2.Step.FromString(row[2]),
    )
