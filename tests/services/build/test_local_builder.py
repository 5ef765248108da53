from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import tarfile
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from support.wheels import pure_python_wheel

from stepforge.services.build.build_log import BuildLog
from stepforge.services.build.builder import BuildOutcome, BuildSpec
from stepforge.services.build.local_builder import LocalBuilder
from stepforge.services.core.languages import Language

_HOST_VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"
_STEP = "def run(x, scale=2):\n    return x * scale\n"


def _archive(directory: Path, files: dict[str, str]) -> tuple[Path, str]:
    """Writes a code archive of `files`; returns its path and sha256."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    content = buffer.getvalue()
    sha = hashlib.sha256(content).hexdigest()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{sha}.tar.gz"
    path.write_bytes(content)
    return path, sha


def _wheel(directory: Path, name: str, version: str, module_source: str) -> Path:
    """Writes a minimal pure-Python wheel into `directory`."""
    file_name, content = pure_python_wheel(name, version, module_source)
    directory.mkdir(parents=True, exist_ok=True)
    wheel = directory / file_name
    wheel.write_bytes(content)
    return wheel


class _Steps:
    """Makes build specs for steps whose code lives in `tmp_path`."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.wheels = tmp_path / "wheels"

    def spec(
        self,
        files: dict[str, str] | None = None,
        **overrides: Any,
    ) -> BuildSpec:
        path, sha = _archive(self.tmp_path / "archives", files or {"step.py": _STEP})
        spec = BuildSpec(
            step_name="demo",
            archive_path=path,
            archive_sha256=sha,
            function_path="step.py",
            function_name="run",
            input_names=("x",),
            language=Language(f"python:{_HOST_VERSION}-slim", _HOST_VERSION),
        )
        return replace(spec, **overrides)

    def local_requirements(self, line: str) -> str:
        return f"--no-index\n--find-links {self.wheels}\n{line}\n"


@pytest.fixture
def steps(tmp_path: Path) -> _Steps:
    return _Steps(tmp_path)


@pytest.fixture
def builder(tmp_path: Path) -> LocalBuilder:
    return LocalBuilder(tmp_path / "builds")


def _build(builder: LocalBuilder, spec: BuildSpec) -> tuple[BuildOutcome, str]:
    log = BuildLog()
    outcome = builder.build(spec, log)
    return outcome, log.text()


