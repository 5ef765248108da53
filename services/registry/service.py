"""The registry's gRPC servicers: the public one and the one for peer services."""

from __future__ import annotations

import base64
import logging

import grpc
from google.protobuf import empty_pb2

from stepforge.services.core.auth import (
    Principal,
    current_environment,
    current_principal,
    require_admin,
)
from stepforge.services.core.container_config import (
    FIELDS,
    STEP_ONLY_FIELDS,
    apply_update,
    check_container_config,
    check_mask,
    resolve_step_config,
    without_secrets,
)
from stepforge.services.core.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Unauthenticated,
)
from stepforge.services.core.known_hosts import check_known_hosts
from stepforge.services.core.names import (
    EXECUTIONS,
    PIPELINES,
    STEPS,
    parse_resource_name,
    resource_rule,
    short_name,
)
from stepforge.services.core.step_spec import check_step
from stepforge.services.registry.store import RegistryStore, now_timestamp
from stepforge.services.registry.tenancy import Tenancy
from stepforge.v1 import common_pb2, registry_pb2, registry_pb2_grpc

logger = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
_PROJECT_MASK_PATHS = tuple(
    f"container_config.{name}" for name in FIELDS if name not in STEP_ONLY_FIELDS
)
_KNOWN_HOSTS_PATH = "known_hosts"
_FINAL_STATUSES = (common_pb2.STEP_STATUS_READY, common_pb2.STEP_STATUS_FAILED)


class RegistryServicer(registry_pb2_grpc.RegistryServiceServicer):
    def __init__(self, store: RegistryStore, tenancy: Tenancy) -> None:
        self._store = store
        self._tenancy = tenancy

    def GetProjectSettings(
        self,
        request: registry_pb2.GetProjectSettingsRequest,
        context: grpc.ServicerContext,
    ) -> registry_pb2.ProjectSettings:
        project = current_principal().project
        return self._settings(project)

    def UpdateProjectSettings(
        self,
        request: registry_pb2.UpdateProjectSettingsRequest,
        context: grpc.ServicerContext,
    ) -> registry_pb2.ProjectSettings:
        project = require_admin().project
        paths = list(request.update_mask.paths)
        violations = check_mask(
            paths, "update_mask", (*_PROJECT_MASK_PATHS, _KNOWN_HOSTS_PATH)
        )
        if not paths:
            violations.append(
                FieldViolation("update_mask", "must name at least one field")
            )
        violations.extend(
            check_container_config(
                request.settings.container_config,
                "settings.container_config",
                for_project=True,
            )
        )
        known_hosts = None
        if _KNOWN_HOSTS_PATH in paths:
            known_hosts = request.settings.known_hosts
            violations.extend(check_known_hosts(known_hosts, "settings.known_hosts"))
        if violations:
            raise InvalidArgument.many(violations)
        fields = [
            path.removeprefix("container_config.")
            for path in paths
            if path != _KNOWN_HOSTS_PATH
        ]
        updated = apply_update(
            self._tenancy.get_project_config(project),
            request.settings.container_config,
            fields,
        )
        self._tenancy.set_project_settings(project, updated, known_hosts)
        logger.info("project %s settings updated: %s", project, ", ".join(paths))
        return self._settings(project)

    def _settings(self, project: str) -> registry_pb2.ProjectSettings:
        return registry_pb2.ProjectSettings(
            project=project,
            container_config=without_secrets(self._tenancy.get_project_config(project)),
            known_hosts=self._tenancy.get_known_hosts(project),
        )

    def GetStep(
        self, request: registry_pb2.GetStepRequest, context: grpc.ServicerContext
    ) -> common_pb2.Step:
        name = _step_name(request.name)
        step = self._store.get_step(current_environment(), name)
        if step is None:
            raise NotFound(f"name: step {short_name(name)!r} does not exist")
        return public_step(step)

    def ListSteps(
        self, request: registry_pb2.ListStepsRequest, context: grpc.ServicerContext
    ) -> registry_pb2.ListStepsResponse:
        size = _page_size(request.page_size)
        after = _decode_page_token(request.page_token, STEPS)
        steps = self._store.list_steps(current_environment(), after, size + 1)
        response = registry_pb2.ListStepsResponse(
            steps=[public_step(step) for step in steps[:size]]
        )
        if len(steps) > size:
            response.next_page_token = _encode_page_token(steps[size - 1].name)
        return response

    def CreatePipeline(
        self, request: registry_pb2.CreatePipelineRequest, context: grpc.ServicerContext
    ) -> registry_pb2.Pipeline:
        violations = []
        if parse_resource_name(PIPELINES, request.pipeline.name) is None:
            violations.append(FieldViolation("pipeline.name", resource_rule(PIPELINES)))
        if parse_resource_name(STEPS, request.pipeline.step) is None:
            violations.append(FieldViolation("pipeline.step", resource_rule(STEPS)))
        if violations:
            raise InvalidArgument.many(violations)
        environment = current_environment()
        pipeline = registry_pb2.Pipeline(
            name=request.pipeline.name,
            step=request.pipeline.step,
            create_time=now_timestamp(),
        )
        self._store.insert_pipeline(environment, pipeline)
        logger.info(
            "pipeline %s of %s created in environment %s",
            pipeline.name,
            pipeline.step,
            environment,
        )
        return pipeline

    def GetPipeline(
        self, request: registry_pb2.GetPipelineRequest, context: grpc.ServicerContext
    ) -> registry_pb2.Pipeline:
        name = _resource(PIPELINES, request.name)
        pipeline = self._store.get_pipeline(current_environment(), name)
        if pipeline is None:
            raise NotFound(f"name: pipeline {short_name(name)!r} does not exist")
        return pipeline

    def ListPipelines(
        self, request: registry_pb2.ListPipelinesRequest, context: grpc.ServicerContext
    ) -> registry_pb2.ListPipelinesResponse:
        size = _page_size(request.page_size)
        after = _decode_page_token(request.page_token, PIPELINES)
        pipelines = self._store.list_pipelines(current_environment(), after, size + 1)
        response = registry_pb2.ListPipelinesResponse(pipelines=pipelines[:size])
        if len(pipelines) > size:
            response.next_page_token = _encode_page_token(pipelines[size - 1].name)
        return response

    def DeletePipeline(
        self, request: registry_pb2.DeletePipelineRequest, context: grpc.ServicerContext
    ) -> empty_pb2.Empty:
        name = _resource(PIPELINES, request.name)
        environment = current_environment()
        self._store.delete_pipeline(environment, name)
        logger.info("pipeline %s deleted from environment %s", name, environment)
        return empty_pb2.Empty()

    def DeleteStep(
        self, request: registry_pb2.DeleteStepRequest, context: grpc.ServicerContext
    ) -> empty_pb2.Empty:
        name = _step_name(request.name)
        environment = current_environment()
        self._store.delete_step(environment, name, only_pending=False)
        logger.info("step %s deleted from environment %s", name, environment)
        return empty_pb2.Empty()


