"""How the execution service finds a step's built runtime on the build host."""

from __future__ import annotations

from pathlib import Path

import grpc

from stepforge.services.core.auth import bearer_metadata
from stepforge.services.core.error_translation import from_peer_error
from stepforge.services.core.errors import NotFound, Unavailable
from stepforge.v1 import build_pb2, build_pb2_grpc

CALL_TIMEOUT_S = 10.0


class BuildClient:
    def __init__(self, channel: grpc.Channel, target: str, service_token: str) -> None:
        self._stub = build_pb2_grpc.BuildInternalServiceStub(channel)
        self._target = target
        self._metadata = bearer_metadata(service_token)
        # Built runtimes are content-addressed and never change, so a found one
        # is remembered for as long as it is still on disk.
        self._found: dict[tuple[str, str], tuple[Path, Path]] = {}

    def locate_runtime(self, runtime_id: str, archive_sha256: str) -> tuple[Path, Path]:
        """The step environment's interpreter and the step's code folder."""
        known = self._found.get((runtime_id, archive_sha256))
        if known is not None and known[0].exists() and known[1].is_dir():
            return known
        request = build_pb2.GetRuntimeRequest(
            runtime_id=runtime_id, archive_sha256=archive_sha256
        )
        try:
            runtime = self._stub.GetRuntime(
                request, metadata=self._metadata, timeout=CALL_TIMEOUT_S
            )
        except grpc.RpcError as error:
            translated = from_peer_error(error)
            if translated.code == grpc.StatusCode.NOT_FOUND:
                raise NotFound(
                    f"the step's built environment is gone from the build host "
                    f"({translated.message}); create the step again"
                ) from None
            if translated.code in (
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.DEADLINE_EXCEEDED,
            ):
                raise Unavailable(
                    f"build service at {self._target} is unavailable: "
                    f"{translated.message}"
                ) from None
            raise translated from None
        found = Path(runtime.python_path), Path(runtime.code_path)
        self._found[(runtime_id, archive_sha256)] = found
        return found