def _run_in(env: Path, code: str, cwd: Path | None = None) -> str:
    result = subprocess.run(
        [str(env / "bin" / "python"), "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=cwd,
    )
    return result.stdout.strip()


def _builder_root(steps: _Steps) -> Path:
    return steps.tmp_path / "builds"


def _assert_fails(outcome: BuildOutcome, log: str, *fragments: str) -> None:
    assert not outcome.ready
    assert outcome.runtime_path is None
    for fragment in fragments:
        assert fragment in outcome.failure_reason
    assert f"build failed: {outcome.failure_reason}" in log


def test_one_file_step_builds(builder: LocalBuilder, steps: _Steps) -> None:
    outcome, log = _build(builder, steps.spec())

    assert outcome.ready, outcome.failure_reason
    assert outcome.runtime_path is not None and outcome.code_path is not None
    assert (outcome.code_path / "step.py").read_text() == _STEP
    assert (
        _run_in(
            outcome.runtime_path, "import step; print(step.run(21))", outcome.code_path
        )
        == "42"
    )
    assert _run_in(outcome.runtime_path, "import sys; print(sys.prefix)") == str(
        outcome.runtime_path
    )
    assert "environment ready in" in log
    assert "code ready in" in log


def test_environment_is_shared_by_steps_with_the_same_requirements(
    builder: LocalBuilder, steps: _Steps
) -> None:
    requirements = steps.local_requirements("")
    _wheel(steps.wheels, "tinydep", "1.0", "VALUE = 1\n")
    first, _ = _build(
        builder,
        steps.spec(
            {"step.py": _STEP, "requirements.txt": requirements},
            requirements_path="requirements.txt",
        ),
    )
    second, second_log = _build(
        builder,
        steps.spec(
            {"other.py": "def go(x):\n    return x\n", "req.txt": requirements},
            function_path="other.py",
            function_name="go",
            requirements_path="req.txt",
        ),
    )

    assert first.ready and second.ready, second.failure_reason
    assert first.runtime_path is not None
    assert second.runtime_path == first.runtime_path
    assert second.code_path != first.code_path
    assert f"reusing environment {first.runtime_path.name}" in second_log


def test_different_requirements_get_different_environments(
    builder: LocalBuilder, steps: _Steps
) -> None:
    _wheel(steps.wheels, "tinydep", "1.0", "VALUE = 1\n")
    plain, _ = _build(builder, steps.spec())
    with_dependency, _ = _build(
        builder,
        steps.spec(
            {"step.py": _STEP, "r.txt": steps.local_requirements("tinydep")},
            requirements_path="r.txt",
        ),
    )

    assert plain.ready and with_dependency.ready
    assert plain.runtime_path != with_dependency.runtime_path


def test_requirements_are_installed_from_a_local_wheel(
    builder: LocalBuilder, steps: _Steps
) -> None:
    _wheel(steps.wheels, "tinydep", "1.0", "VALUE = 42\n")
    spec = steps.spec(
        {
            "step.py": _STEP,
            "deps/requirements.txt": steps.local_requirements("tinydep==1.0"),
        },
        requirements_path="deps/requirements.txt",
    )

    outcome, log = _build(builder, spec)

    assert outcome.ready, outcome.failure_reason
    assert outcome.runtime_path is not None
    assert _run_in(outcome.runtime_path, "import tinydep; print(tinydep.VALUE)") == "42"
    assert "tinydep==1.0" in log


def test_failed_install_gives_the_end_of_uv_output(
    builder: LocalBuilder, steps: _Steps
) -> None:
    _wheel(steps.wheels, "tinydep", "1.0", "VALUE = 1\n")
    spec = steps.spec(
        {"step.py": _STEP, "r.txt": steps.local_requirements("tinydep==2.0")},
        requirements_path="r.txt",
    )

    outcome, log = _build(builder, spec)

    _assert_fails(outcome, log, "installing requirements failed", "tinydep")
    assert not any((_builder_root(steps) / "envs").iterdir())


def test_extracted_code_is_reused(builder: LocalBuilder, steps: _Steps) -> None:
    spec = steps.spec()
    first, _ = _build(builder, spec)
    second, log = _build(builder, spec)

    assert second.code_path == first.code_path
    assert f"reusing extracted code {spec.archive_sha256}" in log


def test_incomplete_environment_is_rebuilt(
    builder: LocalBuilder, steps: _Steps
) -> None:
    spec = steps.spec()
    first, _ = _build(builder, spec)
    assert first.runtime_path is not None
    (first.runtime_path / ".complete").unlink()
    (first.runtime_path / "half-written").write_text("")

    second, log = _build(builder, spec)

    assert second.ready and second.runtime_path == first.runtime_path
    assert "removing incomplete environment" in log
    assert not (first.runtime_path / "half-written").exists()
    assert (first.runtime_path / ".complete").is_file()


def test_concurrent_builds_of_one_step_agree(
    builder: LocalBuilder, steps: _Steps
) -> None:
    spec = steps.spec()
    outcomes: list[BuildOutcome] = []

    def build() -> None:
        outcomes.append(builder.build(spec, BuildLog()))

    threads = [threading.Thread(target=build) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert all(outcome.ready for outcome in outcomes)
    assert len({(o.runtime_path, o.code_path) for o in outcomes}) == 1


def test_dockerfile_is_refused(builder: LocalBuilder, steps: _Steps) -> None:
    outcome, log = _build(builder, steps.spec(dockerfile_path="Dockerfile"))

    _assert_fails(
        outcome,
        log,
        "dockerfile_path 'Dockerfile'",
        "cannot run a Dockerfile",
        "Kubernetes image builder",
    )


def test_entry_function_problems_are_all_reported(
    builder: LocalBuilder, steps: _Steps
) -> None:
    spec = steps.spec(
        {"step.py": "def run(model, /, other):\n    pass\n"},
        input_names=("model", "data"),
    )

    outcome, log = _build(builder, spec)

    _assert_fails(
        outcome,
        log,
        "parameter 'model' is positional-only",
        "no parameter for declared input 'data'",
        "parameter 'other' has no default",
    )


def test_missing_requirements_file_is_named(
    builder: LocalBuilder, steps: _Steps
) -> None:
    outcome, log = _build(builder, steps.spec(requirements_path="reqs/base.txt"))

    _assert_fails(outcome, log, "requirements_path 'reqs/base.txt' is not a file")


def test_missing_system_packages_are_all_listed(
    builder: LocalBuilder, steps: _Steps
) -> None:
    spec = steps.spec(
        system_dependencies=("bash", "stepforge-absent-one", "stepforge-absent-two")
    )

    outcome, log = _build(builder, spec)

    _assert_fails(
        outcome,
        log,
        "system packages not installed on this host: "
        "stepforge-absent-one, stepforge-absent-two",
    )


def test_invalid_system_package_name_is_refused(
    builder: LocalBuilder, steps: _Steps
) -> None:
    outcome, log = _build(builder, steps.spec(system_dependencies=("--force",)))

    _assert_fails(outcome, log, "not Debian package names: '--force'")


def test_strict_mode_fails_for_an_absent_python(tmp_path: Path, steps: _Steps) -> None:
    builder = LocalBuilder(tmp_path / "builds", strict_python_version=True)
    spec = steps.spec(language=Language("python:3.99-slim", "3.99"))

    outcome, log = _build(builder, spec)

    _assert_fails(
        outcome,
        log,
        "Python 3.99 is not installed on this host",
        "python3.99 on PATH",
        "versions/3.99.*",
    )


def test_absent_python_falls_back_to_the_host(
    builder: LocalBuilder, steps: _Steps
) -> None:
    spec = steps.spec(language=Language("python:3.99-slim", "3.99"))

    outcome, log = _build(builder, spec)

    assert outcome.ready, outcome.failure_reason
    assert outcome.runtime_path is not None
    assert (
        f"Python 3.99 is not installed on this host; using the host's "
        f"Python {_HOST_VERSION}" in log
    )
    assert (
        _run_in(
            outcome.runtime_path, "import sys; print('%d.%d' % sys.version_info[:2])"
        )
        == _HOST_VERSION
    )


@pytest.mark.skipif(
    not list((Path.home() / ".pyenv" / "versions").glob("3.12.*")),
    reason="no pyenv Python 3.12 on this machine",
)
def test_step_gets_the_python_it_asks_for(builder: LocalBuilder, steps: _Steps) -> None:
    outcome, _ = _build(
        builder, steps.spec(language=Language("python:3.12-slim", "3.12"))
    )

    assert outcome.ready, outcome.failure_reason
    assert outcome.runtime_path is not None
    assert (
        _run_in(
            outcome.runtime_path, "import sys; print('%d.%d' % sys.version_info[:2])"
        )
        == "3.12"
    )


def test_unsafe_archive_is_rejected(builder: LocalBuilder, steps: _Steps) -> None:
    outcome, log = _build(builder, steps.spec({"../escape.py": _STEP}))

    _assert_fails(outcome, log, "code archive rejected", "contains '..'")
    assert not (_builder_root(steps) / "code").exists() or not any(
        (_builder_root(steps) / "code").iterdir()
    )


def test_archive_that_does_not_match_its_sha256_is_rejected(
    builder: LocalBuilder, steps: _Steps
) -> None:
    spec = steps.spec()
    spec.archive_path.write_bytes(spec.archive_path.read_bytes() + b"tampered")

    outcome, log = _build(builder, spec)

    _assert_fails(outcome, log, "not the expected " + spec.archive_sha256)


def test_malformed_sha256_is_rejected(builder: LocalBuilder, steps: _Steps) -> None:
    outcome, log = _build(builder, steps.spec(archive_sha256="../../etc"))

    _assert_fails(outcome, log, "archive_sha256 '../../etc' is not a sha256")


def test_unexpected_error_becomes_a_failed_outcome(
    builder: LocalBuilder, steps: _Steps, caplog: pytest.LogCaptureFixture
) -> None:
    spec = steps.spec()
    spec.archive_path.unlink()

    outcome, log = _build(builder, spec)

    _assert_fails(outcome, log, "internal error while building", spec.archive_path.name)
    assert "building step demo failed unexpectedly" in caplog.text


def test_uv_that_runs_too_long_is_stopped(tmp_path: Path, steps: _Steps) -> None:
    # No uv run finishes within a millisecond: starting the process alone
    # takes longer.
    builder = LocalBuilder(tmp_path / "builds", install_timeout_s=0.001)

    outcome, log = _build(builder, steps.spec())

    _assert_fails(
        outcome, log, "creating the virtual environment took longer than 0.001 s"
    )
    assert not any((tmp_path / "builds" / "envs").iterdir())


def test_requirements_that_refer_to_the_code_do_not_share_environments(
    builder: LocalBuilder, steps: _Steps
) -> None:
    requirements = "-r more-requirements.txt\n"
    first, _ = _build(
        builder,
        steps.spec(
            {
                "step.py": _STEP,
                "requirements.txt": requirements,
                "more-requirements.txt": "",
            },
            requirements_path="requirements.txt",
        ),
    )
    second, _ = _build(
        builder,
        steps.spec(
            {
                "step.py": _STEP + "\n",
                "requirements.txt": requirements,
                "more-requirements.txt": "\n",
            },
            requirements_path="requirements.txt",
        ),
    )

    assert first.ready and second.ready, second.failure_reason
    assert first.runtime_path != second.runtime_path
