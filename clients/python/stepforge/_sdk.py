"""StepforgeSdk: the one object users hold to create and manage steps."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, TypeVar

import grpc

from stepforge import _container_config, _packing
from stepforge._channel import open_channel
from stepforge._files import write_atomically
from stepforge._io_proto import input_to_proto, output_to_proto
from stepforge._pipelines import PipelineCalls
from stepforge._rules import MIN_CREATE_TIMEOUT_S, STEP_NAME_RULE, is_valid_step_name
from stepforge._step_dict import step_to_dict
from stepforge.errors import (
    InvalidArgumentError,
    NotFoundError,
    StepBuildError,
    StepCreationTimeoutError,
    translate_rpc_error,
)
from stepforge.io import Input, Output
from stepforge.v1 import (
    build_pb2,
    build_pb2_grpc,
    common_pb2,
    execution_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
)

_T = TypeVar("_T")
ENVIRONMENT_URL_VARIABLE = "STEPFORGE_ENVIRONMENT_URL"
SDK_TOKEN_VARIABLE = "STEPFORGE_SDK_TOKEN"
CA_CERT_VARIABLE = "STEPFORGE_CA_CERT"
CLIENT_CERT_VARIABLE = "STEPFORGE_CLIENT_CERT"
CLIENT_KEY_VARIABLE = "STEPFORGE_CLIENT_KEY"
# Unary calls that do no heavy work answer well within this.
_CALL_TIMEOUT_S = 30.0
# The build service answers as soon as a build ends, waiting at most this long
# per call; when the build runs elsewhere it answers at once, and the SDK then
# polls, backing off so that a long build costs few calls.
_MAX_WAIT_S = 30.0
_FIRST_POLL_S = 0.05
_MAX_POLL_S = 1.0


class StepforgeSdk(PipelineCalls):
    """A connection to one Stepforge environment.

    Args:
        environment_url: `grpcs://host:port` of the suite (TLS), or `host:port`
            for one served in plaintext; STEPFORGE_ENVIRONMENT_URL when None.
        sdk_token: the environment's token; STEPFORGE_SDK_TOKEN when None.
        ca_cert: PEM file of the authority that signed the suite's certificate
            (`stepforge up` writes it as STEPFORGE_CA_CERT); the system's
            roots when None and the variable is unset.
        client_cert, client_key: PEM files of a client certificate, for a
            suite that requires one; STEPFORGE_CLIENT_CERT/_KEY when None.
    """

    def __init__(
        self,
        environment_url: str | None = None,
        sdk_token: str | None = None,
        *,
        ca_cert: str | None = None,
        client_cert: str | None = None,
        client_key: str | None = None,
    ) -> None:
        url = _setting(environment_url, "environment_url", ENVIRONMENT_URL_VARIABLE)
        token = _setting(sdk_token, "sdk_token", SDK_TOKEN_VARIABLE)
        self.environment_url = url
        self._metadata = (("authorization", f"Bearer {token}"),)
        self._channel = open_channel(
            url,
            ca_cert=ca_cert or os.environ.get(CA_CERT_VARIABLE),
            client_cert=client_cert or os.environ.get(CLIENT_CERT_VARIABLE),
            client_key=client_key or os.environ.get(CLIENT_KEY_VARIABLE),
        )
        self._registry = registry_pb2_grpc.RegistryServiceStub(self._channel)
        self._build = build_pb2_grpc.BuildServiceStub(self._channel)
        self._execution = execution_pb2_grpc.ExecutionServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> StepforgeSdk:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # Steps.

    def create_step(
        self,
        step_name: str | None = None,
        function_path: str | None = None,
        function_name: str | None = None,
        description: str | None = None,
        timeout_s: int = 180,
        container_config: Mapping[str, Any] | None = None,
        inputs: Sequence[Input] | None = None,
        outputs: Sequence[Output] | None = None,
        *,
        name: str | None = None,
        inputs_list: Sequence[Input] | None = None,
        outputs_list: Sequence[Output] | None = None,
    ) -> dict[str, Any]:
        """Packs the step's code, uploads it, waits for its build and returns the
        step as a dict with `parameters`, `container_config` and `creation_info`.

        Raises StepBuildError, carrying the end of the build log, when the build
        fails, and StepCreationTimeoutError when it is still running after
        `timeout_s` seconds (the build goes on).
        """
        step_name = _one_of("step_name", step_name, "name", name)
        inputs = _one_of("inputs", inputs, "inputs_list", inputs_list) or []
        outputs = _one_of("outputs", outputs, "outputs_list", outputs_list) or []
        function_path = _required_str("function_path", function_path)
        function_name = _required_str("function_name", function_name)
        step_name = function_name if step_name is None else step_name
        _check_step_name(step_name)
        _check_timeout(timeout_s)
        if description is not None and not isinstance(description, str):
            raise InvalidArgumentError.for_field("description", "must be a string")
        step = common_pb2.Step(
            name=f"steps/{step_name}",
            function_path=_container_config.normalize_relative_path(
                function_path, "function_path"
            ),
            function_name=function_name,
            description=description or "",
            inputs=[
                input_to_proto(item) for item in _typed_list("inputs", inputs, Input)
            ],
            outputs=[
                output_to_proto(item)
                for item in _typed_list("outputs", outputs, Output)
            ],
        )
        deadline = time.monotonic() + timeout_s

        config = _container_config.parse_step_container_config(container_config)
        project = self._call(
            self._registry.GetProjectSettings, registry_pb2.GetProjectSettingsRequest()
        )
        packing = _container_config.resolve(config, project.container_config)
        if config.local_folder is not None and "repository_url" in config.mask_paths:
            if packing.repository_url is not None:
                raise InvalidArgumentError.for_field(
                    "container_config",
                    "give local_folder or repository_url, not both",
                )
        step.container_config.CopyFrom(config.config)
        header = build_pb2.CreateStepHeader(step=step)
        header.container_config_mask.paths.extend(config.mask_paths)
        if config.local_folder is None and packing.repository_url is not None:
            # The build service clones the repository itself.
            header.origin = common_pb2.STEP_ORIGIN_GIT_REPOSITORY
            chunks: Iterator[bytes] = iter(())
        else:
            header.origin = common_pb2.STEP_ORIGIN_LOCAL
            folder = Path(config.local_folder or os.getcwd())
            files = _packing.select_files(
                folder, packing.included_folders, packing.extra_files()
            )
            _packing.require_packed(files, step.function_path, "function_path")
            _packing.check_code_size(files)
            chunks = _packing.iter_archive_chunks(files)
        self._call(
            self._build.CreateStep,
            _upload_requests(header, chunks),
            timeout=max(deadline - time.monotonic(), 1.0),
        )
        created = self._wait_for_build(step.name, deadline, timeout_s)
        return step_to_dict(created)

    def get_step(self, step_name: str) -> dict[str, Any] | None:
        """Returns the step as create_step does, or None when it does not exist."""
        _check_step_name(step_name)
        try:
            step = self._call(
                self._registry.GetStep,
                registry_pb2.GetStepRequest(name=f"steps/{step_name}"),
            )
        except NotFoundError:
            return None
        return step_to_dict(step)

    def get_step_build_log(self, step_name: str) -> str:
        """Returns what the build of the step did, line by line."""
        _check_step_name(step_name)
        step = self._call(
            self._registry.GetStep,
            registry_pb2.GetStepRequest(name=f"steps/{step_name}"),
        )
        return step.build_log

    def list_steps(self) -> list[dict[str, Any]]:
        """Returns every step of the environment, ordered by name."""
        return [step_to_dict(step) for step in self._iter_steps()]

    def delete_step(self, step_name: str) -> None:
        """Deletes the step; raises NotFoundError when it does not exist."""
        _check_step_name(step_name)
        self._call(
            self._registry.DeleteStep,
            registry_pb2.DeleteStepRequest(name=f"steps/{step_name}"),
        )

    def download_step_local_folder(self, step_name: str, folder: str) -> None:
        """Writes the stored code of a step created from a local folder to
        `<folder>/<step_name>.tgz`."""
        _check_step_name(step_name)
        target_dir = Path(_required_str("folder", folder))
        target_dir.mkdir(parents=True, exist_ok=True)
        chunks = self._call(
            self._build.DownloadStepArchive,
            build_pb2.DownloadStepArchiveRequest(name=f"steps/{step_name}"),
            timeout=None,
        )
        write_atomically(
            (response.chunk for response in _translated(chunks)),
            target_dir / f"{step_name}.tgz",
        )

    # Project settings.

    def get_project_settings(self) -> dict[str, Any]:
        """Returns the project's name and the container defaults steps fall back on."""
        settings = self._call(
            self._registry.GetProjectSettings, registry_pb2.GetProjectSettingsRequest()
        )
        return _settings_to_dict(settings)

    def update_project_settings(
        self,
        container_config: Mapping[str, Any] | None = None,
        known_hosts: str | None = None,
    ) -> dict[str, Any]:
        """Sets the given container defaults (STEP_PARAMETER.NULL clears one)
        and, when given, the SSH host keys of the project's Git servers, in
        known_hosts format ("" forgets them)."""
        if container_config is None and known_hosts is None:
            raise InvalidArgumentError.for_field(
                "container_config", "give container_config, known_hosts, or both"
            )
        config, paths = _container_config.parse_project_container_config(
            container_config or {}
        )
        request = registry_pb2.UpdateProjectSettingsRequest(
            settings=registry_pb2.ProjectSettings(container_config=config)
        )
        request.update_mask.paths.extend(paths)
        if known_hosts is not None:
            if not isinstance(known_hosts, str):
                raise InvalidArgumentError.for_field(
                    "known_hosts", "must be the text of a known_hosts file"
                )
            request.settings.known_hosts = known_hosts
            request.update_mask.paths.append("known_hosts")
        return _settings_to_dict(
            self._call(self._registry.UpdateProjectSettings, request)
        )

    def list_languages(self) -> list[dict[str, Any]]:
        """Returns the accepted values of `container_config.language`."""
        answer = self._call(self._build.ListLanguages, build_pb2.ListLanguagesRequest())
        return [
            {
                "name": language.name,
                "python_version": language.python_version,
                "cuda_version": language.cuda_version or None,
                "interpreter_available": language.interpreter_available,
            }
            for language in answer.languages
        ]

    # Helpers.

    def _wait_for_build(
        self, name: str, deadline: float, timeout_s: float
    ) -> common_pb2.Step:
        delay = _FIRST_POLL_S
        while True:
            request = build_pb2.WaitStepBuildRequest(name=name)
            request.timeout.FromTimedelta(
                timedelta(
                    seconds=max(0.0, min(deadline - time.monotonic(), _MAX_WAIT_S))
                )
            )
            step = self._call(
                self._build.WaitStepBuild,
                request,
                timeout=_MAX_WAIT_S + _CALL_TIMEOUT_S,
            )
            if step.status == common_pb2.STEP_STATUS_READY:
                return step
            short_name = name.removeprefix("steps/")
            if step.status == common_pb2.STEP_STATUS_FAILED:
                raise StepBuildError(short_name, step.build_log)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise StepCreationTimeoutError(short_name, "Pending", timeout_s)
            time.sleep(min(delay, remaining))
            delay = min(delay * 1.5, _MAX_POLL_S)

    def _iter_steps(self) -> Iterator[common_pb2.Step]:
        request = registry_pb2.ListStepsRequest(page_size=500)
        while True:
            page = self._call(self._registry.ListSteps, request)
            yield from page.steps
            if not page.next_page_token:
                return
            request.page_token = page.next_page_token

    def _call(
        self,
        method: Callable[..., _T],
        request: Any,
        *,
        timeout: float | None = _CALL_TIMEOUT_S,
    ) -> _T:
        try:
            return method(request, metadata=self._metadata, timeout=timeout)
        except grpc.RpcError as error:
            raise translate_rpc_error(error) from None


