"""Cloning a step's Git repository: shallow, time-limited, in a private folder,
with the deploy key used for that clone only and host keys checked.

Nothing the user gives goes through a shell: the URL and the branch are
arguments of git after `--`, and the ssh command names only this module's own
temporary files.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from stepforge.services.build.build_log import BuildLog
from stepforge.services.core.repositories import check_branch, check_repository_url

DEFAULT_CLONE_TIMEOUT_S = 300.0
# git may reach repositories over these only; `ext::` would run a command.
_ALLOWED_PROTOCOLS = "ssh:https:http:git:file"
_PASSED_ENVIRONMENT = (
    "PATH",
    "LANG",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "HTTPS_PROXY",
    "https_proxy",
    "NO_PROXY",
    "no_proxy",
)


class CloneError(Exception):
    """The clone failed; the message is the reason users see, without secrets."""


@dataclass(frozen=True)
class GitRequest:
    url: str
    branch: str | None
    deploy_key: str | None
    known_hosts: str


@contextmanager
def cloned(
    request: GitRequest,
    log: BuildLog,
    timeout_s: float = DEFAULT_CLONE_TIMEOUT_S,
) -> Iterator[tuple[Path, str]]:
    """Clones the repository and yields the work tree and its commit id; the
    clone, the key and every other file of it are removed afterwards."""
    for problem in (
        check_repository_url(request.url),
        check_branch(request.branch) if request.branch else None,
    ):
        if problem:
            raise CloneError(problem)
    private = Path(tempfile.mkdtemp(prefix="stepforge-clone-"))
    try:
        environment = _git_environment(private, request)
        tree = private / "tree"
        command = ["git", "clone", "--depth", "1", "--single-branch", "--no-tags"]
        if request.branch:
            command += ["--branch", request.branch]
        command += ["--", request.url, str(tree)]
        where = request.url + (f" at {request.branch}" if request.branch else "")
        log.write(
            f"cloning {where}" + (" with the deploy key" if request.deploy_key else "")
        )
        _run(command, environment, timeout_s, request)
        commit = _run(
            ["git", "-C", str(tree), "rev-parse", "HEAD"],
            environment,
            timeout_s,
            request,
        ).strip()
        log.write(f"cloned commit {commit}")
        yield tree, commit
    finally:
        shutil.rmtree(private, ignore_errors=True)


def _git_environment(private: Path, request: GitRequest) -> dict[str, str]:
    environment = {
        name: os.environ[name] for name in _PASSED_ENVIRONMENT if name in os.environ
    }
    home = private / "home"
    home.mkdir()
    known_hosts = private / "known_hosts"
    known_hosts.write_text(request.known_hosts)
    ssh = [
        "ssh",
        "-F",
        "/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        f"UserKnownHostsFile={known_hosts}",
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        "ConnectTimeout=20",
    ]
    if request.deploy_key:
        key = private / "deploy_key"
        descriptor = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(request.deploy_key.rstrip("\n") + "\n")
        ssh += ["-o", "IdentitiesOnly=yes", "-i", str(key)]
    else:
        # Keys of the service's own user are not the project's to use.
        ssh += ["-o", "IdentitiesOnly=yes", "-o", "IdentityFile=none"]
    environment.update(
        HOME=str(home),
        GIT_SSH_COMMAND=" ".join(shlex.quote(part) for part in ssh),
        GIT_TERMINAL_PROMPT="0",
        GIT_ASKPASS="true",
        SSH_ASKPASS="true",
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_ALLOW_PROTOCOL=_ALLOWED_PROTOCOLS,
        LC_ALL="C",
    )
    return environment


def _run(
    command: list[str],
    environment: dict[str, str],
    timeout_s: float,
    request: GitRequest,
) -> str:
    process = subprocess.Popen(
        command,
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        output, errors = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise CloneError(
            f"the clone of {request.url} took longer than {timeout_s:g} s"
        ) from None
    if process.returncode != 0:
        raise CloneError(_explain(errors, request))
    return output


def _explain(errors: str, request: GitRequest) -> str:
    """A reason for users from git's and ssh's messages."""
    text = errors.strip()
    host = _host_of(request.url)
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in text:
        return (
            f"the SSH host key of {host} differs from the one in the project's known "
            "hosts; if the server's key really changed, replace its line with "
            f"update_project_settings(known_hosts=...) (ssh-keyscan {host} prints it)"
        )
    if (
        "Host key verification failed" in text
        or "No " in text
        and "host key is known" in text
    ):
        return (
            f"the SSH host key of {host} is not among the project's known hosts; add "
            f"it with update_project_settings(known_hosts=...) (ssh-keyscan {host} "
            "prints it)"
        )
    if "Permission denied (publickey" in text:
        return (
            f"{host} refused the deploy key"
            if request.deploy_key
            else (f"{host} asks for a key: set container_config.repository_deploy_key")
        )
    if "Remote branch" in text and "not found" in text:
        return f"the repository has no branch or tag {request.branch!r}"
    last = [line for line in text.splitlines() if line.strip()][-3:]
    return f"git clone of {request.url} failed: " + " / ".join(last)


def _host_of(url: str) -> str:
    if "://" in url:
        rest = url.split("://", 1)[1]
        authority = rest.split("/", 1)[0]
        return authority.rpartition("@")[2] or "the local host"
    return url.split("@", 1)[-1].split(":", 1)[0]
