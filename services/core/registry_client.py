"""How the other services call the registry.

Writes and service-level reads go to the internal service with the service
credential; reads on a user's behalf forward the user's own token, so the
registry confines them to that user's environment.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import grpc

from stepforge.services.core.auth import Principal, bearer_metadata
from stepforge.services.core.error_translation import from_peer_error
from stepforge.services.core.errors import ServiceError, Unauthenticated, Unavailable
from stepforge.v1 import common_pb2, registry_pb2, registry_pb2_grpc

_T = TypeVar("_T")
# Every internal call has a deadline, so a stuck registry cannot hold a thread.
CALL_TIMEOUT_S = 10.0
# Waits before the further attempts of an idempotent call: a registry that is
# restarting gets about a second to come back before callers see UNAVAILABLE.
RETRY_DELAYS_S = (0.05, 0.15, 0.45)


class RegistryClient:
    def __init__(self, channel: grpc.Channel, target: str, service_token: str) -> None:
        self._public = registry_pb2_grpc.RegistryServiceStub(channel)
        self._internal = registry_pb2_grpc.RegistryInternalServiceStub(channel)
        self._target = target
        self._service_metadata = bearer_metadata(service_token)

    def authenticate(self, token: str) -> Principal:
        answer = self._call(
            self._internal.AuthenticateToken,
            registry_pb2.AuthenticateTokenRequest(token=token),
        )
        return Principal(
            project=answer.project,
            environment=answer.environment,
            admin=answer.admin,
            limits=answer.limits,
        )

    def project_settings(self, user_token: str) -> registry_pb2.ProjectSettings:
        return self._call(
            self._public.GetProjectSettings,
            registry_pb2.GetProjectSettingsRequest(),
            user_token=user_token,
        )

    def get_step(self, user_token: str, name: str) -> common_pb2.Step:
        return self._call(
            self._public.GetStep,
            registry_pb2.GetStepRequest(name=name),
            user_token=user_token,
        )

    def register_step(
        self,
        environment: str,
        step: common_pb2.Step,
        mask_paths: list[str],
        origin: common_pb2.StepOrigin.ValueType,
    ) -> common_pb2.Step:
        request = registry_pb2.RegisterStepRequest(
            environment=environment, step=step, origin=origin
        )
        request.container_config_mask.paths.extend(mask_paths)
        return self._call(self._internal.RegisterStep, request, idempotent=False)

    def update_step_build(
        self, request: registry_pb2.UpdateStepBuildRequest
    ) -> common_pb2.Step:
        return self._call(self._internal.UpdateStepBuild, request, idempotent=False)

    def abandon_step(self, environment: str, name: str) -> None:
        self._call(
            self._internal.AbandonStep,
            registry_pb2.AbandonStepRequest(environment=environment, name=name),
            idempotent=False,
        )

    def get_pipeline(self, user_token: str, name: str) -> registry_pb2.Pipeline:
        return self._call(
            self._public.GetPipeline,
            registry_pb2.GetPipelineRequest(name=name),
            user_token=user_token,
        )

    def acquire_pipeline_run(
        self, environment: str, pipeline: str, execution: str
    ) -> registry_pb2.Pipeline:
        return self._call(
            self._internal.AcquirePipelineRun,
            registry_pb2.AcquirePipelineRunRequest(
                environment=environment, pipeline=pipeline, execution=execution
            ),
        )

    def release_pipeline_run(self, environment: str, execution: str) -> None:
        self._call(
            self._internal.ReleasePipelineRun,
            registry_pb2.ReleasePipelineRunRequest(
                environment=environment, execution=execution
            ),
        )

    def pipeline_runs(self) -> list[registry_pb2.PipelineRun]:
        answer = self._call(
            self._internal.ListPipelineRuns, registry_pb2.ListPipelineRunsRequest()
        )
        return list(answer.runs)

    def pending_steps(self) -> list[registry_pb2.PendingStep]:
        answer = self._call(
            self._internal.ListPendingSteps, registry_pb2.ListPendingStepsRequest()
        )
        return list(answer.steps)

    def referenced_archives(self) -> set[str]:
        answer = self._call(
            self._internal.ListReferencedArchives,
            registry_pb2.ListReferencedArchivesRequest(),
        )
        return set(answer.archive_sha256)

    def _call(
        self,
        method: Callable[..., _T],
        request: Any,
        *,
        user_token: str | None = None,
        idempotent: bool = True,
    ) -> _T:
        """Calls the registry; an idempotent call is tried again, with backoff,
        while the registry is unavailable."""
        metadata = (
            bearer_metadata(user_token)
            if user_token is not None
            else self._service_metadata
        )
        delays = RETRY_DELAYS_S if idempotent else ()
        for delay in (*delays, None):
            try:
                return method(request, metadata=metadata, timeout=CALL_TIMEOUT_S)
            except grpc.RpcError as error:
                retry = error.code() == grpc.StatusCode.UNAVAILABLE
                if delay is None or not retry:
                    raise self._translate(error) from None
            time.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _translate(self, error: grpc.RpcError) -> ServiceError:
        translated = from_peer_error(error)
        if translated.code in (
            grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.DEADLINE_EXCEEDED,
        ):
            return Unavailable(
                f"registry at {self._target} is unavailable: {translated.message}"
            )
        if translated.code == grpc.StatusCode.UNAUTHENTICATED:
            return Unauthenticated(translated.message)
        return translated
