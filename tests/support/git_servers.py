"""Real Git servers on loopback (git daemon, sshd), and bare repositories to serve.

Tests that clone steps from Git use these to meet real protocol behaviour: deploy
keys accepted or refused by a real sshd, host keys checked by a real ssh client.
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Union

import pytest

from support.processes import output_tail, stop
from support.s3_server import free_port

START_TIMEOUT_S = 10.0
COMMAND_TIMEOUT_S = 30.0
LOOPBACK = "127.0.0.1"
_POLL_S = 0.05
# sshd chroots its unprivileged child here when it runs as root.
_PRIVSEP_DIR = Path("/run/sshd")
# Debian keeps sshd outside a non-root user's PATH.
_SBIN_PATH = "/usr/sbin:/sbin"
_DEBIAN_PACKAGES = {
    "git": "git",
    "sshd": "openssh-server",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "ssh-keyscan": "openssh-client",
}
_IDENTITY = {
    "GIT_AUTHOR_NAME": "Stepforge Tests",
    "GIT_AUTHOR_EMAIL": "tests@stepforge.invalid",
    "GIT_COMMITTER_NAME": "Stepforge Tests",
    "GIT_COMMITTER_EMAIL": "tests@stepforge.invalid",
}

FileContent = Union[str, bytes]


@dataclass(frozen=True)
class GitRepository:
    """A bare repository made by `make_repository`."""

    path: Path

    @property
    def file_url(self) -> str:
        """The `file://` URL of the bare repository."""
        return self.path.resolve().as_uri()

    def commit(self, ref: str) -> str:
        """The commit id a branch or tag names; annotated tags are peeled."""
        try:
            return _git(["rev-parse", "--verify", f"{ref}^{{commit}}"], self.path)
        except RuntimeError as error:
            raise ValueError(
                f"ref {ref!r} names no commit in {self.path}: {error}"
            ) from error


@dataclass(frozen=True)
class KeyPair:
    """An ed25519 key pair without a passphrase, as ssh-keygen writes it."""

    private_key: str
    public_key: str


@dataclass(frozen=True)
class SshGitServer:
    """An sshd on loopback that lets `user` in with the deploy key only."""

    port: int
    user: str
    deploy_private_key: str
    deploy_public_key: str
    known_hosts_line: str
    log_path: Path

    def url(self, repo_path: Path) -> str:
        """The `ssh://` URL of a repository on this machine, port included."""
        return f"ssh://{self.user}@{LOOPBACK}:{self.port}{_absolute(repo_path)}"

    def scp_url(self, repo_path: Path, *, host: str = LOOPBACK) -> str:
        """The scp-like `user@host:path` URL of a repository.

        This form cannot carry a port, so it reaches port 22 unless `host` is an
        alias that the client's ssh config maps to this server, as
        `ssh_config_entry` writes it.
        """
        return f"{self.user}@{host}:{_absolute(repo_path)}"

    def ssh_config_entry(self, alias: str) -> str:
        """An ssh_config `Host` block that points `alias` at this server."""
        if not alias or any(c.isspace() or c in "*?!#\"'" for c in alias):
            raise ValueError(
                f"alias {alias!r} must be a non-empty host name without "
                "whitespace, quotes, comments or patterns"
            )
        return (
            f"Host {alias}\n"
            f"    HostName {LOOPBACK}\n"
            f"    Port {self.port}\n"
            f"    User {self.user}\n"
        )

    def other_key_pair(self) -> KeyPair:
        """A fresh key pair that this server does not authorize."""
        with tempfile.TemporaryDirectory() as folder:
            return _generate_key(Path(folder) / "other", "not authorized")

    def wrong_known_hosts_line(self) -> str:
        """A known_hosts line for this host and port with a different host key."""
        with tempfile.TemporaryDirectory() as folder:
            key = _generate_key(Path(folder) / "impostor", "impostor host")
        return _known_hosts_line(self.port, key.public_key)


def require_tools(*names: str) -> None:
    """Fails the test, naming the Debian packages to install, if a tool is missing.

    A failure rather than a skip: CI installs these (`make system-tools`), so a
    missing tool there is a broken machine, not an optional feature.
    """
    unknown = [name for name in names if name not in _DEBIAN_PACKAGES]
    if unknown:
        raise ValueError(
            f"tool names {unknown} are unknown; known tools: {sorted(_DEBIAN_PACKAGES)}"
        )
    missing = [name for name in names if _find_tool(name) is None]
    if missing:
        packages = " ".join(sorted({_DEBIAN_PACKAGES[name] for name in missing}))
        pytest.fail(
            f"missing tools {', '.join(missing)}: install the Debian packages "
            f"{packages} (`apt-get install {packages}`, or `make system-tools` "
            "as root)",
            pytrace=False,
        )


def make_repository(
    root: Path,
    files: Mapping[str, FileContent],
    *,
    branch: str = "main",
    tag: str | None = None,
    annotated_tag: bool = False,
    more_commits: Mapping[str, Mapping[str, str]] | None = None,
) -> GitRepository:
    """Creates the bare repository `root/repo.git` with one commit of `files`.

    The commit is on `branch`, which HEAD names. `tag` tags that commit,
    lightweight unless `annotated_tag`. Each entry of `more_commits` is a branch
    forked from `branch` with one commit writing its files over `files`.
    """
    require_tools("git")
    _check_files("files", files)
    _check_ref("branch", "refs/heads/", branch)
    if tag is not None:
        _check_ref("tag", "refs/tags/", tag)
    extra_branches = dict(more_commits or {})
    for name, branch_files in extra_branches.items():
        _check_ref("more_commits", "refs/heads/", name)
        if name == branch:
            raise ValueError(
                f"more_commits branch {name!r} must differ from branch {branch!r}"
            )
        _check_files(f"more_commits[{name!r}]", branch_files)

    path = root / "repo.git"
    if path.exists():
        raise ValueError(f"root {root} already holds a repo.git; give an empty root")
    root.mkdir(parents=True, exist_ok=True)
    _git(["-c", "init.defaultBranch=main", "init", "--quiet", "--bare", str(path)])

    base = _commit(path, files, parent=None, message=f"Files on {branch}")
    _git(["update-ref", f"refs/heads/{branch}", base], path)
    _git(["symbolic-ref", "HEAD", f"refs/heads/{branch}"], path)
    if tag is not None and annotated_tag:
        _git(["tag", "--annotate", "--message", f"Tag {tag}", tag, base], path)
    elif tag is not None:
        _git(["update-ref", f"refs/tags/{tag}", base], path)
    for name, branch_files in extra_branches.items():
        merged = {**files, **branch_files}
        commit = _commit(path, merged, parent=base, message=f"Files on {name}")
        _git(["update-ref", f"refs/heads/{name}", commit], path)
    return GitRepository(path)


@contextmanager
def git_daemon(base: Path) -> Iterator[str]:
    """Serves every repository under `base` over git:// on a free loopback port.

    Yields the URL prefix, so `base/repo.git` is at `<prefix>repo.git`.
    """
    require_tools("git")
    if not base.is_dir():
        raise ValueError(f"base {base} must be an existing directory")
    base = base.resolve()
    port = free_port()
    command = [
        "git",
        "daemon",
        "--reuseaddr",
        f"--base-path={base}",
        "--export-all",
        f"--listen={LOOPBACK}",
        f"--port={port}",
        "--informative-errors",
        str(base),
    ]
    with tempfile.TemporaryFile() as log, _started(command, log) as daemon:
        _wait_until(daemon, log, f"git daemon on port {port}", _accepts(port))
        yield f"git://{LOOPBACK}:{port}/"


@contextmanager
def ssh_git_server(root: Path) -> Iterator[SshGitServer]:
    """Runs sshd on a free loopback port, for Git over ssh with a deploy key.

    Keys, config, pid file and the sshd log live in `root/sshd` (mode 0700).
    """
    require_tools("sshd", "ssh-keygen", "ssh-keyscan")
    folder = root / "sshd"
    if folder.exists():
        raise ValueError(
            f"root {root} already holds an sshd folder; give an empty root"
        )
    folder.mkdir(parents=True, mode=0o700)
    # mkdir's mode is filtered through the umask; the keys' folder must be private.
    folder.chmod(0o700)

    host_key_path = folder / "host_ed25519"
    host_key = _generate_key(host_key_path, "stepforge test host")
    deploy = _generate_key(folder / "deploy_ed25519", "stepforge deploy key")
    authorized = folder / "authorized_keys"
    authorized.write_text(deploy.public_key + "\n", encoding="utf-8")
    authorized.chmod(0o600)

    port = free_port()
    user = pwd.getpwuid(os.geteuid()).pw_name
    config = folder / "sshd_config"
    config.write_text(
        _sshd_config(port, user, host_key_path, authorized, folder / "sshd.pid"),
        encoding="utf-8",
    )
    _ensure_privsep_dir()

    server = SshGitServer(
        port=port,
        user=user,
        deploy_private_key=deploy.private_key,
        deploy_public_key=deploy.public_key,
        known_hosts_line=_known_hosts_line(port, host_key.public_key),
        log_path=folder / "sshd.log",
    )
    sshd = _find_tool("sshd")
    assert sshd is not None  # require_tools has failed the test otherwise
    # sshd re-executes itself and refuses to start from a relative path.
    command = [str(Path(sshd).resolve()), "-D", "-e", "-f", str(config)]
    with server.log_path.open("w+b") as log, _started(command, log) as process:
        _wait_until(
            process,
            log,
            f"sshd on port {port}",
            _serves_host_key(port, server.known_hosts_line),
        )
        yield server


def git_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """An environment for `git` in tests: no user or system config, no prompts.

    Drops the caller's GIT_* variables and ssh agent, so an outer hook, config or
    agent cannot change what a test sees.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("GIT_") and key != "SSH_AUTH_SOCK"
    }
    env.update(_IDENTITY)
    env.update(
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_TERMINAL_PROMPT="0",
        GIT_ASKPASS="",
        SSH_ASKPASS="",
    )
    env.update(extra or {})
    return env