class RegistryInternalServicer(registry_pb2_grpc.RegistryInternalServiceServicer):
    def __init__(self, store: RegistryStore, tenancy: Tenancy) -> None:
        self._store = store
        self._tenancy = tenancy

    def AuthenticateToken(
        self,
        request: registry_pb2.AuthenticateTokenRequest,
        context: grpc.ServicerContext,
    ) -> registry_pb2.Principal:
        principal = resolve_user_token(self._tenancy, request.token)
        return registry_pb2.Principal(
            project=principal.project,
            environment=principal.environment,
            admin=principal.admin,
            limits=principal.limits,
        )

    def RegisterStep(
        self, request: registry_pb2.RegisterStepRequest, context: grpc.ServicerContext
    ) -> common_pb2.Step:
        mask = list(request.container_config_mask.paths)
        violations = check_step(request.step, mask, "step")
        if request.origin == common_pb2.STEP_ORIGIN_UNSPECIFIED:
            violations.append(FieldViolation("origin", "is required"))
        if violations:
            raise InvalidArgument.many(violations)
        project = self._project_of(request.environment)
        step = common_pb2.Step()
        step.CopyFrom(request.step)
        step.container_config.CopyFrom(
            resolve_step_config(
                self._tenancy.get_project_config(project),
                request.step.container_config,
                mask,
            )
        )
        if request.origin == common_pb2.STEP_ORIGIN_LOCAL:
            # Code streamed from a folder has no repository, whatever the project says.
            for name in (
                "repository_url",
                "repository_branch",
                "repository_deploy_key",
            ):
                step.container_config.ClearField(name)
            step.container_config.has_repository_deploy_key = False
        step.status = common_pb2.STEP_STATUS_PENDING
        step.origin = request.origin
        step.create_time.CopyFrom(now_timestamp())
        step.update_time.CopyFrom(step.create_time)
        for output_only in (
            "commit_id",
            "build_log",
            "archive_sha256",
            "archive_size_bytes",
        ):
            step.ClearField(output_only)
        self._store.insert_pending_step(request.environment, step)
        logger.info(
            "step %s registered in environment %s", step.name, request.environment
        )
        return step

    def UpdateStepBuild(
        self,
        request: registry_pb2.UpdateStepBuildRequest,
        context: grpc.ServicerContext,
    ) -> common_pb2.Step:
        name = _step_name(request.name)
        step = self._store.get_step(request.environment, name)
        if step is None:
            raise NotFound(f"name: step {short_name(name)!r} does not exist")
        if step.status in _FINAL_STATUSES:
            raise FailedPrecondition(
                f"name: the build of {short_name(name)!r} has ended"
            )
        if request.status == common_pb2.STEP_STATUS_UNSPECIFIED:
            raise InvalidArgument("status", "is required")
        step.status = request.status
        step.build_log = request.build_log
        if request.archive_sha256:
            step.archive_sha256 = request.archive_sha256
            step.archive_size_bytes = request.archive_size_bytes
        if request.commit_id:
            step.commit_id = request.commit_id
        if request.runtime_id:
            step.runtime_id = request.runtime_id
        step.update_time.CopyFrom(now_timestamp())
        self._store.update_step(request.environment, step)
        if step.status in _FINAL_STATUSES:
            logger.info(
                "step %s in environment %s is %s",
                name,
                request.environment,
                common_pb2.StepStatus.Name(step.status),
            )
        return step

    def AbandonStep(
        self, request: registry_pb2.AbandonStepRequest, context: grpc.ServicerContext
    ) -> empty_pb2.Empty:
        name = _step_name(request.name)
        self._store.delete_step(request.environment, name, only_pending=True)
        logger.info("step %s in environment %s abandoned", name, request.environment)
        return empty_pb2.Empty()

    def ListPendingSteps(
        self,
        request: registry_pb2.ListPendingStepsRequest,
        context: grpc.ServicerContext,
    ) -> registry_pb2.ListPendingStepsResponse:
        pending = []
        for environment, step in self._store.pending_steps():
            project = self._tenancy.project_of_environment(environment) or ""
            pending.append(
                registry_pb2.PendingStep(
                    environment=environment,
                    step=step,
                    known_hosts=self._tenancy.get_known_hosts(project),
                )
            )
        return registry_pb2.ListPendingStepsResponse(steps=pending)

    def ListReferencedArchives(
        self,
        request: registry_pb2.ListReferencedArchivesRequest,
        context: grpc.ServicerContext,
    ) -> registry_pb2.ListReferencedArchivesResponse:
        return registry_pb2.ListReferencedArchivesResponse(
            archive_sha256=sorted(self._store.referenced_archives())
        )

    def AcquirePipelineRun(
        self,
        request: registry_pb2.AcquirePipelineRunRequest,
        context: grpc.ServicerContext,
    ) -> registry_pb2.Pipeline:
        pipeline = _resource(PIPELINES, request.pipeline, "pipeline")
        execution = _resource(EXECUTIONS, request.execution, "execution")
        return self._store.acquire_run(request.environment, pipeline, execution)

    def ReleasePipelineRun(
        self,
        request: registry_pb2.ReleasePipelineRunRequest,
        context: grpc.ServicerContext,
    ) -> empty_pb2.Empty:
        execution = _resource(EXECUTIONS, request.execution, "execution")
        self._store.release_run(request.environment, execution)
        return empty_pb2.Empty()

    def ListPipelineRuns(
        self,
        request: registry_pb2.ListPipelineRunsRequest,
        context: grpc.ServicerContext,
    ) -> registry_pb2.ListPipelineRunsResponse:
        return registry_pb2.ListPipelineRunsResponse(
            runs=[
                registry_pb2.PipelineRun(
                    environment=environment, pipeline=pipeline, execution=execution
                )
                for environment, pipeline, execution in self._store.pipeline_runs()
            ]
        )

    def _project_of(self, environment: str) -> str:
        project = self._tenancy.project_of_environment(environment)
        if project is None:
            raise NotFound(f"environment: {environment!r} does not exist")
        return project


