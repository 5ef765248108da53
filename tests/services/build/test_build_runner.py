from __future__ import annotations

from pathlib import Path

from stepforge.services.build.build_log import BuildLog
from stepforge.services.build.build_runner import BuildRunner
from stepforge.services.build.builder import BuildInterrupted, BuildOutcome, BuildSpec
from stepforge.services.core.object_store import LocalObjectStore
from stepforge.v1 import common_pb2, registry_pb2

IMAGE = "registry.local:5000/steps:" + "ab" * 32


class _Registry:
    """Records the build reports a runner sends."""

    def __init__(self) -> None:
        self.reports: list[registry_pb2.UpdateStepBuildRequest] = []

    def update_step_build(
        self, request: registry_pb2.UpdateStepBuildRequest
    ) -> common_pb2.Step:
        self.reports.append(request)
        return common_pb2.Step(name=request.name)


class _Builder:
    def __init__(self, outcome: BuildOutcome | None) -> None:
        self._outcome = outcome
        self.specs: list[BuildSpec] = []

    def build(self, spec: BuildSpec, log: BuildLog) -> BuildOutcome:
        self.specs.append(spec)
        if self._outcome is None:
            raise BuildInterrupted("the service is stopping")
        return self._outcome


def _run(tmp_path: Path, builder: _Builder) -> tuple[_Registry, Path]:
    registry = _Registry()
    runner = BuildRunner(
        builder,
        registry,  # type: ignore[arg-type]
        LocalObjectStore(tmp_path / "objects"),
        tmp_path / "scratch",
        workers=1,
    )
    archive = tmp_path / "archive.tar.gz"
    archive.write_bytes(b"code")
    step = common_pb2.Step(
        name="steps/demo",
        function_path="main.py",
        function_name="main",
        archive_sha256="0" * 64,
        container_config=common_pb2.ContainerConfig(language="python:3.11-slim"),
    )
    runner.submit("env", step, archive, BuildLog()).result(10)
    runner.shutdown()
    return registry, archive


def test_a_ready_build_reports_the_runtime_id_its_builder_gave(
    tmp_path: Path,
) -> None:
    builder = _Builder(BuildOutcome(ready=True, runtime_id=IMAGE))

    registry, archive = _run(tmp_path, builder)

    [report] = registry.reports
    assert report.status == common_pb2.STEP_STATUS_READY
    assert report.runtime_id == IMAGE
    assert builder.specs[0].language.name == "python:3.11-slim"
    assert not archive.exists()


def test_an_interrupted_build_is_left_pending_for_the_next_start(
    tmp_path: Path,
) -> None:
    registry, archive = _run(tmp_path, _Builder(None))

    assert registry.reports == []
    assert not archive.exists()
