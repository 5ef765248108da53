from __future__ import annotations

import pytest

from stepforge.services.build.internal_service import (
    BuildInternalServicer,
    is_image_reference,
)
from stepforge.services.core.errors import FailedPrecondition, NotFound
from stepforge.v1 import build_pb2

IMAGE = "registry.local:5000/steps:" + "ab" * 32
LOCAL_RUNTIME = "cd" * 32


def test_an_image_runtime_is_refused_by_the_local_runtime_lookup() -> None:
    servicer = BuildInternalServicer(None)
    request = build_pb2.GetRuntimeRequest(runtime_id=IMAGE, archive_sha256="0" * 64)

    with pytest.raises(FailedPrecondition, match="--execution-backend kubernetes"):
        servicer.GetRuntime(request, None)  # type: ignore[arg-type]
    local = build_pb2.GetRuntimeRequest(
        runtime_id=LOCAL_RUNTIME, archive_sha256="0" * 64
    )
    with pytest.raises(NotFound, match="builds container images"):
        servicer.GetRuntime(local, None)  # type: ignore[arg-type]


def test_image_references_and_local_runtimes_are_told_apart() -> None:
    assert is_image_reference(IMAGE)
    assert not is_image_reference(LOCAL_RUNTIME)
