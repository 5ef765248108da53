"""The embedded builder: a step's code on local disk and a shared virtual
environment per distinct set of requirements, made with uv."""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, cast

from uv import find_uv_bin

from stepforge.services.build.archive import ArchiveError, extract_archive, file_sha256
from stepforge.services.build.build_log import BuildLog
from stepforge.services.build.builder import BuildOutcome, BuildSpec
from stepforge.services.build.interpreters import (
    default_pyenv_roots,
    exact_version,
    find_python,
    host_python,
)
from stepforge.services.build.source_checks import check_entry_function
from stepforge.services.build.system_packages import (
    DEBIAN_PACKAGE_PATTERN,
    missing_system_packages,
)

logger = logging.getLogger(__name__)

_SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
_COMPLETE_MARKER = ".complete"
_OUTPUT_TAIL_LINES = 15

# What uv may see of this process's environment: enough to run and to reach a
# package index, and none of the service's own credentials.
_PASSED_ENVIRONMENT = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "TMPDIR",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "UV_INDEX_URL",
    "UV_DEFAULT_INDEX",
    "UV_EXTRA_INDEX_URL",
    "UV_INDEX",
)


class _StepRejected(Exception):
    """A step that cannot be built; the message is the reason users see."""


class LocalBuilder:
    """Builds steps on this host into `root`: extracted code under `code/`,
    virtual environments under `envs/`, uv's download cache in `uv-cache/`."""

    def __init__(
        self,
        root: Path,
        *,
        strict_python_version: bool = False,
        system_site_packages: bool = False,
        install_timeout_s: float = 900,
    ) -> None:
        self._root = Path(root)
        self._strict_python_version = strict_python_version
        # Lets environments see the host interpreter's packages, so a GPU
        # host's preinstalled CUDA libraries can serve every step.
        self._system_site_packages = system_site_packages
        self._install_timeout_s = install_timeout_s
        self._locks = _KeyedLocks(self._root / "locks")

    def locate(self, runtime_id: str, archive_sha256: str) -> tuple[Path, Path] | None:
        """The interpreter of a built environment and the extracted code of an
        archive, or None when either is not (or no longer) here."""
        if not (
            _SHA256_PATTERN.match(runtime_id) and _SHA256_PATTERN.match(archive_sha256)
        ):
            return None
        env_dir = self._root / "envs" / runtime_id
        code_dir = self._root / "code" / archive_sha256
        python = env_dir / "bin" / "python"
        if not (env_dir / _COMPLETE_MARKER).is_file() or not code_dir.is_dir():
            return None
        return python, code_dir

    def build(self, spec: BuildSpec, log: BuildLog) -> BuildOutcome:
        """Builds `spec`, writing progress to `log`. Never raises for a bad step."""
        try:
            return self._build(spec, log)
        except _StepRejected as exc:
            return _failed(log, str(exc))
        except Exception as exc:
            logger.exception("building step %s failed unexpectedly", spec.step_name)
            return _failed(log, f"internal error while building: {exc}")

    def _build(self, spec: BuildSpec, log: BuildLog) -> BuildOutcome:
        if spec.dockerfile_path:
            raise _StepRejected(
                f"dockerfile_path {spec.dockerfile_path!r} is set, but the embedded "
                "builder makes a virtual environment and cannot run a Dockerfile; "
                "the Kubernetes image builder honours it"
            )
        with _phase(log, "code ready"):
            code_dir = self._code_dir(spec, log)
        with _phase(log, "checks passed"):
            requirements = self._check_step(spec, code_dir)
        with _phase(log, "environment ready"):
            env_dir = self._environment(spec, code_dir, requirements, log)
        log.write(f"step {spec.step_name} is ready")
        return BuildOutcome(
            ready=True,
            runtime_id=env_dir.name,
            runtime_path=env_dir,
            code_path=code_dir,
        )

    def _code_dir(self, spec: BuildSpec, log: BuildLog) -> Path:
        sha = spec.archive_sha256
        if not _SHA256_PATTERN.match(sha):
            raise _StepRejected(f"archive_sha256 {sha!r} is not a sha256 hex digest")
        code_dir = self._root / "code" / sha
        with self._locks.hold(f"code-{sha}"):
            # Extraction renames into place only when complete, so a folder
            # that exists is whole.
            if code_dir.is_dir():
                log.write(f"reusing extracted code {sha}")
                return code_dir
            # Left by an extraction whose process died; nobody else can be
            # extracting this archive while the lock is held.
            for leftover in code_dir.parent.glob(f".{sha}.*"):
                shutil.rmtree(leftover, ignore_errors=True)
            actual = file_sha256(spec.archive_path)
            if actual != sha:
                raise _StepRejected(
                    f"the code archive's sha256 is {actual}, not the expected {sha}"
                )
            try:
                extract_archive(spec.archive_path, code_dir)
            except ArchiveError as exc:
                raise _StepRejected(f"code archive rejected: {exc}") from exc
        log.write(f"extracted code {sha}")
        return code_dir

    def _check_step(self, spec: BuildSpec, code_dir: Path) -> Path | None:
        """Checks what can be checked before installing; returns the
        requirements file, if any."""
        problems = check_entry_function(
            code_dir, spec.function_path, spec.function_name, spec.input_names
        )
        if problems:
            raise _StepRejected("; ".join(problems))
        requirements = _requirements_file(code_dir, spec.requirements_path)
        invalid = [
            name
            for name in spec.system_dependencies
            if not DEBIAN_PACKAGE_PATTERN.match(name)
        ]
        if invalid:
            raise _StepRejected(
                "system_dependencies are not Debian package names: "
                + ", ".join(repr(name) for name in invalid)
            )
        missing = missing_system_packages(spec.system_dependencies)
        if missing:
            raise _StepRejected(
                "system packages not installed on this host: "
                + ", ".join(missing)
                + "; the embedded builder cannot install them"
            )
        return requirements

    def _environment(
        self,
        spec: BuildSpec,
        code_dir: Path,
        requirements: Path | None,
        log: BuildLog,
    ) -> Path:
        python = self._python_for(spec.language.python_version, log)
        content = requirements.read_bytes() if requirements else b""
        # Requirements that point at files of the step's own code (nested
        # files, local wheels, paths) install something the text alone does not
        # pin, so such an environment is not shared with other code.
        code_salt = spec.archive_sha256 if _refers_to_local_files(content) else ""
        key = _environment_key(
            exact_version(python),
            python,
            content,
            spec.system_dependencies,
            code_salt,
            self._system_site_packages,
        )
        env_dir = self._root / "envs" / key
        if (env_dir / _COMPLETE_MARKER).is_file():
            log.write(f"reusing environment {key}")
            return env_dir
        with self._locks.hold(f"env-{key}"):
            if (env_dir / _COMPLETE_MARKER).is_file():
                log.write(f"reusing environment {key}")
                return env_dir
            if env_dir.exists():
                log.write(f"removing incomplete environment {key}")
                shutil.rmtree(env_dir)
            log.write(f"creating environment {key} with {python}")
            try:
                self._create_environment(env_dir, python, code_dir, requirements, log)
            except BaseException:
                shutil.rmtree(env_dir, ignore_errors=True)
                raise
            (env_dir / _COMPLETE_MARKER).write_text(key + "\n")
        return env_dir

    def _python_for(self, version: str, log: BuildLog) -> Path:
        found = find_python(version)
        if found is not None:
            log.write(f"using Python {version} at {found}")
            return found
        if self._strict_python_version:
            places = ", ".join(
                str(root / "versions" / f"{version}.*")
                for root in default_pyenv_roots()
            )
            raise _StepRejected(
                f"Python {version} is not installed on this host: looked for "
                f"python{version} on PATH and in {places}"
            )
        host, host_version = host_python()
        log.write(
            f"Python {version} is not installed on this host; using the host's "
            f"Python {host_version} at {host} instead"
        )
        return host

    def _create_environment(
        self,
        env_dir: Path,
        python: Path,
        code_dir: Path,
        requirements: Path | None,
        log: BuildLog,
    ) -> None:
        uv = _uv_binary()
        env_dir.parent.mkdir(parents=True, exist_ok=True)
        environment = self._uv_environment()
        site = ["--system-site-packages"] if self._system_site_packages else []
        self._run_uv(
            [uv, "venv", "--no-project", *site, "--python", str(python), str(env_dir)],
            cwd=self._root,
            environment=environment,
            action="creating the virtual environment",
            log=log,
        )
        if requirements is None:
            return
        self._run_uv(
            [
                uv,
                "pip",
                "install",
                "--python",
                str(env_dir / "bin" / "python"),
                "-r",
                str(requirements),
            ],
            cwd=code_dir,
            environment=environment,
            action="installing requirements",
            log=log,
        )

    def _uv_environment(self) -> dict[str, str]:
        environment = {
            name: os.environ[name] for name in _PASSED_ENVIRONMENT if name in os.environ
        }
        environment.update(
            UV_PYTHON_DOWNLOADS="never",
            UV_CACHE_DIR=str(self._root / "uv-cache"),
            # Config files in the step's code or the service user's home would
            # change what gets installed without changing the environment key.
            UV_NO_CONFIG="1",
            UV_NO_PROGRESS="1",
            NO_COLOR="1",
        )
        return environment

    def _run_uv(
        self,
        command: Sequence[str],
        *,
        cwd: Path,
        environment: dict[str, str],
        action: str,
        log: BuildLog,
    ) -> None:
        result = _run_logged(command, cwd, environment, self._install_timeout_s, log)
        if result.timed_out:
            raise _StepRejected(
                f"{action} took longer than {self._install_timeout_s:g} s; "
                f"uv's last output: {result.tail}"
            )
        if result.returncode != 0:
            raise _StepRejected(
                f"{action} failed (uv exit status {result.returncode}): {result.tail}"
            )


