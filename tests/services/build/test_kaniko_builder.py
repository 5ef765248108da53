"""The Kaniko image builder against the fake cluster, its fake Kaniko and an
S3 store on loopback."""

from __future__ import annotations

import hashlib
import io
import shutil
import tarfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from support.fake_images import FakeImageRegistry, FakeKaniko, FakeStepImages
from support.fake_kube import FakeCluster, FakeNode, HostRuntime, running_fake_cluster
from support.kube_jobs import container_state, job_manifest
from support.waiting import eventually
from support.wheels import pure_python_wheel

from stepforge.services.build.build_context import CONTEXT_PREFIX
from stepforge.services.build.build_log import BuildLog
from stepforge.services.build.builder import BuildInterrupted, BuildOutcome, BuildSpec
from stepforge.services.build.kaniko_builder import KanikoBuilder
from stepforge.services.core.languages import find_language
from stepforge.services.core.object_store import LocalObjectStore, S3ObjectStore
from stepforge.services.kubernetes.api import KubeApi
from stepforge.services.kubernetes.client import api_client
from stepforge.services.kubernetes.settings import (
    DEFAULT_BUILD_TIMEOUT_S,
    DEFAULT_FETCH_IMAGE,
    DEFAULT_KANIKO_IMAGE,
    KubernetesSettings,
)

REPOSITORY = "registry.local:5000/stepforge/steps"
NAMESPACE = "stepforge-builds"
EXECUTION_SCRIPTS = Path(__file__).parents[3] / "services" / "execution"
STEP = (
    "import sys\n\n\ndef main(x=1):\n    return {'x': x}\n\n\n"
    "if __name__ == '__main__':\n    print('step code runs on', sys.prefix)\n"
)


@pytest.fixture
def store(s3_store: S3ObjectStore) -> S3ObjectStore:
    return s3_store


@pytest.fixture
def registry(tmp_path: Path) -> FakeImageRegistry:
    return FakeImageRegistry(tmp_path / "registry")


@pytest.fixture
def cluster(tmp_path: Path, registry: FakeImageRegistry) -> Iterator[FakeCluster]:
    with running_fake_cluster(tmp_path) as cluster:
        _register_images(cluster, registry)
        yield cluster


@pytest.fixture
def scripts(tmp_path: Path) -> Path:
    """The execution service's scripts, with a stand-in for a missing one."""
    folder = tmp_path / "scripts"
    folder.mkdir()
    for name in ("runner.py", "pod_entry.py"):
        source = EXECUTION_SCRIPTS / name
        if source.is_file():
            shutil.copy(source, folder / name)
        else:
            (folder / name).write_text("raise SystemExit('stand-in')\n")
    return folder


class _Builds:
    """Builders and step specs for one test."""

    def __init__(
        self, tmp_path: Path, cluster: FakeCluster, store: S3ObjectStore, scripts: Path
    ) -> None:
        self.tmp_path = tmp_path
        self.cluster = cluster
        self.store = store
        self.scripts = scripts
        self.settings = KubernetesSettings(
            image_repository=REPOSITORY,
            namespace=NAMESPACE,
            kubeconfig=cluster.kubeconfig,
            job_ttl_s=600,
        )
        self._builders: list[KanikoBuilder] = []

    def builder(
        self,
        root: str = "build",
        *,
        settings: KubernetesSettings | None = None,
        pending_timeout_s: int = 20,
        build_timeout_s: int = DEFAULT_BUILD_TIMEOUT_S,
        **options: Any,
    ) -> KanikoBuilder:
        settings = replace(
            settings or self.settings,
            pending_timeout_s=pending_timeout_s,
            build_timeout_s=build_timeout_s,
        )
        options.setdefault("poll_interval_s", 0.05)
        options.setdefault("pull_error_timeout_s", 20)
        builder = KanikoBuilder(
            api_client(settings),
            settings,
            self.store,
            self.tmp_path / root,
            scripts_dir=self.scripts,
            **options,
        )
        self._builders.append(builder)
        return builder

    def spec(
        self, files: dict[str, str | bytes] | None = None, **overrides: Any
    ) -> BuildSpec:
        archive, sha256 = _archive(
            self.tmp_path / "archives", files or {"main.py": STEP}
        )
        language = find_language(overrides.pop("language", "python:3.11-slim"))
        assert language is not None
        return BuildSpec(
            step_name="demo",
            archive_path=archive,
            archive_sha256=sha256,
            function_path="main.py",
            function_name="main",
            input_names=("x",),
            language=language,
            **overrides,
        )

    def close(self) -> None:
        for builder in self._builders:
            builder.interrupt()
            builder.close()


