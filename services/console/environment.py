"""Reading an environment through the suite's public gRPC services, as the
signed-in user: every call carries that user's token and nothing else."""

from __future__ import annotations

from collections.abc import Callable, Generator
from contextlib import closing
from dataclasses import dataclass
from typing import Generic, TypeVar

import grpc

from stepforge._resource_names import EXECUTION_PREFIX, PIPELINE_PREFIX, STEP_PREFIX
from stepforge.errors import translate_rpc_error
from stepforge.services.core.auth import bearer_metadata
from stepforge.v1 import (
    common_pb2,
    execution_pb2,
    execution_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
)

_T = TypeVar("_T")
# Unary calls are reads that answer at once when the suite is up.
CALL_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class Page(Generic[_T]):
    """One page of a listing, and the token of the next ("" on the last)."""

    items: list[_T]
    next_page_token: str


class EnvironmentReader:
    """The calls the console makes; each raises the SDK's StepforgeError
    (NOT_FOUND, UNAUTHENTICATED, UNAVAILABLE, ...) when the suite refuses."""

    def __init__(self, channel: grpc.Channel) -> None:
        self._registry = registry_pb2_grpc.RegistryServiceStub(channel)
        self._execution = execution_pb2_grpc.ExecutionServiceStub(channel)

    def check_token(self, token: str) -> None:
        """Raises unless `token` is accepted as a token of an environment."""
        request = registry_pb2.ListStepsRequest(page_size=1)
        _unary(self._registry.ListSteps, request, token)

    def list_steps(
        self, token: str, page_token: str = "", page_size: int = 50
    ) -> Page[common_pb2.Step]:
        request = registry_pb2.ListStepsRequest(
            page_size=page_size, page_token=page_token
        )
        response = _unary(self._registry.ListSteps, request, token)
        return Page(list(response.steps), response.next_page_token)

    def get_step(self, token: str, step_name: str) -> common_pb2.Step:
        request = registry_pb2.GetStepRequest(name=STEP_PREFIX + step_name)
        return _unary(self._registry.GetStep, request, token)

    def list_pipelines(
        self, token: str, page_token: str = "", page_size: int = 50
    ) -> Page[registry_pb2.Pipeline]:
        request = registry_pb2.ListPipelinesRequest(
            page_size=page_size, page_token=page_token
        )
        response = _unary(self._registry.ListPipelines, request, token)
        return Page(list(response.pipelines), response.next_page_token)

    def pipelines_of_step(
        self, token: str, step_name: str, max_pages: int = 10
    ) -> list[registry_pb2.Pipeline]:
        """The pipelines that wrap the step, among the first `max_pages`
        pages of 1000."""
        found: list[registry_pb2.Pipeline] = []
        page_token = ""
        for _ in range(max_pages):
            page = self.list_pipelines(token, page_token, page_size=1000)
            found += [
                item for item in page.items if item.step == STEP_PREFIX + step_name
            ]
            page_token = page.next_page_token
            if not page_token:
                break
        return found

    def get_pipeline(self, token: str, pipeline_name: str) -> registry_pb2.Pipeline:
        request = registry_pb2.GetPipelineRequest(name=PIPELINE_PREFIX + pipeline_name)
        return _unary(self._registry.GetPipeline, request, token)

    def list_executions(
        self,
        token: str,
        pipeline_name: str = "",
        page_token: str = "",
        page_size: int = 50,
    ) -> Page[execution_pb2.Execution]:
        """Executions, newest first; only the pipeline's when one is named."""
        request = execution_pb2.ListExecutionsRequest(
            pipeline=PIPELINE_PREFIX + pipeline_name if pipeline_name else "",
            page_size=page_size,
            page_token=page_token,
        )
        response = _unary(self._execution.ListExecutions, request, token)
        return Page(list(response.executions), response.next_page_token)

    def get_execution(self, token: str, execution_id: str) -> execution_pb2.Execution:
        request = execution_pb2.GetExecutionRequest(
            name=EXECUTION_PREFIX + execution_id
        )
        return _unary(self._execution.GetExecution, request, token)

    def cancel_execution(
        self, token: str, execution_id: str
    ) -> execution_pb2.Execution:
        request = execution_pb2.CancelExecutionRequest(
            name=EXECUTION_PREFIX + execution_id
        )
        return _unary(self._execution.CancelExecution, request, token)

    def read_output(
        self, token: str, execution_id: str, output_name: str
    ) -> Generator[bytes, None, None]:
        """The chunks of a FILE output; closing the generator ends the call."""
        request = execution_pb2.ReadExecutionOutputRequest(
            name=EXECUTION_PREFIX + execution_id, output_name=output_name
        )
        call = self._execution.ReadExecutionOutput(
            request, metadata=bearer_metadata(token)
        )
        with closing(_streamed(call)) as responses:
            for response in responses:
                yield response.data

    def read_logs(
        self,
        token: str,
        execution_id: str,
        *,
        from_sequence: int = 0,
        follow: bool = False,
        timeout_s: float | None = None,
    ) -> Generator[execution_pb2.LogLine, None, None]:
        """The log lines from `from_sequence`; with `follow`, until the
        execution ends or `timeout_s` passes (DEADLINE_EXCEEDED). Closing the
        generator ends the call."""
        request = execution_pb2.ReadExecutionLogsRequest(
            name=EXECUTION_PREFIX + execution_id,
            from_sequence=from_sequence,
            follow=follow,
        )
        call = self._execution.ReadExecutionLogs(
            request, metadata=bearer_metadata(token), timeout=timeout_s
        )
        return _streamed(call)


def _unary(method: Callable[..., _T], request: object, token: str) -> _T:
    try:
        return method(request, metadata=bearer_metadata(token), timeout=CALL_TIMEOUT_S)
    except grpc.RpcError as error:
        raise translate_rpc_error(error) from None


def _streamed(call: grpc.CallIterator[_T]) -> Generator[_T, None, None]:
    # grpc-stubs leaves Call.cancel untyped; held as a typed callable.
    cancel: Callable[[], object] = call.cancel
    try:
        yield from call
    except grpc.RpcError as error:
        raise translate_rpc_error(error) from None
    finally:
        cancel()