@dataclass(frozen=True)
class _RunResult:
    returncode: int
    timed_out: bool
    tail: str


def _run_logged(
    command: Sequence[str],
    cwd: Path,
    environment: dict[str, str],
    timeout_s: float,
    log: BuildLog,
) -> _RunResult:
    """Runs `command`, copying each line of its output to `log` as it comes."""
    tail: deque[str] = deque(maxlen=_OUTPUT_TAIL_LINES)
    process = subprocess.Popen(
        list(command),
        cwd=cwd,
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        # Its own process group, so that a timeout also stops the build
        # backends it started, which hold the output pipe open.
        start_new_session=True,
    )
    expired = threading.Event()

    def stop() -> None:
        expired.set()
        _kill_group(process)

    timer = threading.Timer(timeout_s, stop)
    with process:
        timer.start()
        try:
            for line in cast(IO[str], process.stdout):
                text = line.rstrip()
                if text:
                    log.write(text)
                    tail.append(text)
            returncode = process.wait()
        finally:
            timer.cancel()
            if process.poll() is None:
                _kill_group(process)
    return _RunResult(returncode, expired.is_set(), " | ".join(tail) or "no output")


def _kill_group(process: subprocess.Popen[str]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class _KeyedLocks:
    """Mutual exclusion per key, between threads and between processes."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._guard = threading.Lock()
        self._thread_locks: dict[str, threading.Lock] = {}

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        with self._guard:
            thread_lock = self._thread_locks.setdefault(key, threading.Lock())
        with thread_lock:
            self._directory.mkdir(parents=True, exist_ok=True)
            with open(self._directory / f"{key}.lock", "a") as lock_file:
                fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)


@contextmanager
def _phase(log: BuildLog, done: str) -> Iterator[None]:
    started = time.monotonic()
    yield
    log.write(f"{done} in {time.monotonic() - started:.1f} s")


def _failed(log: BuildLog, reason: str) -> BuildOutcome:
    log.write(f"build failed: {reason}")
    return BuildOutcome(ready=False, failure_reason=reason)


def _requirements_file(code_dir: Path, requirements_path: str | None) -> Path | None:
    if not requirements_path:
        return None
    pure = PurePosixPath(requirements_path)
    if pure.is_absolute() or ".." in pure.parts:
        raise _StepRejected(
            f"requirements_path {requirements_path!r} must be a relative path "
            "inside the step's code"
        )
    path = (code_dir / requirements_path).resolve()
    if not path.is_relative_to(code_dir.resolve()) or not path.is_file():
        raise _StepRejected(
            f"requirements_path {requirements_path!r} is not a file in the step's code"
        )
    return path


def _environment_key(
    python_version: str,
    python: Path,
    requirements: bytes,
    system_dependencies: Sequence[str],
    code_salt: str,
    system_site_packages: bool,
) -> str:
    description = json.dumps(
        {
            "code": code_salt,
            "system_site_packages": system_site_packages,
            "python_version": python_version,
            "python": str(python),
            "requirements_sha256": hashlib.sha256(requirements).hexdigest(),
            "system_dependencies": sorted(set(system_dependencies)),
        },
        sort_keys=True,
    )
    return hashlib.sha256(description.encode()).hexdigest()


_LOCAL_REFERENCE = re.compile(
    rb"^\s*(-r|-c|-e|--requirement|--constraint|--editable|\.|file:)",
    re.MULTILINE,
)


def _refers_to_local_files(requirements: bytes) -> bool:
    return bool(_LOCAL_REFERENCE.search(requirements))


def _uv_binary() -> str:
    try:
        return find_uv_bin()
    except FileNotFoundError:
        found = shutil.which("uv")
    if found is None:
        raise RuntimeError("the uv binary is not installed on this host")
    return found
