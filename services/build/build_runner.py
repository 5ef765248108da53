"""Runs builds in the background and reports each one's end to the registry."""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from stepforge.services.build.build_log import BuildLog
from stepforge.services.build.builder import (
    Builder,
    BuildInterrupted,
    BuildOutcome,
    BuildSpec,
)
from stepforge.services.build.git_archive import SourceError, archive_from_git
from stepforge.services.build.upload import archive_key
from stepforge.services.core.languages import find_language
from stepforge.services.core.object_store import ObjectNotFoundError, ObjectStore
from stepforge.services.core.registry_client import RegistryClient
from stepforge.v1 import common_pb2, registry_pb2

logger = logging.getLogger(__name__)

INTERRUPTED_REASON = "interrupted by a restart before its code was stored"


class BuildRunner:
    """A bounded pool of build workers; a build never outlives its report."""

    def __init__(
        self,
        builder: Builder,
        registry: RegistryClient,
        store: ObjectStore,
        scratch_dir: Path,
        workers: int,
    ) -> None:
        self._builder = builder
        self._registry = registry
        self._store = store
        self._scratch_dir = scratch_dir
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="build")
        # Set when a build has been reported, so waiters learn of it at once.
        self._in_flight: dict[tuple[str, str], threading.Event] = {}
        self._lock = threading.Lock()

    def submit(
        self, environment: str, step: common_pb2.Step, archive: Path, log: BuildLog
    ) -> Future[None]:
        """Builds `step` from the local `archive` file, which it then removes."""
        with self._lock:
            self._in_flight[(environment, step.name)] = threading.Event()
        return self._pool.submit(self._run, environment, step, archive, log)

    def submit_git(
        self, environment: str, step: common_pb2.Step, known_hosts: str, log: BuildLog
    ) -> Future[None]:
        """Clones the step's repository, stores its archive, then builds it."""
        with self._lock:
            self._in_flight[(environment, step.name)] = threading.Event()
        return self._pool.submit(self._run_git, environment, step, known_hosts, log)

    def wait(self, environment: str, name: str, timeout_s: float) -> None:
        """Returns when the build of `name` here has been reported, when
        `timeout_s` passes, or at once when no such build runs here."""
        with self._lock:
            finished = self._in_flight.get((environment, name))
        if finished is not None:
            finished.wait(timeout_s)

    def resume_pending(self) -> int:
        """Restarts the builds that were in flight when the service stopped.

        A step whose archive was stored is built again from it; one whose
        upload had not finished is marked failed.
        """
        resumed = 0
        for pending in self._registry.pending_steps():
            step = pending.step
            log = BuildLog(earlier=step.build_log)
            is_git = step.origin == common_pb2.STEP_ORIGIN_GIT_REPOSITORY
            if is_git and not step.archive_sha256:
                log.write("build resumed after a restart")
                self.submit_git(pending.environment, step, pending.known_hosts, log)
                resumed += 1
                continue
            if not step.archive_sha256:
                log.write(f"build failed: {INTERRUPTED_REASON}")
                self._report(pending.environment, step, log, ready=False)
                continue
            log.write("build resumed after a restart")
            try:
                archive = self._fetch_archive(step.archive_sha256)
            except ObjectNotFoundError:
                log.write("build failed: its stored archive is missing")
                self._report(pending.environment, step, log, ready=False)
                continue
            self.submit(pending.environment, step, archive, log)
            resumed += 1
        return resumed

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=False)

    def _run(
        self, environment: str, step: common_pb2.Step, archive: Path, log: BuildLog
    ) -> None:
        started = time.monotonic()
        try:
            outcome = self._build(step, archive, log)
        except BuildInterrupted:
            # Left pending: the next start resumes it from the stored archive.
            logger.info("build of %s interrupted by the service stopping", step.name)
            self._announce_end(environment, step.name)
            return
        except Exception as error:  # a bug must still end the build
            logger.exception("build of %s crashed", step.name)
            outcome = BuildOutcome(
                ready=False, failure_reason=f"internal error: {error}"
            )
            log.write(f"build failed: internal error: {error}")
        finally:
            archive.unlink(missing_ok=True)
        elapsed = time.monotonic() - started
        logger.info(
            "build of %s in environment %s %s in %.2f s",
            step.name,
            environment,
            "succeeded" if outcome.ready else "failed",
            elapsed,
        )
        self._report(
            environment, step, log, ready=outcome.ready, runtime_id=outcome.runtime_id
        )
        self._announce_end(environment, step.name)

    def _run_git(
        self, environment: str, step: common_pb2.Step, known_hosts: str, log: BuildLog
    ) -> None:
        try:
            source = archive_from_git(
                step, known_hosts, self._scratch_dir, self._store, log
            )
            step = self._registry.update_step_build(
                registry_pb2.UpdateStepBuildRequest(
                    environment=environment,
                    name=step.name,
                    status=common_pb2.STEP_STATUS_PENDING,
                    build_log=log.text(),
                    archive_sha256=source.sha256,
                    archive_size_bytes=source.size,
                    commit_id=source.commit_id,
                )
            )
        except SourceError as error:
            log.write(f"build failed: {error}")
            self._report(environment, step, log, ready=False)
            self._announce_end(environment, step.name)
            return
        except Exception as error:  # a bug must still end the build
            logger.exception("fetching the code of %s crashed", step.name)
            log.write(f"build failed: internal error: {error}")
            self._report(environment, step, log, ready=False)
            self._announce_end(environment, step.name)
            return
        self._run(environment, step, source.path, log)

    def _announce_end(self, environment: str, name: str) -> None:
        with self._lock:
            finished = self._in_flight.pop((environment, name), None)
        if finished is not None:
            finished.set()

    def _build(
        self, step: common_pb2.Step, archive: Path, log: BuildLog
    ) -> BuildOutcome:
        config = step.container_config
        language = find_language(config.language)
        if language is None:
            reason = f"container_config.language {config.language!r} is not supported"
            log.write(f"build failed: {reason}")
            return BuildOutcome(ready=False, failure_reason=reason)
        spec = BuildSpec(
            step_name=step.name.removeprefix("steps/"),
            archive_path=archive,
            archive_sha256=step.archive_sha256,
            function_path=step.function_path,
            function_name=step.function_name,
            input_names=tuple(item.name for item in step.inputs),
            language=language,
            requirements_path=(
                config.requirements_path
                if config.HasField("requirements_path")
                else None
            ),
            system_dependencies=tuple(config.system_dependencies.values),
            dockerfile_path=(
                config.dockerfile_path if config.HasField("dockerfile_path") else None
            ),
        )
        return self._builder.build(spec, log)

    def _report(
        self,
        environment: str,
        step: common_pb2.Step,
        log: BuildLog,
        *,
        ready: bool,
        runtime_id: str = "",
    ) -> None:
        request = registry_pb2.UpdateStepBuildRequest(
            environment=environment,
            name=step.name,
            status=common_pb2.STEP_STATUS_READY
            if ready
            else common_pb2.STEP_STATUS_FAILED,
            build_log=log.text(),
            runtime_id=runtime_id,
        )
        try:
            self._registry.update_step_build(request)
        except Exception:
            # Limitation: the step stays Pending until the next start of this
            # service, which then rebuilds it from the stored archive.
            logger.exception("could not report the build of %s", step.name)

    def _fetch_archive(self, sha256: str) -> Path:
        self._scratch_dir.mkdir(parents=True, exist_ok=True)
        handle = tempfile.NamedTemporaryFile(
            dir=self._scratch_dir, suffix=".tar.gz", delete=False
        )
        handle.close()
        path = Path(handle.name)
        try:
            self._store.download_file(archive_key(sha256), path)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return path
