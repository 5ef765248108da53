"""Steps from Git repositories, cloned by the build service from real servers
on loopback: sshd with a deploy key, git daemon, and file:// repositories."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from support.git_servers import (
    GitRepository,
    SshGitServer,
    git_daemon,
    make_repository,
    require_tools,
    ssh_git_server,
)
from support.suite import SuiteUnderTest, running_suite

from stepforge import (
    STEP_PARAMETER,
    FailedPreconditionError,
    Input,
    InvalidArgumentError,
    Output,
    StepBuildError,
    StepforgeSdk,
)
from stepforge.services.config import load_service_token
from stepforge.services.core.object_store import open_object_store
from stepforge.services.core.registry_client import RegistryClient
from stepforge.v1 import common_pb2

MAIN = "def main(x):\n    return {'y': x * 2}\n"
FILES = {"src/main.py": MAIN, "README.md": "docs\n"}


@dataclass
class Servers:
    repository: GitRepository
    ssh: SshGitServer
    git_url: str


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    require_tools("git", "sshd", "ssh", "ssh-keygen", "ssh-keyscan")
    root = tmp_path_factory.mktemp("git")
    repository = make_repository(
        root,
        FILES,
        tag="v1.0",
        more_commits={"feature": {"src/main.py": MAIN.replace("* 2", "* 3")}},
    )
    with ssh_git_server(root) as ssh, git_daemon(root) as daemon:
        yield Servers(repository, ssh, daemon + "repo.git")


@pytest.fixture
def suite(tmp_path: Path) -> Iterator[SuiteUnderTest]:
    with running_suite(tmp_path / "data") as running:
        yield running


def create(sdk: StepforgeSdk, step_name: str, **config: object) -> dict[str, object]:
    return sdk.create_step(
        step_name=step_name,
        function_path="src/main.py",
        function_name="main",
        container_config=config,
        inputs=[Input("x", "number")],
        outputs=[Output("y", "number")],
    )


def url_of(servers: Servers, kind: str) -> str:
    if kind == "ssh":
        return servers.ssh.url(servers.repository.path)
    if kind == "git":
        return servers.git_url
    return servers.repository.file_url


def trust(suite: SuiteUnderTest, servers: Servers) -> None:
    suite.admin_sdk.update_project_settings(
        known_hosts=servers.ssh.known_hosts_line + "\n"
    )


@pytest.mark.parametrize("kind", ["ssh", "git", "file"])
@pytest.mark.parametrize(("ref", "factor"), [("feature", 3), ("v1.0", 2)])
def test_a_step_is_built_from_a_branch_or_a_tag(
    suite: SuiteUnderTest, servers: Servers, kind: str, ref: str, factor: int
) -> None:
    trust(suite, servers)
    config: dict[str, object] = {
        "repository_url": url_of(servers, kind),
        "repository_branch": ref,
    }
    if kind == "ssh":
        config["repository_deploy_key"] = servers.ssh.deploy_private_key

    step = create(suite.sdk, "cloned", **config)

    info = step["creation_info"]
    assert info["status"] == "Ready"  # type: ignore[index]
    assert info["origin"] == "git_repository"  # type: ignore[index]
    assert info["commit_id"] == servers.repository.commit(ref)  # type: ignore[index]
    suite.sdk.create_pipeline(pipeline_name="cloned", step_name="cloned")
    assert suite.sdk.run_pipeline("cloned", inputs={"x": 5})["outputs"] == {
        "y": 5 * factor
    }


def test_the_default_branch_is_used_when_none_is_set(
    suite: SuiteUnderTest, servers: Servers
) -> None:
    step = create(suite.sdk, "default", repository_url=servers.repository.file_url)

    assert step["creation_info"]["commit_id"] == servers.repository.commit("main")  # type: ignore[index]


def test_project_settings_supply_the_repository_key_and_hosts(
    suite: SuiteUnderTest, servers: Servers
) -> None:
    sdk = suite.sdk
    key = servers.ssh.deploy_private_key
    settings = suite.admin_sdk.update_project_settings(
        container_config={
            "repository_url": servers.ssh.url(servers.repository.path),
            "repository_branch": "feature",
            "repository_deploy_key": key,
        },
        known_hosts=servers.ssh.known_hosts_line,
    )

    step = sdk.create_step(
        function_path="src/main.py",
        function_name="main",
        step_name="from_project",
        container_config={"requirements_path": STEP_PARAMETER.NULL},
        inputs=[Input("x", "number")],
    )

    assert step["creation_info"]["commit_id"] == servers.repository.commit("feature")  # type: ignore[index]
    shown = [
        str(settings),
        str(suite.admin_sdk.get_project_settings()),
        str(sdk.get_step("from_project")),
        sdk.get_step_build_log("from_project"),
    ]
    secret = key.strip().splitlines()[1]
    assert all(secret not in text for text in shown)
    assert "repository_deploy_key" not in step["container_config"]  # type: ignore[operator]


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("refused key", "refused the deploy key"),
        ("unknown host", "not among the project's known hosts"),
        ("changed host key", "differs from the one in the project's known hosts"),
        ("unknown branch", "no branch or tag 'nope'"),
        ("unreachable", "failed"),
        ("missing function file", "function_path"),
        ("over the limit", "5,000,000"),
    ],
)
def test_failures_fail_the_step_with_the_reason_and_keep_nothing(
    suite: SuiteUnderTest, servers: Servers, tmp_path: Path, case: str, reason: str
) -> None:
    ssh = servers.ssh
    url = ssh.url(servers.repository.path)
    key = ssh.deploy_private_key
    known_hosts = ssh.known_hosts_line
    branch = "main"
    function_path = "src/main.py"
    if case == "refused key":
        key = ssh.other_key_pair().private_key
    elif case == "unknown host":
        known_hosts = ""
    elif case == "changed host key":
        known_hosts = ssh.wrong_known_hosts_line()
    elif case == "unknown branch":
        branch = "nope"
    elif case == "unreachable":
        url = "git://127.0.0.1:9/repo.git"
    elif case == "missing function file":
        function_path = "src/absent.py"
    elif case == "over the limit":
        big = make_repository(
            tmp_path / "big", {**FILES, "weights.bin": os.urandom(5_100_000)}
        )
        url = big.file_url
    suite.admin_sdk.update_project_settings(known_hosts=known_hosts)

    with pytest.raises(StepBuildError) as raised:
        suite.sdk.create_step(
            step_name="broken",
            function_path=function_path,
            function_name="main",
            container_config={
                "repository_url": url,
                "repository_branch": branch,
                "repository_deploy_key": key,
            },
            inputs=[Input("x", "number")],
        )

    assert reason in str(raised.value)
    assert key.strip().splitlines()[1] not in str(raised.value)
    step = suite.sdk.get_step("broken")
    assert step is not None and step["creation_info"]["status"] == "Failed"
    store = open_object_store(suite.object_store_url)
    assert list(store.list("archives/")) == []

    replaced = create(suite.sdk, "broken", repository_url=servers.repository.file_url)
    assert replaced["creation_info"]["status"] == "Ready"  # type: ignore[index]


def test_a_step_from_git_has_no_folder_to_download(
    suite: SuiteUnderTest, servers: Servers, tmp_path: Path
) -> None:
    create(suite.sdk, "cloned", repository_url=servers.repository.file_url)

    with pytest.raises(FailedPreconditionError, match="Git repository"):
        suite.sdk.download_step_local_folder("cloned", str(tmp_path))


def test_an_interrupted_clone_resumes_after_a_restart(
    tmp_path: Path, servers: Servers
) -> None:
    data_dir = tmp_path / "data"
    with running_suite(data_dir) as first:
        with grpc.insecure_channel(first.url) as channel:
            registry = RegistryClient(channel, first.url, load_service_token(data_dir))
            environment = registry.authenticate(first.token).environment
            step = common_pb2.Step(
                name="steps/resumed", function_path="src/main.py", function_name="main"
            )
            step.inputs.add(name="x", data_type=common_pb2.DATA_TYPE_NUMBER)
            step.container_config.repository_url = servers.repository.file_url
            # Registered as the build service does before it clones: a stop
            # right after leaves the step pending with nothing stored.
            registry.register_step(
                environment,
                step,
                ["repository_url"],
                common_pb2.STEP_ORIGIN_GIT_REPOSITORY,
            )

    with running_suite(data_dir) as second:
        found = _built(second.sdk, "resumed")

    assert found["creation_info"]["status"] == "Ready"
    assert found["creation_info"]["commit_id"] == servers.repository.commit("main")


def _built(sdk: StepforgeSdk, step_name: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = sdk.get_step(step_name)
        if found is not None and found["creation_info"]["status"] != "Pending":
            return found
        time.sleep(0.025)
    raise AssertionError(f"step {step_name} is still pending")


def test_known_hosts_that_are_not_host_keys_are_refused_naming_the_line(
    suite: SuiteUnderTest,
) -> None:
    with pytest.raises(InvalidArgumentError) as raised:
        suite.admin_sdk.update_project_settings(
            known_hosts="# ours\n[127.0.0.1]:22 ssh-ed25519 no*base64\nnot a key\n"
        )

    message = str(raised.value)
    assert "settings.known_hosts[line 2]" in message
    assert "settings.known_hosts[line 3]" in message
    assert suite.sdk.get_project_settings()["known_hosts"] == ""
