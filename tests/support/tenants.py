"""Environments and tokens made straight in a suite's registry database, the
way `stepforge admin` does, while the suite runs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from stepforge.services.registry.assembly import open_registry_database
from stepforge.services.registry.tenancy import Tenancy


@dataclass(frozen=True)
class IssuedToken:
    """A token as its holder has it, with the id listings name it by."""

    token: str
    id: str


@contextmanager
def opened_tenancy(data_dir: Path) -> Iterator[Tenancy]:
    """The registry's tenancy of `data_dir`; SQLite in WAL mode lets it share
    the database with a running suite."""
    database = open_registry_database(data_dir)
    try:
        yield Tenancy(database)
    finally:
        database.close()


def issue_token(
    tenancy: Tenancy, project: str, environment: str, label: str
) -> IssuedToken:
    """A new user token of `project`/`environment`, which must exist."""
    before = {info.id for info in tenancy.list_tokens(project)}
    token = tenancy.create_token(tenancy.get_environment(project, environment), label)
    return IssuedToken(token, _new_id(tenancy, project, before))


def _new_id(tenancy: Tenancy, project: str, before: set[str]) -> str:
    # Listings never show a token, so its id is the one that was not there.
    (created,) = {info.id for info in tenancy.list_tokens(project)} - before
    return created
