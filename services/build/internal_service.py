"""The build service's calls for peer services: where built runtimes are."""

from __future__ import annotations

import grpc

from stepforge.services.build.local_builder import LocalBuilder
from stepforge.services.core.errors import FailedPrecondition, NotFound
from stepforge.v1 import build_pb2, build_pb2_grpc


class BuildInternalServicer(build_pb2_grpc.BuildInternalServiceServicer):
    """`builder` is None when this service builds images, not environments."""

    def __init__(self, builder: LocalBuilder | None) -> None:
        self._builder = builder

    def GetRuntime(
        self, request: build_pb2.GetRuntimeRequest, context: grpc.ServicerContext
    ) -> build_pb2.Runtime:
        runtime_id = request.runtime_id
        if is_image_reference(runtime_id):
            raise FailedPrecondition(
                f"runtime_id: {runtime_id!r} is a container image made by the "
                "kubernetes build backend, which only the kubernetes execution "
                "backend runs; use --execution-backend kubernetes, or create the "
                "step again with --build-backend local"
            )
        if self._builder is None:
            raise NotFound(
                f"runtime_id: runtime {runtime_id!r} is a local environment, but "
                "this build service builds container images (--build-backend "
                "kubernetes) and keeps none; create the step again"
            )
        found = self._builder.locate(runtime_id, request.archive_sha256)
        if found is None:
            raise NotFound(
                f"runtime_id: runtime {runtime_id!r} with code "
                f"{request.archive_sha256!r} is not on this build host"
            )
        python, code = found
        return build_pb2.Runtime(python_path=str(python), code_path=str(code))


def is_image_reference(runtime_id: str) -> bool:
    """Whether `runtime_id` names an image (`repository:tag`), not a local
    environment (a bare sha256 hex digest)."""
    return "/" in runtime_id and ":" in runtime_id
