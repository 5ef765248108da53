"""The registry's SQLite store of steps and pipelines."""

from __future__ import annotations

import hashlib
import sqlite3

from google.protobuf import timestamp_pb2

from stepforge.services.core.errors import AlreadyExists, FailedPrecondition, NotFound
from stepforge.services.core.names import short_name
from stepforge.services.core.sqlite import Database
from stepforge.v1 import common_pb2, registry_pb2

STEPS_SCHEMA = """
CREATE TABLE IF NOT EXISTS pipelines (
    environment_id TEXT NOT NULL REFERENCES environments(id),
    name TEXT NOT NULL,
    step TEXT NOT NULL,
    pipeline BLOB NOT NULL,
    PRIMARY KEY (environment_id, name)
);
CREATE TABLE IF NOT EXISTS pipeline_runs (
    environment_id TEXT NOT NULL,
    execution TEXT NOT NULL,
    pipeline TEXT NOT NULL,
    PRIMARY KEY (environment_id, execution)
);
CREATE TABLE IF NOT EXISTS steps (
    environment_id TEXT NOT NULL REFERENCES environments(id),
    name TEXT NOT NULL,
    status INTEGER NOT NULL,
    archive_sha256 TEXT NOT NULL DEFAULT '',
    step BLOB NOT NULL,
    PRIMARY KEY (environment_id, name)
);
"""


