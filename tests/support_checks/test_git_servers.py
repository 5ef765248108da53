"""The Git test servers work with a plain `git` client, as cloning tests need."""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.git_servers import (
    GitRepository,
    SshGitServer,
    git_daemon,
    git_env,
    make_repository,
    require_tools,
    ssh_git_server,
)

CLONE_TIMEOUT_S = 30
STEP_V1 = "def step():\n    return 1\n"
STEP_FEATURE = "def step():\n    return 2\n"
WEIGHTS = bytes(range(256))


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> GitRepository:
    return make_repository(
        tmp_path_factory.mktemp("served"),
        {"step.py": STEP_V1, "model/weights.bin": WEIGHTS},
        tag="v1",
        annotated_tag=True,
        more_commits={"feature": {"step.py": STEP_FEATURE}},
    )


@pytest.fixture(scope="module")
def daemon_prefix(repository: GitRepository) -> Iterator[str]:
    with git_daemon(repository.path.parent) as prefix:
        yield prefix


@pytest.fixture(scope="module")
def ssh_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshGitServer]:
    with ssh_git_server(tmp_path_factory.mktemp("ssh")) as server:
        yield server


def test_clones_a_branch_over_git_daemon(
    repository: GitRepository, daemon_prefix: str, tmp_path: Path
) -> None:
    clone = tmp_path / "clone"

    done = _git("clone", "--branch", "feature", f"{daemon_prefix}repo.git", clone)

    assert done.returncode == 0, done.stderr
    assert (clone / "step.py").read_text() == STEP_FEATURE
    assert (clone / "model" / "weights.bin").read_bytes() == WEIGHTS
    assert _head(clone) == repository.commit("feature")
    assert repository.commit("feature") != repository.commit("main")


def test_clones_the_default_branch_over_ssh_with_the_deploy_key(
    repository: GitRepository, ssh_server: SshGitServer, tmp_path: Path
) -> None:
    env = _ssh_env(tmp_path, ssh_server.deploy_private_key, ssh_server.known_hosts_line)
    clone = tmp_path / "clone"

    done = _git("clone", ssh_server.url(repository.path), clone, env=env)

    assert done.returncode == 0, done.stderr
    assert (clone / "step.py").read_text() == STEP_V1
    assert (clone / "model" / "weights.bin").read_bytes() == WEIGHTS
    assert _head(clone) == repository.commit("main")


def test_clones_an_annotated_tag_over_ssh(
    repository: GitRepository, ssh_server: SshGitServer, tmp_path: Path
) -> None:
    env = _ssh_env(tmp_path, ssh_server.deploy_private_key, ssh_server.known_hosts_line)
    clone = tmp_path / "clone"

    done = _git(
        "clone", "--branch", "v1", ssh_server.url(repository.path), clone, env=env
    )

    assert done.returncode == 0, done.stderr
    assert _head(clone) == repository.commit("v1") == repository.commit("main")
    tag_object = _git("--git-dir", repository.path, "rev-parse", "refs/tags/v1")
    assert tag_object.stdout.strip() != repository.commit("v1")


def test_clones_the_scp_form_through_a_host_alias(
    repository: GitRepository, ssh_server: SshGitServer, tmp_path: Path
) -> None:
    config = tmp_path / "ssh_config"
    config.write_text(ssh_server.ssh_config_entry("stepforge-git"))
    env = _ssh_env(
        tmp_path,
        ssh_server.deploy_private_key,
        ssh_server.known_hosts_line,
        config=config,
    )
    clone = tmp_path / "clone"
    url = ssh_server.scp_url(repository.path, host="stepforge-git")

    done = _git("clone", url, clone, env=env)

    assert url == f"{ssh_server.user}@stepforge-git:{repository.path.resolve()}"
    assert done.returncode == 0, done.stderr
    assert _head(clone) == repository.commit("main")


def test_refuses_a_key_that_is_not_authorized(
    repository: GitRepository, ssh_server: SshGitServer, tmp_path: Path
) -> None:
    other = ssh_server.other_key_pair()
    env = _ssh_env(tmp_path, other.private_key, ssh_server.known_hosts_line)

    done = _git("clone", ssh_server.url(repository.path), tmp_path / "c", env=env)

    assert other.public_key != ssh_server.deploy_public_key
    assert done.returncode != 0
    assert "Permission denied (publickey)" in done.stderr