def resolve_user_token(tenancy: Tenancy, token: str) -> Principal:
    principal = tenancy.resolve_token(token)
    if principal is None:
        raise Unauthenticated("authorization: the token is not valid")
    return principal


def public_step(step: common_pb2.Step) -> common_pb2.Step:
    """The step as callers may see it: without its deploy key."""
    public = common_pb2.Step()
    public.CopyFrom(step)
    public.container_config.CopyFrom(without_secrets(step.container_config))
    return public


def _step_name(name: str) -> str:
    return _resource(STEPS, name)


def _resource(collection: str, name: str, field: str = "name") -> str:
    if parse_resource_name(collection, name) is None:
        raise InvalidArgument(field, resource_rule(collection))
    return name


def _page_size(requested: int) -> int:
    if requested < 0:
        raise InvalidArgument("page_size", "must not be negative")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def _encode_page_token(last_name: str) -> str:
    return base64.urlsafe_b64encode(last_name.encode()).decode()


def _decode_page_token(token: str, collection: str) -> str:
    if not token:
        return ""
    try:
        name = base64.urlsafe_b64decode(token.encode()).decode()
    except ValueError:
        name = ""
    if parse_resource_name(collection, name) is None:
        raise InvalidArgument("page_token", "is not a token this service issued")
    return name