@pytest.fixture
def builds(
    tmp_path: Path, cluster: FakeCluster, store: S3ObjectStore, scripts: Path
) -> Iterator[_Builds]:
    builds = _Builds(tmp_path, cluster, store, scripts)
    yield builds
    builds.close()


def test_a_build_pushes_an_image_whose_python_runs_the_step_code(
    builds: _Builds, registry: FakeImageRegistry
) -> None:
    outcome, log = _build(builds.builder(), builds.spec())

    assert outcome.ready, outcome.failure_reason
    repository, _, tag = outcome.runtime_id.rpartition(":")
    assert repository == REPOSITORY and len(tag) == 64
    image = registry.find(outcome.runtime_id)
    assert image is not None
    assert f"pushed image digest {image.digest}" in log
    assert "kaniko: INFO" in log and f"Pushing image to {outcome.runtime_id}" in log
    # The context went to the pod through the store, which keeps no copy.
    assert not list(builds.store.list(CONTEXT_PREFIX))
    [job] = builds.cluster.created("Job")
    assert job["metadata"]["namespace"] == NAMESPACE

    code, output = _run_in_image(
        builds, outcome.runtime_id, ["python", "-u", "/stepforge/code/main.py"]
    )
    assert code == 0, output
    assert output.strip().endswith("/stepforge/venv"), output
    runner_code, runner_output = _run_in_image(
        builds, outcome.runtime_id, ["python", "/stepforge/runner.py"]
    )
    assert runner_code == 2, runner_output


def test_an_identical_build_is_skipped_even_after_a_restart(builds: _Builds) -> None:
    spec = builds.spec()
    first, _ = _build(builds.builder(), spec)
    again, again_log = _build(builds.builder(), spec)

    assert first.ready and again.ready
    assert again.runtime_id == first.runtime_id
    assert "already built and pushed (sha256:" in again_log
    assert len(builds.cluster.created("Job")) == 1


