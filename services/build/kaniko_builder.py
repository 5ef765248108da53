"""The image builder: each step becomes a container image, built by a Kaniko
Job on a Kubernetes cluster and pushed to the image repository.

The image is named by a hash of everything that decides it (its Dockerfile and
its whole build context), so an identical build is never run twice: a pushed
image is remembered, identical builds at the same time share one Job, and a
build submitted again after a restart follows the Job of the first.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import stepforge.services.execution as execution_package
from stepforge.services.build.archive import ArchiveError, extract_archive, file_sha256
from stepforge.services.build.build_context import (
    CONTEXT_PREFIX,
    BuildContext,
    write_build_context,
)
from stepforge.services.build.build_log import BuildLog
from stepforge.services.build.builder import BuildInterrupted, BuildOutcome, BuildSpec
from stepforge.services.build.dockerfile import (
    CONTEXT_SCRIPTS,
    RecipeError,
    image_recipe,
)
from stepforge.services.build.image_records import ImageRecords
from stepforge.services.build.job_follower import (
    BuildStopped,
    FollowLimits,
    JobEnd,
    JobFollower,
)
from stepforge.services.build.kaniko_job import job_name, kaniko_job
from stepforge.services.build.source_checks import check_entry_function
from stepforge.services.core.object_store import ObjectStore, PresigningStore
from stepforge.services.kubernetes.api import (
    JobExists,
    KubeApi,
    KubeError,
    final_condition,
)
from stepforge.services.kubernetes.settings import KubernetesSettings

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

logger = logging.getLogger(__name__)

DEFAULT_PULL_ERROR_TIMEOUT_S = 2 * 60
NEEDS_PRESIGNING = (
    "the kubernetes build backend needs an S3-compatible object store "
    "(--object-store s3://...): pods fetch and store objects through presigned URLs"
)

# How long a Job that is being deleted may keep its name.
_JOB_GONE_TIMEOUT_S = 60.0


class _StepRejected(Exception):
    """A step that cannot be built; the message is the reason users see."""


class KanikoBuilder:
    """Builds step images with Kaniko Jobs in `settings.namespace`.

    `root` holds the record of pushed images and scratch space. The runner and
    pod_entry scripts are read from `scripts_dir` at each build. A build may
    wait `settings.pending_timeout_s` for its pod and run for
    `settings.build_timeout_s`.
    """

    def __init__(
        self,
        api_client: ApiClient,
        settings: KubernetesSettings,
        store: ObjectStore,
        root: Path,
        *,
        scripts_dir: Path | None = None,
        pull_error_timeout_s: float = DEFAULT_PULL_ERROR_TIMEOUT_S,
        poll_interval_s: float = 1.0,
    ) -> None:
        if not isinstance(store, PresigningStore):
            raise ValueError(NEEDS_PRESIGNING)
        for name, value in (
            ("pull_error_timeout_s", pull_error_timeout_s),
            ("poll_interval_s", poll_interval_s),
        ):
            if value <= 0:
                raise ValueError(f"{name} must be a positive number of seconds")
        self._settings = settings
        self._store = store
        self._presigner: PresigningStore = store
        self._root = Path(root)
        self._scratch = self._root / "image-scratch"
        self._scripts_dir = scripts_dir or Path(execution_package.__file__).parent
        self._scripts()  # a missing script stops the service at start, not a build
        self._stop = threading.Event()
        self._kube = KubeApi(api_client, settings.namespace)
        self._follower = JobFollower(
            self._kube,
            FollowLimits(
                poll_s=poll_interval_s,
                pending_timeout_s=settings.pending_timeout_s,
                start_error_timeout_s=pull_error_timeout_s,
            ),
            self._stop,
        )
        self._records = ImageRecords(self._root / "images.db")
        self._tag_locks: dict[str, threading.Lock] = {}
        self._tag_locks_guard = threading.Lock()

    def build(self, spec: BuildSpec, log: BuildLog) -> BuildOutcome:
        """Builds and pushes the image of `spec`, writing progress to `log`.
        Never raises for a bad step; raises BuildInterrupted when stopping."""
        try:
            return self._build(spec, log)
        except (_StepRejected, RecipeError) as error:
            return _failed(log, str(error))
        except BuildStopped:
            raise BuildInterrupted(
                f"the image build of {spec.step_name} was stopped"
            ) from None
        except KubeError as error:
            return _failed(log, f"the Kubernetes cluster: {error}")
        except Exception as error:
            logger.exception("building the image of %s failed", spec.step_name)
            return _failed(log, f"internal error while building the image: {error}")

    def interrupt(self) -> None:
        """Makes running builds return at once with BuildInterrupted; their
        Jobs go on, and a build submitted again follows them."""
        self._stop.set()
        self._kube.interrupt_streams()

    def close(self) -> None:
        self._records.close()

    def _build(self, spec: BuildSpec, log: BuildLog) -> BuildOutcome:
        if self._stop.is_set():
            raise BuildStopped("the image builder is stopping")
        self._scratch.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self._scratch) as work:
            context = self._context(spec, Path(work), log)
            reference = f"{self._settings.image_repository}:{context.content_sha256}"
            log.write(f"image {reference}")
            with self._tag_lock(context.content_sha256):
                pushed = self._records.find(reference)
                if pushed is not None:
                    digest = pushed.digest or "digest unknown"
                    log.write(f"image already built and pushed ({digest}); reusing it")
                    return _ready(log, spec, reference)
                end = self._run_job(spec, context, reference, log)
                if not end.succeeded:
                    return _failed(log, end.reason)
                # Recorded before the lock goes, so an identical build waiting
                # for it finds the image.
                self._records.record(reference, end.digest)
        return _ready(log, spec, reference)

    def _context(self, spec: BuildSpec, work: Path, log: BuildLog) -> BuildContext:
        actual = file_sha256(spec.archive_path)
        if actual != spec.archive_sha256:
            raise _StepRejected(
                f"the code archive's sha256 is {actual}, not the expected "
                f"{spec.archive_sha256}"
            )
        code = work / "code"
        try:
            extract_archive(spec.archive_path, code)
        except ArchiveError as error:
            raise _StepRejected(f"code archive rejected: {error}") from error
        problems = check_entry_function(
            code, spec.function_path, spec.function_name, spec.input_names
        )
        if problems:
            raise _StepRejected("; ".join(problems))
        recipe = image_recipe(spec, code)
        context = write_build_context(
            recipe, code, self._scripts(), work / "context.tar.gz"
        )
        shutil.rmtree(code)
        log.write(
            f"build context ready: {context.size} bytes, content sha256 "
            f"{context.content_sha256}"
        )
        return context

    def _run_job(
        self, spec: BuildSpec, context: BuildContext, reference: str, log: BuildLog
    ) -> JobEnd:
        key = f"{CONTEXT_PREFIX}{context.content_sha256}.tar.gz"
        if not self._store.exists(key):
            self._store.put_file(key, context.path)
        url = self._presigner.presigned_get_url(
            key, timedelta(seconds=self._settings.presign_ttl_s)
        )
        name = job_name(context.content_sha256)
        manifest = kaniko_job(
            name=name,
            reference=reference,
            context_url=url,
            step_name=spec.step_name,
            settings=self._settings,
        )
        self._submit(manifest, log)
        wait_limit_s = (
            self._settings.pending_timeout_s + self._settings.build_timeout_s + 60
        )
        end = self._follower.follow(name, log, wait_limit_s)
        # The context is only needed while the Job runs; a later build of the
        # same image writes it again.
        self._store.delete(key)
        return end

    def _submit(self, manifest: dict[str, Any], log: BuildLog) -> None:
        name = manifest["metadata"]["name"]
        try:
            self._kube.create_job(manifest)
            log.write(f"created build Job {name} in namespace {self._kube.namespace}")
            return
        except JobExists:
            pass
        existing = self._kube.read_job(name)
        if existing is not None:
            if (final_condition(existing) or {}).get("type") != "Failed":
                log.write(
                    f"following the existing build Job {name} of this image, "
                    "submitted before a restart or by an identical build"
                )
                return
            log.write(
                f"an earlier build Job {name} of this image failed; building again"
            )
            self._kube.delete_job(name)
        self._create_when_name_free(manifest, log)

    def _create_when_name_free(self, manifest: dict[str, Any], log: BuildLog) -> None:
        name = manifest["metadata"]["name"]
        deadline = time.monotonic() + _JOB_GONE_TIMEOUT_S
        while True:
            try:
                self._kube.create_job(manifest)
            except JobExists:
                if time.monotonic() > deadline:
                    raise _StepRejected(
                        f"the failed build Job {name} was not deleted within "
                        f"{_JOB_GONE_TIMEOUT_S:g} s, so the build cannot start again"
                    ) from None
                if self._stop.wait(0.2):
                    raise BuildStopped(
                        f"stopped before Job {name} was created"
                    ) from None
                continue
            log.write(f"created build Job {name} in namespace {self._kube.namespace}")
            return

    @contextmanager
    def _tag_lock(self, tag: str) -> Iterator[None]:
        with self._tag_locks_guard:
            lock = self._tag_locks.setdefault(tag, threading.Lock())
        with lock:
            yield

    def _scripts(self) -> dict[str, bytes]:
        scripts = {}
        for name in CONTEXT_SCRIPTS:
            path = self._scripts_dir / name
            try:
                scripts[name] = path.read_bytes()
            except FileNotFoundError:
                raise RuntimeError(
                    f"{path} is missing: every step image carries a copy of the "
                    f"execution service's {name}, so the image builder cannot work "
                    "without it"
                ) from None
        return scripts


def _ready(log: BuildLog, spec: BuildSpec, reference: str) -> BuildOutcome:
    log.write(f"step {spec.step_name} is ready: image {reference}")
    return BuildOutcome(ready=True, runtime_id=reference)


def _failed(log: BuildLog, reason: str) -> BuildOutcome:
    log.write(f"build failed: {reason}")
    return BuildOutcome(ready=False, failure_reason=reason)
