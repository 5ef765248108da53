"""The build service's calls for peer services: where built runtimes are."""

from __future__ import annotations

import grpc

from stepforge.services.build.local_builder import LocalBuilder
from stepforge.services.core.errors import NotFound
from stepforge.v1 import build_pb2, build_pb2_grpc


class BuildInternalServicer(build_pb2_grpc.BuildInternalServiceServicer):
    def __init__(self, builder: LocalBuilder) -> None:
        self._builder = builder

    def GetRuntime(
        self, request: build_pb2.GetRuntimeRequest, context: grpc.ServicerContext
    ) -> build_pb2.Runtime:
        found = self._builder.locate(request.runtime_id, request.archive_sha256)
        if found is None:
            raise NotFound(
                f"runtime_id: runtime {request.runtime_id!r} with code "
                f"{request.archive_sha256!r} is not on this build host"
            )
        python, code = found
        return build_pb2.Runtime(python_path=str(python), code_path=str(code))
