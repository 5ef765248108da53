"""The build service's gRPC servicer."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import grpc

from stepforge.services.build.build_log import BuildLog
from stepforge.services.build.build_runner import BuildRunner
from stepforge.services.build.interpreters import find_python
from stepforge.services.build.upload import archive_key, receive_archive
from stepforge.services.core.auth import bearer_token, current_environment
from stepforge.services.core.durations import duration_seconds
from stepforge.services.core.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
)
from stepforge.services.core.languages import SUPPORTED_LANGUAGES
from stepforge.services.core.names import short_name
from stepforge.services.core.object_store import ObjectStore
from stepforge.services.core.registry_client import RegistryClient
from stepforge.services.core.step_spec import check_step
from stepforge.v1 import build_pb2, build_pb2_grpc, common_pb2, registry_pb2

logger = logging.getLogger(__name__)

_ORIGINS = (common_pb2.STEP_ORIGIN_LOCAL, common_pb2.STEP_ORIGIN_GIT_REPOSITORY)

MAX_WAIT_S = 60.0


class BuildServicer(build_pb2_grpc.BuildServiceServicer):
    def __init__(
        self,
        registry: RegistryClient,
        store: ObjectStore,
        runner: BuildRunner,
        uploads_dir: Path,
        *,
        builds_images: bool = False,
    ) -> None:
        self._registry = registry
        self._store = store
        self._runner = runner
        self._uploads_dir = uploads_dir
        # An image build takes Python from its base image, never from this host.
        self._builds_images = builds_images

    def CreateStep(
        self,
        request_iterator: Iterator[build_pb2.CreateStepRequest],
        context: grpc.ServicerContext,
    ) -> common_pb2.Step:
        header = _read_header(request_iterator)
        environment = current_environment()
        mask = list(header.container_config_mask.paths)
        violations = check_step(header.step, mask, "header.step")
        if header.origin not in _ORIGINS:
            violations.append(
                FieldViolation(
                    "header.origin",
                    "must be STEP_ORIGIN_LOCAL or STEP_ORIGIN_GIT_REPOSITORY",
                )
            )
        if violations:
            raise InvalidArgument.many(violations)

        # The name is claimed before a single byte of code is read.
        step = self._registry.register_step(
            environment, header.step, mask, header.origin
        )
        log = BuildLog()
        from_git = header.origin == common_pb2.STEP_ORIGIN_GIT_REPOSITORY
        try:
            if not step.container_config.HasField("language"):
                raise InvalidArgument(
                    "header.step.container_config.language",
                    "is required: neither the step nor its project sets one",
                )
            if from_git:
                known_hosts = self._git_step_accepted(step, request_iterator, context)
            else:
                received = receive_archive(request_iterator, self._uploads_dir)
        except BaseException:
            self._abandon(environment, step.name)
            raise
        if from_git:
            logger.info(
                "step %s from Git accepted in environment %s", step.name, environment
            )
            self._runner.submit_git(environment, step, known_hosts, log)
            return _public(step)
        try:
            key = archive_key(received.sha256)
            if not self._store.exists(key):
                self._store.put_file(key, received.path)
            log.write(
                f"code archive stored: {received.size} bytes, sha256 {received.sha256}"
            )
            step = self._registry.update_step_build(
                _progress(environment, step.name, log, received.sha256, received.size)
            )
        except BaseException:
            received.path.unlink(missing_ok=True)
            self._abandon(environment, step.name)
            raise
        logger.info(
            "step %s accepted in environment %s: %d bytes",
            step.name,
            environment,
            received.size,
        )
        self._runner.submit(environment, step, received.path, log)
        return _public(step)

    def WaitStepBuild(
        self, request: build_pb2.WaitStepBuildRequest, context: grpc.ServicerContext
    ) -> common_pb2.Step:
        timeout_s = duration_seconds(request.timeout)
        if not 0 <= timeout_s <= MAX_WAIT_S:
            raise InvalidArgument("timeout", f"must be between 0 and {MAX_WAIT_S:g} s")
        token = bearer_token(context.invocation_metadata()) or ""
        step = self._registry.get_step(token, request.name)
        if step.status != common_pb2.STEP_STATUS_PENDING:
            return step
        environment = current_environment()
        self._runner.wait(environment, request.name, timeout_s)
        return self._registry.get_step(token, request.name)

    def ListLanguages(
        self, request: build_pb2.ListLanguagesRequest, context: grpc.ServicerContext
    ) -> build_pb2.ListLanguagesResponse:
        return build_pb2.ListLanguagesResponse(
            languages=[
                build_pb2.Language(
                    name=language.name,
                    python_version=language.python_version,
                    cuda_version=language.cuda_version or "",
                    interpreter_available=self._builds_images
                    or find_python(language.python_version) is not None,
                )
                for language in SUPPORTED_LANGUAGES
            ]
        )

    def DownloadStepArchive(
        self,
        request: build_pb2.DownloadStepArchiveRequest,
        context: grpc.ServicerContext,
    ) -> Iterator[build_pb2.DownloadStepArchiveResponse]:
        token = bearer_token(context.invocation_metadata()) or ""
        step = self._registry.get_step(token, request.name)
        if step.origin != common_pb2.STEP_ORIGIN_LOCAL:
            raise FailedPrecondition(
                f"name: step {short_name(request.name)!r} was built from a Git "
                "repository; "
                "only steps from a local folder have a stored folder to download"
            )
        if not step.archive_sha256:
            raise FailedPrecondition(
                f"name: step {short_name(request.name)!r} has no stored code"
            )
        for chunk in self._store.iter_chunks(archive_key(step.archive_sha256)):
            yield build_pb2.DownloadStepArchiveResponse(chunk=chunk)

    def _git_step_accepted(
        self,
        step: common_pb2.Step,
        requests: Iterator[build_pb2.CreateStepRequest],
        context: grpc.ServicerContext,
    ) -> str:
        """Checks a step from Git can be cloned; returns its project's known hosts."""
        if not step.container_config.HasField("repository_url"):
            raise InvalidArgument(
                "header.step.container_config.repository_url",
                "is required for a step from a Git repository: neither the step "
                "nor its project sets one",
            )
        if next(requests, None) is not None:
            raise InvalidArgument(
                "archive_chunk", "a step from a Git repository takes no archive"
            )
        token = bearer_token(context.invocation_metadata()) or ""
        return self._registry.project_settings(token).known_hosts

    def _abandon(self, environment: str, name: str) -> None:
        try:
            self._registry.abandon_step(environment, name)
        except Exception:
            # Limitation: the pending row stays until this service restarts and
            # marks it failed.
            logger.exception("could not abandon step %s", name)


def _read_header(
    requests: Iterator[build_pb2.CreateStepRequest],
) -> build_pb2.CreateStepHeader:
    first = next(requests, None)
    if first is None or first.WhichOneof("payload") != "header":
        raise InvalidArgument("header", "the first message must hold the header")
    return first.header


def _progress(
    environment: str, name: str, log: BuildLog, sha256: str, size: int
) -> registry_pb2.UpdateStepBuildRequest:
    return registry_pb2.UpdateStepBuildRequest(
        environment=environment,
        name=name,
        status=common_pb2.STEP_STATUS_PENDING,
        build_log=log.text(),
        archive_sha256=sha256,
        archive_size_bytes=size,
    )


def _public(step: common_pb2.Step) -> common_pb2.Step:
    public = common_pb2.Step()
    public.CopyFrom(step)
    public.container_config.ClearField("repository_deploy_key")
    return public