def test_identical_builds_at_the_same_time_run_kaniko_once(builds: _Builds) -> None:
    builder, spec = builds.builder(), builds.spec()
    results: list[tuple[BuildOutcome, str]] = []
    threads = [
        threading.Thread(target=lambda: results.append(_build(builder, spec)))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert [outcome.ready for outcome, _ in results] == [True, True]
    assert results[0][0].runtime_id == results[1][0].runtime_id
    assert len(builds.cluster.created("Job")) == 1
    assert sum("already built and pushed" in log for _, log in results) == 1


def test_a_failing_package_install_reports_the_reason_and_the_log(
    builds: _Builds, registry: FakeImageRegistry
) -> None:
    spec = builds.spec(system_dependencies=("stepforge-no-such-package",))

    outcome, log = _build(builds.builder(), spec)

    assert not outcome.ready
    assert "kaniko exited with status 1" in outcome.failure_reason
    assert "Unable to locate package stepforge-no-such-package" in (
        outcome.failure_reason
    )
    assert "kaniko: E: Unable to locate package stepforge-no-such-package" in log
    assert f"build failed: {outcome.failure_reason}" in log
    assert registry.references() == []


def test_a_failing_run_in_the_steps_own_dockerfile_reports_its_exit_status(
    builds: _Builds,
) -> None:
    dockerfile = "FROM python:3.11-slim\nRUN echo about to fail && exit 3\n"
    spec = builds.spec(
        {"main.py": STEP, "Dockerfile": dockerfile}, dockerfile_path="Dockerfile"
    )

    outcome, log = _build(builds.builder(), spec)

    assert not outcome.ready
    assert "exit status 3" in outcome.failure_reason
    assert "about to fail" in outcome.failure_reason
    assert "kaniko: about to fail" in log


def test_a_steps_own_dockerfile_still_gives_an_image_of_the_contract(
    builds: _Builds,
) -> None:
    dockerfile = "FROM python:3.12-slim\nENV GREETING=hello\n"
    spec = builds.spec(
        {"main.py": STEP, "Dockerfile": dockerfile}, dockerfile_path="Dockerfile"
    )

    outcome, _ = _build(builds.builder(), spec)
    assert outcome.ready, outcome.failure_reason
    code, output = _run_in_image(
        builds,
        outcome.runtime_id,
        ["python", "-c", "import main, os; print(main.main(), os.environ['GREETING'])"],
    )

    assert code == 0, output
    assert output.strip() == "{'x': 1} hello"


def test_a_cuda_step_gets_its_requirements_in_the_venv_uv_made(
    builds: _Builds, registry: FakeImageRegistry
) -> None:
    wheel_name, wheel = pure_python_wheel("tinydep", "1.0", "VALUE = 42\n")
    spec = builds.spec(
        {
            "main.py": STEP,
            "requirements.txt": f"./wheels/{wheel_name}\n",
            f"wheels/{wheel_name}": wheel,
        },
        language="python-cuda:3.11-12.4",
        requirements_path="requirements.txt",
    )

    outcome, log = _build(builds.builder(), spec)
    assert outcome.ready, outcome.failure_reason
    code, output = _run_in_image(
        builds,
        outcome.runtime_id,
        [
            "python",
            "-c",
            "import os, tinydep; print(tinydep.VALUE, os.environ['CUDA_VERSION'])",
        ],
    )

    assert code == 0, output
    assert output.strip() == "42 12.4.1"
    assert "FROM nvidia/cuda:12.4.1-runtime-ubuntu22.04" in log


def test_a_build_submitted_again_after_a_restart_follows_the_running_job(
    builds: _Builds, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    dockerfile = (
        "FROM python:3.11-slim\n"
        f"RUN while [ ! -e {release} ]; do sleep 0.05; done; echo released\n"
    )
    spec = builds.spec(
        {"main.py": STEP, "Dockerfile": dockerfile}, dockerfile_path="Dockerfile"
    )
    first = builds.builder("first")
    interrupted: list[BaseException] = []

    def run_first() -> None:
        try:
            first.build(spec, BuildLog())
        except BuildInterrupted as error:
            interrupted.append(error)

    thread = threading.Thread(target=run_first)
    thread.start()
    assert eventually(lambda: _kaniko_running(builds.cluster), 20)
    first.interrupt()
    thread.join(10)
    assert len(interrupted) == 1

    restarted = builds.builder("first")
    log = BuildLog()
    result: list[BuildOutcome] = []
    resumed = threading.Thread(target=lambda: result.append(restarted.build(spec, log)))
    resumed.start()
    assert eventually(lambda: "following the existing build Job" in log.text(), 20)
    release.touch()
    resumed.join(30)

    assert result and result[0].ready, log.text()
    assert "kaniko: released" in log.text()
    assert len(builds.cluster.created("Job")) == 1


def test_an_unknown_kaniko_image_fails_once_the_pull_error_persists(
    builds: _Builds,
) -> None:
    settings = replace(builds.settings, kaniko_image="registry.invalid/kaniko:missing")
    builder = builds.builder(settings=settings, pull_error_timeout_s=0.5)

    outcome, log = _build(builder, builds.spec())

    assert not outcome.ready
    assert "cannot pull image registry.invalid/kaniko:missing" in outcome.failure_reason
    assert "ErrImagePull" in outcome.failure_reason
    assert "deleted the build Job" in log
    assert eventually(lambda: not builds.cluster.objects("Job", NAMESPACE), 10)


def test_an_unschedulable_build_pod_fails_after_the_pending_timeout(
    tmp_path: Path, store: S3ObjectStore, scripts: Path, registry: FakeImageRegistry
) -> None:
    tainted = FakeNode("busy", taints=({"key": "busy", "effect": "NoSchedule"},))
    with running_fake_cluster(tmp_path / "tainted", nodes=[tainted]) as cluster:
        _register_images(cluster, registry)
        builds = _Builds(tmp_path, cluster, store, scripts)
        try:
            builder = builds.builder(pending_timeout_s=1)
            outcome, _ = _build(builder, builds.spec())
        finally:
            builds.close()

    assert not outcome.ready
    assert "did not start within 1 s" in outcome.failure_reason
    assert "cannot be scheduled" in outcome.failure_reason


def test_a_build_that_outlives_its_deadline_is_stopped(
    builds: _Builds, tmp_path: Path
) -> None:
    dockerfile = (
        "FROM python:3.11-slim\n"
        f"RUN while [ ! -e {tmp_path}/never ]; do sleep 0.05; done\n"
    )
    spec = builds.spec(
        {"main.py": STEP, "Dockerfile": dockerfile}, dockerfile_path="Dockerfile"
    )

    outcome, _ = _build(builds.builder(build_timeout_s=1), spec)

    assert not outcome.ready
    assert "took longer than its limit of 1 s" in outcome.failure_reason


def test_a_step_that_cannot_be_built_fails_before_any_job(builds: _Builds) -> None:
    builder = builds.builder()

    missing, _ = _build(builder, replace(builds.spec(), function_name="absent"))
    injected, _ = _build(builder, builds.spec(requirements_path="main.py; sh"))

    assert "no top-level 'def absent'" in missing.failure_reason
    assert "container_config.requirements_path" in injected.failure_reason
    assert builds.cluster.created("Job") == []


def test_the_builder_needs_a_presigning_store_and_both_scripts(
    builds: _Builds, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="needs an S3-compatible object store"):
        KanikoBuilder(
            api_client(builds.settings),
            builds.settings,
            LocalObjectStore(tmp_path / "objects"),
            tmp_path / "local",
        )
    (builds.scripts / "pod_entry.py").unlink()
    with pytest.raises(RuntimeError, match=r"pod_entry\.py is missing"):
        builds.builder("no-entry")


def _register_images(cluster: FakeCluster, registry: FakeImageRegistry) -> None:
    cluster.register_image(DEFAULT_KANIKO_IMAGE.split(":")[0], FakeKaniko(registry))
    cluster.register_image(DEFAULT_FETCH_IMAGE.split(":")[0], HostRuntime())
    cluster.register_image(REPOSITORY, FakeStepImages(registry))


def _build(builder: KanikoBuilder, spec: BuildSpec) -> tuple[BuildOutcome, str]:
    log = BuildLog()
    outcome = builder.build(spec, log)
    return outcome, log.text()


def _kaniko_running(cluster: FakeCluster) -> bool:
    for pod in cluster.objects("Pod", NAMESPACE):
        for status in pod.get("status", {}).get("containerStatuses") or []:
            if status["name"] == "kaniko" and "running" in (status.get("state") or {}):
                return True
    return False


def _run_in_image(builds: _Builds, image: str, command: list[str]) -> tuple[int, str]:
    """Runs `command` in a pod of `image`; its exit code and its log."""
    kube = KubeApi(api_client(builds.settings), NAMESPACE)
    name = f"try-{uuid.uuid4().hex[:8]}"
    kube.create_job(
        job_manifest(
            name, command, image=image, container="step", workingDir="/stepforge/code"
        )
    )

    def ended() -> tuple[str, int] | None:
        for pod in kube.job_pods(name):
            terminated = container_state(pod, "step").get("terminated")
            if terminated is not None:
                return pod["metadata"]["name"], terminated["exitCode"]
        return None

    assert eventually(lambda: ended() is not None, 20)
    found = ended()
    assert found is not None
    pod, code = found
    with kube.pod_log(pod, "step", follow=False, read_timeout_s=30) as log:
        return code, "\n".join(line.decode() for line in log.lines())


def _archive(directory: Path, files: dict[str, str | bytes]) -> tuple[Path, str]:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in sorted(files.items()):
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(data))
    content = buffer.getvalue()
    sha256 = hashlib.sha256(content).hexdigest()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{uuid.uuid4().hex}.tar.gz"
    path.write_bytes(content)
    return path, sha256
