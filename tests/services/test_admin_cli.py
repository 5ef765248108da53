"""`stepforge admin`, run as a process the way an operator runs it, against
the data directory of a suite that may be running."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from support.suite import SuiteUnderTest, running_suite

from stepforge.v1 import registry_pb2, registry_pb2_grpc

KNOWN_HOSTS = "# set by the admin command tests\n"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def suite(data_dir: Path) -> Iterator[SuiteUnderTest]:
    with running_suite(data_dir) as running:
        yield running


@pytest.fixture
def registry(suite: SuiteUnderTest) -> Iterator[registry_pb2_grpc.RegistryServiceStub]:
    with grpc.insecure_channel(suite.url) as channel:
        yield registry_pb2_grpc.RegistryServiceStub(channel)


def test_projects_are_created_and_listed(data_dir: Path) -> None:
    created = admin_json(data_dir, "projects", "create", "research")
    admin_json(data_dir, "projects", "create", "ops")

    listed = admin_json(data_dir, "projects", "list")

    assert created == {"project": "research"}
    assert listed == [{"project": "ops"}, {"project": "research"}]


def test_environments_are_created_and_listed_by_project(data_dir: Path) -> None:
    admin_json(data_dir, "projects", "create", "research")
    admin_json(data_dir, "projects", "create", "ops")
    created = admin_json(data_dir, "environments", "create", "research", "staging")
    admin_json(data_dir, "environments", "create", "ops", "staging")

    listed = admin_json(data_dir, "environments", "list", "--project", "research")

    assert created == {"project": "research", "environment": "staging"}
    assert listed == [{"project": "research", "environment": "staging"}]
    assert len(admin_json(data_dir, "environments", "list")) == 2


@pytest.mark.parametrize(
    ("command", "field_name"),
    [
        (["projects", "create", "research"], "project"),
        (["environments", "create", "research", "staging"], "environment"),
    ],
)
def test_a_taken_name_is_refused_naming_the_field(
    data_dir: Path, command: list[str], field_name: str
) -> None:
    admin_json(data_dir, "projects", "create", "research")
    admin_json(data_dir, "environments", "create", "research", "staging")

    refused = admin(data_dir, *command)

    assert refused.returncode == 2
    assert refused.stderr.startswith(f"stepforge admin: {field_name}: ")
    assert "already exists" in refused.stderr
    assert refused.stdout == ""


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["projects", "create", "bad name"], "project: must be"),
        (["environments", "create", "research", "../up"], "environment: must be"),
        (["environments", "create", "absent", "staging"], "project: 'absent'"),
        (["tokens", "create", "research", "--environment", "absent"], "environment:"),
        (["tokens", "create", "absent", "--admin"], "project: 'absent'"),
        (["tokens", "revoke", "not-an-id"], "token_id: must be the 12 hex digits"),
        (["tokens", "revoke", "0" * 12], "token_id: no active token"),
    ],
)
def test_a_bad_argument_is_refused_naming_the_field(
    data_dir: Path, command: list[str], message: str
) -> None:
    admin_json(data_dir, "projects", "create", "research")

    refused = admin(data_dir, *command)

    assert refused.returncode == 2
    assert message in refused.stderr


def test_a_user_token_opens_its_environment_on_a_running_suite(
    data_dir: Path, registry: registry_pb2_grpc.RegistryServiceStub
) -> None:
    admin_json(data_dir, "projects", "create", "research")
    admin_json(data_dir, "environments", "create", "research", "staging")
    token = admin_json(
        data_dir, "tokens", "create", "research", "--environment", "staging"
    )["token"]

    settings = registry.GetProjectSettings(
        registry_pb2.GetProjectSettingsRequest(), metadata=bearer(token)
    )
    steps = registry.ListSteps(registry_pb2.ListStepsRequest(), metadata=bearer(token))
    with pytest.raises(grpc.RpcError) as raised:
        registry.UpdateProjectSettings(known_hosts_update(), metadata=bearer(token))

    assert settings.project == "research"
    assert list(steps.steps) == []
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_an_admin_token_manages_its_project_settings_only(
    data_dir: Path,
    suite: SuiteUnderTest,
    registry: registry_pb2_grpc.RegistryServiceStub,
) -> None:
    admin_json(data_dir, "projects", "create", "research")
    token = admin_json(data_dir, "tokens", "create", "research", "--admin")["token"]

    updated = registry.UpdateProjectSettings(
        known_hosts_update(), metadata=bearer(token)
    )
    with pytest.raises(grpc.RpcError) as raised:
        registry.ListSteps(registry_pb2.ListStepsRequest(), metadata=bearer(token))
    default = registry.GetProjectSettings(
        registry_pb2.GetProjectSettingsRequest(), metadata=bearer(suite.token)
    )

    assert updated.project == "research"
    assert updated.known_hosts == KNOWN_HOSTS
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert default.known_hosts != KNOWN_HOSTS


def test_token_listings_show_roles_and_labels_but_never_a_token(
    data_dir: Path,
) -> None:
    admin_json(data_dir, "projects", "create", "research")
    admin_json(data_dir, "environments", "create", "research", "staging")
    user = admin_json(
        data_dir,
        "tokens",
        "create",
        "research",
        "--environment",
        "staging",
        "--label",
        "ci runner",
    )["token"]
    admin_token = admin_json(
        data_dir, "tokens", "create", "research", "--admin", "--label", "owner"
    )["token"]

    listed = admin_json(data_dir, "tokens", "list", "--project", "research")
    table = admin(data_dir, "tokens", "list", as_json=False)

    rows = {row["label"]: row for row in listed}
    assert rows["ci runner"]["role"] == "user"
    assert rows["ci runner"]["environment"] == "staging"
    assert rows["owner"]["role"] == "admin"
    assert rows["owner"]["environment"] == ""
    assert all(row["revoked"] == "" for row in listed)
    for shown in (json.dumps(listed), table.stdout):
        assert user not in shown
        assert admin_token not in shown
    assert "ci runner" in table.stdout
    assert "ROLE" in table.stdout


def test_a_revoked_token_is_refused_at_once_by_a_running_suite(
    data_dir: Path, registry: registry_pb2_grpc.RegistryServiceStub
) -> None:
    token = admin_json(
        data_dir,
        "tokens",
        "create",
        "default",
        "--environment",
        "default",
        "--label",
        "to revoke",
    )["token"]
    admin_json(data_dir, "tokens", "create", "default", "--admin", "--label", "kept")
    listed = admin_json(data_dir, "tokens", "list")
    (token_id,) = [row["id"] for row in listed if row["label"] == "to revoke"]
    registry.ListSteps(registry_pb2.ListStepsRequest(), metadata=bearer(token))

    revoked = admin_json(data_dir, "tokens", "revoke", token_id)
    with pytest.raises(grpc.RpcError) as raised:
        registry.ListSteps(registry_pb2.ListStepsRequest(), metadata=bearer(token))

    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert revoked["id"] == token_id
    assert revoked["revoked"] != ""
    still = {
        row["label"]: row["revoked"] for row in admin_json(data_dir, "tokens", "list")
    }
    assert still["kept"] == ""
    again = admin(data_dir, "tokens", "revoke", token_id)
    assert again.returncode == 2
    assert "token_id: no active token" in again.stderr


def admin(
    data_dir: Path, *args: str, as_json: bool = True
) -> subprocess.CompletedProcess[str]:
    """Runs `stepforge admin` on `data_dir`."""
    command = [
        sys.executable,
        "-m",
        "stepforge.services.cli",
        "admin",
        "--data-dir",
        str(data_dir),
        *(["--json"] if as_json else []),
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def admin_json(data_dir: Path, *args: str) -> Any:
    """What `stepforge admin --json` prints, for a command that must succeed."""
    done = admin(data_dir, *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


def known_hosts_update() -> registry_pb2.UpdateProjectSettingsRequest:
    request = registry_pb2.UpdateProjectSettingsRequest(
        settings=registry_pb2.ProjectSettings(known_hosts=KNOWN_HOSTS)
    )
    request.update_mask.paths.append("known_hosts")
    return request