def _upload_requests(
    header: build_pb2.CreateStepHeader, chunks: Iterator[bytes]
) -> Iterator[build_pb2.CreateStepRequest]:
    yield build_pb2.CreateStepRequest(header=header)
    for chunk in chunks:
        yield build_pb2.CreateStepRequest(archive_chunk=chunk)


def _translated(responses: Iterable[_T]) -> Iterator[_T]:
    try:
        yield from responses
    except grpc.RpcError as error:
        raise translate_rpc_error(error) from None


def _settings_to_dict(settings: registry_pb2.ProjectSettings) -> dict[str, Any]:
    return {
        "project": settings.project,
        "container_config": _container_config.container_config_to_dict(
            settings.container_config
        ),
        "known_hosts": settings.known_hosts,
    }


def _setting(value: str | None, argument: str, variable: str) -> str:
    if value is None:
        value = os.environ.get(variable)
    if not value:
        raise InvalidArgumentError.for_field(
            argument, f"is required: pass it or set the {variable} environment variable"
        )
    return value


def _one_of(name: str, value: Any, alias: str, alias_value: Any) -> Any:
    if value is not None and alias_value is not None:
        raise InvalidArgumentError.for_field(
            name, f"is given twice, as {name} and as {alias}; keep one"
        )
    return value if value is not None else alias_value