def test_fails_host_key_verification_when_the_host_key_changed(
    repository: GitRepository, ssh_server: SshGitServer, tmp_path: Path
) -> None:
    wrong = ssh_server.wrong_known_hosts_line()
    env = _ssh_env(tmp_path, ssh_server.deploy_private_key, wrong)

    done = _git("clone", ssh_server.url(repository.path), tmp_path / "c", env=env)

    assert wrong.split()[:2] == ssh_server.known_hosts_line.split()[:2]
    assert wrong != ssh_server.known_hosts_line
    assert done.returncode != 0
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in done.stderr
    assert "Host key verification failed" in done.stderr


def test_fails_host_key_verification_for_an_unknown_host(
    repository: GitRepository, ssh_server: SshGitServer, tmp_path: Path
) -> None:
    env = _ssh_env(tmp_path, ssh_server.deploy_private_key, "")

    done = _git("clone", ssh_server.url(repository.path), tmp_path / "c", env=env)

    assert done.returncode != 0
    assert "Host key verification failed" in done.stderr


def test_known_hosts_line_is_what_ssh_keyscan_prints(
    ssh_server: SshGitServer,
) -> None:
    scan = subprocess.run(
        ["ssh-keyscan", "-T", "5", "-t", "ed25519", "-p", str(ssh_server.port)]
        + ["127.0.0.1"],
        capture_output=True,
        text=True,
        timeout=CLONE_TIMEOUT_S,
        check=True,
    )

    assert scan.stdout.strip() == ssh_server.known_hosts_line
    assert ssh_server.known_hosts_line.startswith(
        f"[127.0.0.1]:{ssh_server.port} ssh-ed25519 "
    )


def test_ssh_url_carries_user_port_and_absolute_path(
    repository: GitRepository, ssh_server: SshGitServer
) -> None:
    url = ssh_server.url(repository.path)

    expected = f"127.0.0.1:{ssh_server.port}{repository.path.resolve()}"
    assert url == f"ssh://{ssh_server.user}@{expected}"


def test_clones_a_lightweight_tag_from_the_file_url(tmp_path: Path) -> None:
    repository = make_repository(
        tmp_path / "served", {"step.py": STEP_V1}, branch="trunk", tag="v2"
    )
    clone = tmp_path / "clone"

    done = _git("clone", "--branch", "v2", repository.file_url, clone)

    assert repository.file_url.startswith("file:///")
    assert done.returncode == 0, done.stderr
    assert _head(clone) == repository.commit("v2") == repository.commit("trunk")
    tag_object = _git("--git-dir", repository.path, "rev-parse", "refs/tags/v2")
    assert tag_object.stdout.strip() == repository.commit("v2")


def test_commit_of_an_unknown_ref_names_the_ref(repository: GitRepository) -> None:
    with pytest.raises(ValueError, match="'nowhere'"):
        repository.commit("nowhere")


@pytest.mark.parametrize("name", ["../escape.py", "/abs.py", "a//b.py", ".git/x"])
def test_make_repository_rejects_paths_outside_the_tree(
    tmp_path: Path, name: str
) -> None:
    with pytest.raises(ValueError, match="files path"):
        make_repository(tmp_path, {name: "x"})


def test_make_repository_rejects_an_invalid_branch_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="branch 'bad..name'"):
        make_repository(tmp_path, {"a.py": "x"}, branch="bad..name")


def test_require_tools_fails_naming_the_debian_package(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))

    with pytest.raises(pytest.fail.Exception, match="openssh-client"):
        require_tools("ssh-keygen")


def _ssh_env(
    folder: Path, private_key: str, known_hosts: str, *, config: Path | None = None
) -> dict[str, str]:
    require_tools("ssh")
    key = folder / "id_ed25519"
    key.write_text(private_key)
    # ssh ignores a private key that others may read.
    key.chmod(0o600)
    known = folder / "known_hosts"
    known.write_text(known_hosts + "\n" if known_hosts else "")
    command = [
        "ssh",
        "-F",
        str(config) if config is not None else os.devnull,
        "-i",
        str(key),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        f"UserKnownHostsFile={known}",
        "-o",
        f"GlobalKnownHostsFile={os.devnull}",
        "-o",
        "ConnectTimeout=5",
    ]
    return git_env({"GIT_SSH_COMMAND": " ".join(shlex.quote(a) for a in command)})


def _git(
    *args: str | Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *(str(arg) for arg in args)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env if env is not None else git_env(),
        timeout=CLONE_TIMEOUT_S,
        check=False,
    )


def _head(clone: Path) -> str:
    done = _git("-C", clone, "rev-parse", "HEAD")
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()