class RegistryStore:
    """Steps and pipelines. Every method is one transaction; safe to call from
    many threads."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # Steps.

    def insert_pending_step(self, environment_id: str, step: common_pb2.Step) -> None:
        """Records a new pending step; a failed one of the same name is replaced."""
        with self._db.transaction() as db:
            row = db.execute(
                "SELECT status FROM steps WHERE environment_id = ? AND name = ?",
                (environment_id, step.name),
            ).fetchone()
            if row is not None and row[0] != common_pb2.STEP_STATUS_FAILED:
                raise AlreadyExists(
                    f"name: step {short_name(step.name)!r} already exists"
                    " in this environment"
                )
            db.execute(
                "INSERT OR REPLACE INTO steps"
                " (environment_id, name, status, archive_sha256, step)"
                " VALUES (?, ?, ?, ?, ?)",
                (
                    environment_id,
                    step.name,
                    step.status,
                    step.archive_sha256,
                    step.SerializeToString(),
                ),
            )

    def get_step(self, environment_id: str, name: str) -> common_pb2.Step | None:
        with self._db.reading() as db:
            row = db.execute(
                "SELECT step FROM steps WHERE environment_id = ? AND name = ?",
                (environment_id, name),
            ).fetchone()
        return common_pb2.Step.FromString(row[0]) if row else None

    def list_steps(
        self, environment_id: str, after: str, limit: int
    ) -> list[common_pb2.Step]:
        with self._db.reading() as db:
            rows = db.execute(
                "SELECT step FROM steps WHERE environment_id = ? AND name > ?"
                " ORDER BY name LIMIT ?",
                (environment_id, after, limit),
            ).fetchall()
        return [common_pb2.Step.FromString(row[0]) for row in rows]

    def update_step(self, environment_id: str, step: common_pb2.Step) -> None:
        with self._db.transaction() as db:
            updated = db.execute(
                "UPDATE steps SET status = ?, archive_sha256 = ?, step = ?"
                " WHERE environment_id = ? AND name = ?",
                (
                    step.status,
                    step.archive_sha256,
                    step.SerializeToString(),
                    environment_id,
                    step.name,
                ),
            ).rowcount
        if not updated:
            raise NotFound(f"name: step {short_name(step.name)!r} does not exist")

    def delete_step(
        self, environment_id: str, name: str, *, only_pending: bool
    ) -> None:
        with self._db.transaction() as db:
            users = [
                row[0]
                for row in db.execute(
                    "SELECT name FROM pipelines WHERE environment_id = ? AND step = ?"
                    " ORDER BY name",
                    (environment_id, name),
                )
            ]
            if users:
                raise FailedPrecondition(
                    f"name: step {short_name(name)!r} is used by pipeline"
                    f" {', '.join(repr(short_name(user)) for user in users)};"
                    " delete the pipeline first"
                )
            row = db.execute(
                "SELECT status FROM steps WHERE environment_id = ? AND name = ?",
                (environment_id, name),
            ).fetchone()
            if row is None:
                raise NotFound(f"name: step {short_name(name)!r} does not exist")
            pending = row[0] == common_pb2.STEP_STATUS_PENDING
            if only_pending and not pending:
                raise FailedPrecondition(
                    f"name: step {short_name(name)!r} was already built;"
                    " delete it instead"
                )
            if not only_pending and pending:
                raise FailedPrecondition(
                    f"name: step {short_name(name)!r} is being built; "
                    "delete it once it is Ready or Failed"
                )
            db.execute(
                "DELETE FROM steps WHERE environment_id = ? AND name = ?",
                (environment_id, name),
            )

    # Pipelines.

    def insert_pipeline(
        self, environment_id: str, pipeline: registry_pb2.Pipeline
    ) -> None:
        """Records a pipeline wrapping an existing step that has not failed."""
        with self._db.transaction() as db:
            row = db.execute(
                "SELECT status FROM steps WHERE environment_id = ? AND name = ?",
                (environment_id, pipeline.step),
            ).fetchone()
            if row is None:
                raise NotFound(
                    f"pipeline.step: step {short_name(pipeline.step)!r} does not exist"
                )
            if row[0] == common_pb2.STEP_STATUS_FAILED:
                raise FailedPrecondition(
                    f"pipeline.step: the build of step {short_name(pipeline.step)!r}"
                    " failed; create the step again first"
                )
            try:
                db.execute(
                    "INSERT INTO pipelines (environment_id, name, step, pipeline)"
                    " VALUES (?, ?, ?, ?)",
                    (
                        environment_id,
                        pipeline.name,
                        pipeline.step,
                        pipeline.SerializeToString(),
                    ),
                )
            except sqlite3.IntegrityError:
                raise AlreadyExists(
                    f"pipeline.name: pipeline {short_name(pipeline.name)!r}"
                    " already exists"
                ) from None

    def get_pipeline(
        self, environment_id: str, name: str
    ) -> registry_pb2.Pipeline | None:
        with self._db.reading() as db:
            row = db.execute(
                "SELECT pipeline FROM pipelines WHERE environment_id = ? AND name = ?",
                (environment_id, name),
            ).fetchone()
        return registry_pb2.Pipeline.FromString(row[0]) if row else None

    def list_pipelines(
        self, environment_id: str, after: str, limit: int
    ) -> list[registry_pb2.Pipeline]:
        with self._db.reading() as db:
            rows = db.execute(
                "SELECT pipeline FROM pipelines WHERE environment_id = ? AND name > ?"
                " ORDER BY name LIMIT ?",
                (environment_id, after, limit),
            ).fetchall()
        return [registry_pb2.Pipeline.FromString(row[0]) for row in rows]

    def delete_pipeline(self, environment_id: str, name: str) -> None:
        with self._db.transaction() as db:
            running = [
                row[0]
                for row in db.execute(
                    "SELECT execution FROM pipeline_runs"
                    " WHERE environment_id = ? AND pipeline = ? ORDER BY execution",
                    (environment_id, name),
                )
            ]
            if running:
                raise FailedPrecondition(
                    f"name: pipeline {short_name(name)!r} has executions that have not"
                    f" ended: {', '.join(short_name(run) for run in running)}"
                )
            deleted = db.execute(
                "DELETE FROM pipelines WHERE environment_id = ? AND name = ?",
                (environment_id, name),
            ).rowcount
        if not deleted:
            raise NotFound(f"name: pipeline {short_name(name)!r} does not exist")

    def acquire_run(
        self, environment_id: str, pipeline: str, execution: str
    ) -> registry_pb2.Pipeline:
        with self._db.transaction() as db:
            row = db.execute(
                "SELECT pipeline FROM pipelines WHERE environment_id = ? AND name = ?",
                (environment_id, pipeline),
            ).fetchone()
            if row is None:
                raise NotFound(
                    f"pipeline: pipeline {short_name(pipeline)!r} does not exist"
                )
            db.execute(
                "INSERT OR REPLACE INTO pipeline_runs"
                " (environment_id, execution, pipeline) VALUES (?, ?, ?)",
                (environment_id, execution, pipeline),
            )
        return registry_pb2.Pipeline.FromString(row[0])

    def release_run(self, environment_id: str, execution: str) -> None:
        with self._db.transaction() as db:
            db.execute(
                "DELETE FROM pipeline_runs WHERE environment_id = ? AND execution = ?",
                (environment_id, execution),
            )

    def pipeline_runs(self) -> list[tuple[str, str, str]]:
        """(environment, pipeline, execution) of every run recorded as going on."""
        with self._db.reading() as db:
            rows = db.execute(
                "SELECT environment_id, pipeline, execution FROM pipeline_runs"
                " ORDER BY environment_id, execution"
            ).fetchall()
        return [(row[0], row[1], row[2]) for row in rows]

    def pending_steps(self) -> list[tuple[str, common_pb2.Step]]:
        with self._db.reading() as db:
            rows = db.execute(
                "SELECT environment_id, step FROM steps WHERE status = ?",
                (common_pb2.STEP_STATUS_PENDING,),
            ).fetchall()
        return [(row[0], common_pb2.Step.FromString(row[1])) for row in rows]

    def referenced_archives(self) -> set[str]:
        with self._db.reading() as db:
            rows = db.execute(
                "SELECT DISTINCT archive_sha256 FROM steps WHERE archive_sha256 != ''"
            ).fetchall()
        return {row[0] for row in rows}


def now_timestamp() -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.GetCurrentTime()
    return stamp


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