def _required_str(field: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidArgumentError.for_field(field, "is required and must be a string")
    return value


def _check_step_name(step_name: Any) -> None:
    if not isinstance(step_name, str) or not is_valid_step_name(step_name):
        raise InvalidArgumentError.for_field("step_name", f"must be {STEP_NAME_RULE}")


def _check_timeout(timeout_s: Any) -> None:
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)):
        raise InvalidArgumentError.for_field("timeout_s", "must be a number of seconds")
    if timeout_s < MIN_CREATE_TIMEOUT_S:
        raise InvalidArgumentError.for_field(
            "timeout_s", f"must be at least {MIN_CREATE_TIMEOUT_S} seconds"
        )


def _typed_list(field: str, values: Any, kind: type[_T]) -> list[_T]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise InvalidArgumentError.for_field(
            field, f"must be a list of {kind.__name__}"
        )
    for index, value in enumerate(values):
        if not isinstance(value, kind):
            raise InvalidArgumentError.for_field(
                f"{field}[{index}]",
                f"must be a {kind.__name__}, not {type(value).__name__}",
            )
    names = [value.name for value in values]
    for index, item_name in enumerate(names):
        if item_name in names[:index]:
            raise InvalidArgumentError.for_field(
                f"{field}[{index}].name", f"{item_name!r} is declared twice"
            )
    return list(values)
