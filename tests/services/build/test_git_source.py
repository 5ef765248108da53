"""The clone of a step's repository: what it accepts, and what it leaves."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from support.git_servers import make_repository

from stepforge.services.build.build_log import BuildLog
from stepforge.services.build.git_source import CloneError, GitRequest, cloned
from stepforge.services.core.repositories import check_branch, check_repository_url


@pytest.mark.parametrize(
    "url",
    [
        "ssh://git@example.com:2222/org/repo.git",
        "git@example.com:org/repo.git",
        "https://example.com/org/repo.git",
        "git://example.com/repo.git",
        "file:///srv/git/repo.git",
    ],
)
def test_repository_urls_of_the_supported_transports_are_accepted(url: str) -> None:
    assert check_repository_url(url) is None


@pytest.mark.parametrize(
    "url",
    [
        "ext::sh -c touch% /tmp/pwned",
        "-uploadpack=touch /tmp/pwned",
        "--config=core.sshCommand=evil",
        "fd::17",
        "/srv/git/repo.git",
        "https://example.com/repo.git with space",
    ],
)
def test_urls_that_could_run_commands_or_options_are_refused(url: str) -> None:
    assert check_repository_url(url) is not None


@pytest.mark.parametrize("branch", ["main", "release/1.2", "v1.0", "feature_x-2"])
def test_branch_and_tag_names_are_accepted(branch: str) -> None:
    assert check_branch(branch) is None


@pytest.mark.parametrize("branch", ["-b", "a..b", "x.lock", "a b", "", "a/"])
def test_names_git_would_misread_are_refused(branch: str) -> None:
    assert check_branch(branch) is not None


def test_the_clone_and_the_deploy_key_are_removed_afterwards(tmp_path: Path) -> None:
    repository = make_repository(tmp_path / "origin", {"main.py": "x = 1\n"})
    request = GitRequest(
        url=repository.file_url,
        branch="main",
        deploy_key="-----BEGIN OPENSSH PRIVATE KEY-----\nnot a real key\n",
        known_hosts="",
    )

    with cloned(request, BuildLog()) as (tree, commit):
        private = tree.parent
        key = private / "deploy_key"
        assert (tree / "main.py").read_text() == "x = 1\n"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert stat.S_IMODE(private.stat().st_mode) == 0o700

    assert commit == repository.commit("main")
    assert not private.exists()


def test_a_failed_clone_leaves_nothing_and_says_why(tmp_path: Path) -> None:
    repository = make_repository(tmp_path / "origin", {"main.py": "x = 1\n"})
    request = GitRequest(repository.file_url, "missing", None, "")
    before = set(os.listdir(os.environ.get("TMPDIR", "/tmp")))

    with pytest.raises(CloneError, match="no branch or tag 'missing'"):
        with cloned(request, BuildLog()):
            pass

    after = set(os.listdir(os.environ.get("TMPDIR", "/tmp")))
    assert not [name for name in after - before if name.startswith("stepforge-clone-")]


def test_a_bad_url_is_refused_before_git_runs(tmp_path: Path) -> None:
    request = GitRequest("ext::sh -c id", None, None, "")

    with pytest.raises(CloneError, match="must not"):
        with cloned(request, BuildLog()):
            pass