def _find_tool(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path=_SBIN_PATH)


def _absolute(repo_path: Path) -> str:
    return PurePosixPath(repo_path.resolve()).as_posix()


def _check_files(field: str, files: Mapping[str, FileContent]) -> None:
    for name, content in files.items():
        parts = name.split("/")
        if (
            not name
            or name.startswith("/")
            or "\0" in name
            or any(part in ("", ".", "..", ".git") for part in parts)
        ):
            raise ValueError(
                f"{field} path {name!r} must be a relative path with '/' "
                "separators and no empty, '.', '..' or '.git' parts"
            )
        if not isinstance(content, (str, bytes)):
            raise TypeError(
                f"{field}[{name!r}] must be str or bytes, not {type(content).__name__}"
            )


def _check_ref(field: str, prefix: str, name: str) -> None:
    valid = subprocess.run(
        ["git", "check-ref-format", prefix + name],
        capture_output=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    if not name or valid.returncode != 0:
        raise ValueError(
            f"{field} {name!r} must be a valid Git ref name "
            "(see `git check-ref-format`)"
        )


def _commit(
    repo: Path,
    files: Mapping[str, FileContent],
    *,
    parent: str | None,
    message: str,
) -> str:
    entries = []
    for name, content in files.items():
        data = content.encode("utf-8") if isinstance(content, str) else content
        blob = _git(["hash-object", "-w", "--stdin"], repo, stdin=data)
        entries.append(f"100644 {blob}\t{name}\0")
    # A throwaway index builds the tree straight into the bare repository, with
    # no work tree to check out or clean up.
    with tempfile.TemporaryDirectory() as scratch:
        index = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
        _git(
            ["update-index", "-z", "--index-info"],
            repo,
            stdin="".join(entries).encode("utf-8"),
            env=index,
        )
        tree = _git(["write-tree"], repo, env=index)
    parents = ["-p", parent] if parent is not None else []
    return _git(["commit-tree", tree, *parents, "-m", message], repo)


def _git(
    args: list[str],
    git_dir: Path | None = None,
    *,
    stdin: bytes | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    command = ["git"]
    if git_dir is not None:
        command.append(f"--git-dir={git_dir}")
    command.extend(args)
    done = subprocess.run(
        command,
        input=stdin,
        capture_output=True,
        env=git_env(env),
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"`{shlex.join(command)}` exited with code {done.returncode}: "
            f"{done.stderr.decode('utf-8', errors='replace').strip()}"
        )
    return done.stdout.decode("utf-8").strip()


def _generate_key(path: Path, comment: str) -> KeyPair:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=COMMAND_TIMEOUT_S,
        check=True,
    )
    return KeyPair(
        private_key=path.read_text(encoding="utf-8"),
        public_key=path.with_name(path.name + ".pub").read_text("utf-8").strip(),
    )


def _known_hosts_line(port: int, public_key: str) -> str:
    # ssh-keyscan's form: the bracketed host and port, the key type and the key,
    # without the key's comment.
    key_type, key_data = public_key.split()[:2]
    return f"[{LOOPBACK}]:{port} {key_type} {key_data}"


def _sshd_config(
    port: int, user: str, host_key: Path, authorized_keys: Path, pid_file: Path
) -> str:
    lines = [
        f"Port {port}",
        f"ListenAddress {LOOPBACK}",
        "AddressFamily inet",
        f"HostKey {_config_path(host_key)}",
        f"PidFile {_config_path(pid_file)}",
        # sshd expands %-tokens in this one option.
        f"AuthorizedKeysFile {_config_path(authorized_keys).replace('%', '%%')}",
        f"AllowUsers {user}",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PermitRootLogin prohibit-password",
        # PAM would need root and a service file; keys need neither.
        "UsePAM no",
        # The keys sit under a test's temporary folder, whose parents sshd would
        # otherwise require to be owned by root or the user.
        "StrictModes no",
        "PermitUserEnvironment no",
        "AllowAgentForwarding no",
        "AllowTcpForwarding no",
        "X11Forwarding no",
        "PermitTTY no",
        "PrintMotd no",
        "UseDNS no",
        "LogLevel VERBOSE",
    ]
    return "\n".join(lines) + "\n"


def _config_path(path: Path) -> str:
    text = str(path.resolve())
    if '"' in text or "\n" in text:
        raise ValueError(f"path {text!r} must not hold quotes or newlines for sshd")
    return f'"{text}"'


def _ensure_privsep_dir() -> None:
    # Only sshd running as root separates privileges; a developer's own sshd
    # neither needs the folder nor may create it.
    if os.geteuid() == 0 and not _PRIVSEP_DIR.is_dir():
        _PRIVSEP_DIR.mkdir(mode=0o755, parents=True)


@contextmanager
def _started(command: list[str], log: IO[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    # A file, not a pipe, takes the server's output: an unread pipe would fill
    # and stall the server.
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=git_env(),
    )
    try:
        yield process
    finally:
        stop(process)


def _wait_until(
    process: subprocess.Popen[bytes],
    log: IO[bytes],
    what: str,
    ready: Callable[[], bool],
) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if process.poll() is not None:
            raise RuntimeError(
                f"{what} exited with code {process.returncode} before answering; "
                f"its output:\n{output_tail(log)}"
            )
        if ready():
            return
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{what} did not answer within {START_TIMEOUT_S:.0f} s; "
                f"its output:\n{output_tail(log)}"
            )
        time.sleep(_POLL_S)


def _accepts(port: int) -> Callable[[], bool]:
    def ready() -> bool:
        try:
            with socket.create_connection((LOOPBACK, port), timeout=1.0):
                return True
        except OSError:
            return False

    return ready


def _serves_host_key(port: int, known_hosts_line: str) -> Callable[[], bool]:
    accepts = _accepts(port)

    def ready() -> bool:
        if not accepts():
            return False
        scan = subprocess.run(
            ["ssh-keyscan", "-T", "2", "-t", "ed25519", "-p", str(port), LOOPBACK],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
        lines = scan.stdout.decode("utf-8", errors="replace").splitlines()
        keys = [line for line in lines if line and not line.startswith("#")]
        if keys and keys != [known_hosts_line]:
            # Another server took the port between choosing and binding it.
            raise RuntimeError(
                f"port {port} answers with host keys {keys}, not this sshd's "
                f"{known_hosts_line!r}"
            )
        return bool(keys)

    return ready
