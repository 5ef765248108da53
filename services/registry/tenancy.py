"""Projects, their environments and settings, and the tokens that open them.

A token grants one role: user of one environment, or admin of one project
(who changes the project's settings and nothing else). Tokens are random and
only their SHA-256 is kept; the first 12 hex digits of it name a token in
listings, which reveals nothing of the token itself.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import sys
import uuid
from dataclasses import dataclass

from stepforge.services.core.auth import Principal
from stepforge.services.core.errors import AlreadyExists, InvalidArgument, NotFound
from stepforge.services.core.languages import find_language
from stepforge.services.core.names import STEP_NAME_RULE, is_valid_step_name
from stepforge.services.core.sqlite import Database
from stepforge.v1 import common_pb2

TENANCY_SCHEMA = """
CREATE TABLE IF NOT EXISTS projects (
    name TEXT PRIMARY KEY,
    container_config BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS project_known_hosts (
    project TEXT PRIMARY KEY REFERENCES projects(name),
    known_hosts TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS environments (
    id TEXT PRIMARY KEY,
    project TEXT NOT NULL REFERENCES projects(name),
    name TEXT NOT NULL,
    limits BLOB NOT NULL DEFAULT x'',
    UNIQUE (project, name)
);
CREATE TABLE IF NOT EXISTS access_tokens (
    token_sha256 TEXT PRIMARY KEY,
    project TEXT NOT NULL REFERENCES projects(name),
    environment_id TEXT REFERENCES environments(id),
    admin INTEGER NOT NULL,
    label TEXT NOT NULL,
    create_time TEXT NOT NULL,
    revoke_time TEXT
);
"""

TOKEN_PREFIX = "sf_"
TOKEN_ID_LENGTH = 12


@dataclass(frozen=True)
class Environment:
    id: str
    project: str
    name: str


@dataclass(frozen=True)
class TokenInfo:
    """A token as listings show it: never the token itself."""

    id: str
    project: str
    environment: str | None
    admin: bool
    label: str
    create_time: str
    revoke_time: str | None


class Tenancy:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._migrate()

    def _migrate(self) -> None:
        """Brings a database made by an earlier version up to this schema."""
        with self._db.transaction() as db:
            columns = {row[1] for row in db.execute("PRAGMA table_info(environments)")}
            if "limits" not in columns:
                db.execute(
                    "ALTER TABLE environments"
                    " ADD COLUMN limits BLOB NOT NULL DEFAULT x''"
                )
            legacy = db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'tokens'"
            ).fetchone()
            if legacy:
                db.execute(
                    "INSERT OR IGNORE INTO access_tokens (token_sha256, project,"
                    " environment_id, admin, label, create_time)"
                    " SELECT t.token_sha256, e.project, t.environment_id, 0, '',"
                    " t.create_time FROM tokens t JOIN environments e"
                    " ON e.id = t.environment_id"
                )
                db.execute("DROP TABLE tokens")

    # Projects.

    def create_project(self, name: str, defaults: common_pb2.ContainerConfig) -> None:
        _check_name("project", name)
        try:
            with self._db.transaction() as db:
                db.execute(
                    "INSERT INTO projects (name, container_config) VALUES (?, ?)",
                    (name, defaults.SerializeToString()),
                )
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"project: {name!r} already exists") from None

    def list_projects(self) -> list[str]:
        with self._db.reading() as db:
            return [
                row[0] for row in db.execute("SELECT name FROM projects ORDER BY name")
            ]

    def get_project_config(self, project: str) -> common_pb2.ContainerConfig:
        with self._db.reading() as db:
            row = db.execute(
                "SELECT container_config FROM projects WHERE name = ?", (project,)
            ).fetchone()
        if row is None:
            raise NotFound(f"project: {project!r} does not exist")
        return common_pb2.ContainerConfig.FromString(row[0])

    def get_known_hosts(self, project: str) -> str:
        with self._db.reading() as db:
            row = db.execute(
                "SELECT known_hosts FROM project_known_hosts WHERE project = ?",
                (project,),
            ).fetchone()
        return str(row[0]) if row else ""

    def set_project_settings(
        self,
        project: str,
        config: common_pb2.ContainerConfig,
        known_hosts: str | None,
    ) -> None:
        """Writes the container defaults and, unless None, the known hosts."""
        with self._db.transaction() as db:
            db.execute(
                "UPDATE projects SET container_config = ? WHERE name = ?",
                (config.SerializeToString(), project),
            )
            if known_hosts is not None:
                db.execute(
                    "INSERT OR REPLACE INTO project_known_hosts (project, known_hosts)"
                    " VALUES (?, ?)",
                    (project, known_hosts),
                )

    # Environments.

    def ensure_environment(
        self, project: str, environment: str, defaults: common_pb2.ContainerConfig
    ) -> tuple[Environment, bool]:
        """Returns the environment, creating it (and its project) when absent;
        the flag says whether it was created."""
        with self._db.transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO projects (name, container_config) VALUES (?, ?)",
                (project, defaults.SerializeToString()),
            )
            found = _environment(db, project, environment)
            if found is not None:
                return found, False
            created = Environment(uuid.uuid4().hex, project, environment)
            db.execute(
                "INSERT INTO environments (id, project, name) VALUES (?, ?, ?)",
                (created.id, project, environment),
            )
            return created, True

    def create_environment(self, project: str, name: str) -> Environment:
        _check_name("environment", name)
        with self._db.transaction() as db:
            if not db.execute(
                "SELECT 1 FROM projects WHERE name = ?", (project,)
            ).fetchone():
                raise NotFound(f"project: {project!r} does not exist")
            if _environment(db, project, name) is not None:
                raise AlreadyExists(f"environment: {project}/{name} already exists")
            created = Environment(uuid.uuid4().hex, project, name)
            db.execute(
                "INSERT INTO environments (id, project, name) VALUES (?, ?, ?)",
                (created.id, project, name),
            )
        return created

    def get_environment(self, project: str, name: str) -> Environment:
        with self._db.reading() as db:
            found = _environment(db, project, name)
        if found is None:
            raise NotFound(f"environment: {project}/{name} does not exist")
        return found

    def list_environments(self, project: str | None = None) -> list[Environment]:
        query = "SELECT id, project, name FROM environments"
        arguments: tuple[str, ...] = ()
        if project is not None:
            query += " WHERE project = ?"
            arguments = (project,)
        with self._db.reading() as db:
            rows = db.execute(query + " ORDER BY project, name", arguments).fetchall()
        return [Environment(*row) for row in rows]

    def project_of_environment(self, environment_id: str) -> str | None:
        with self._db.reading() as db:
            row = db.execute(
                "SELECT project FROM environments WHERE id = ?", (environment_id,)
            ).fetchone()
        return row[0] if row else None

    def set_limits(
        self, environment: Environment, limits: common_pb2.ExecutionLimits
    ) -> None:
        with self._db.transaction() as db:
            db.execute(
                "UPDATE environments SET limits = ? WHERE id = ?",
                (limits.SerializeToString(), environment.id),
            )

    def get_limits(self, environment: Environment) -> common_pb2.ExecutionLimits:
        with self._db.reading() as db:
            row = db.execute(
                "SELECT limits FROM environments WHERE id = ?", (environment.id,)
            ).fetchone()
        return common_pb2.ExecutionLimits.FromString(row[0] if row else b"")

    # Tokens.

    def create_token(self, environment: Environment, label: str = "") -> str:
        """A new token for users of `environment`. Only its hash is kept, so
        this is the one time it can be read."""
        return self._insert_token(environment.project, environment.id, False, label)

    def create_admin_token(self, project: str, label: str = "") -> str:
        """A new admin token of `project`, shown this once."""
        self.get_project_config(project)
        return self._insert_token(project, None, True, label)

    def resolve_token(self, token: str) -> Principal | None:
        """Who the token speaks for, or None when it is unknown or revoked."""
        with self._db.reading() as db:
            row = db.execute(
                "SELECT t.project, t.environment_id, t.admin, e.limits"
                " FROM access_tokens t LEFT JOIN environments e"
                " ON e.id = t.environment_id"
                " WHERE t.token_sha256 = ? AND t.revoke_time IS NULL",
                (_digest(token),),
            ).fetchone()
        if row is None:
            return None
        return Principal(
            project=row[0],
            environment=row[1] or "",
            admin=bool(row[2]),
            limits=common_pb2.ExecutionLimits.FromString(row[3] or b""),
        )

    def list_tokens(self, project: str | None = None) -> list[TokenInfo]:
        query = (
            "SELECT t.token_sha256, t.project, e.name, t.admin, t.label,"
            " t.create_time, t.revoke_time FROM access_tokens t"
            " LEFT JOIN environments e ON e.id = t.environment_id"
        )
        arguments: tuple[str, ...] = ()
        if project is not None:
            query += " WHERE t.project = ?"
            arguments = (project,)
        with self._db.reading() as db:
            rows = db.execute(
                query + " ORDER BY t.create_time, t.token_sha256", arguments
            )
            return [
                TokenInfo(
                    id=row[0][:TOKEN_ID_LENGTH],
                    project=row[1],
                    environment=row[2],
                    admin=bool(row[3]),
                    label=row[4],
                    create_time=row[5],
                    revoke_time=row[6],
                )
                for row in rows
            ]

    def revoke_token(self, token_id: str) -> TokenInfo:
        """Revokes the token whose id is `token_id`; it stops working at once
        on the registry and within seconds on the other services."""
        if len(token_id) != TOKEN_ID_LENGTH or not all(
            c in "0123456789abcdef" for c in token_id
        ):
            raise InvalidArgument(
                "token_id", f"must be the {TOKEN_ID_LENGTH} hex digits a listing shows"
            )
        with self._db.transaction() as db:
            changed = db.execute(
                "UPDATE access_tokens SET revoke_time = datetime('now')"
                " WHERE substr(token_sha256, 1, ?) = ? AND revoke_time IS NULL",
                (TOKEN_ID_LENGTH, token_id),
            ).rowcount
        if not changed:
            raise NotFound(f"token_id: no active token has the id {token_id!r}")
        return next(info for info in self.list_tokens() if info.id == token_id)

    def _insert_token(
        self, project: str, environment_id: str | None, admin: bool, label: str
    ) -> str:
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self._db.transaction() as db:
            db.execute(
                "INSERT INTO access_tokens (token_sha256, project, environment_id,"
                " admin, label, create_time) VALUES (?, ?, ?, ?, ?, datetime('now'))",
                (_digest(token), project, environment_id, int(admin), label),
            )
        return token


def _environment(db: sqlite3.Connection, project: str, name: str) -> Environment | None:
    row = db.execute(
        "SELECT id FROM environments WHERE project = ? AND name = ?", (project, name)
    ).fetchone()
    return Environment(row[0], project, name) if row else None


def _check_name(field: str, name: str) -> None:
    if not is_valid_step_name(name):
        raise InvalidArgument(field, f"must be {STEP_NAME_RULE}")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def default_container_config() -> common_pb2.ContainerConfig:
    """What a new project's steps fall back on: this host's Python when it is a
    supported language, else 3.11."""
    host = f"python:{sys.version_info.major}.{sys.version_info.minor}-slim"
    return common_pb2.ContainerConfig(
        language=host if find_language(host) else "python:3.11-slim"
    )
