"""Small code archives and the CreateStep streams that carry them, for tests
that call the build service with its raw stubs."""

from __future__ import annotations

import io
import tarfile

from stepforge.v1 import build_pb2, common_pb2

MAIN = b"def main():\n    return {}\n"


def code_archive(content: bytes = MAIN) -> bytes:
    """A tar.gz of one main.py holding `content`."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("main.py")
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def create_step_requests(step_name: str) -> list[build_pb2.CreateStepRequest]:
    """The header of a step calling main.py's `main`, then its archive."""
    step = common_pb2.Step(
        name=f"steps/{step_name}", function_path="main.py", function_name="main"
    )
    header = build_pb2.CreateStepHeader(step=step, origin=common_pb2.STEP_ORIGIN_LOCAL)
    return [
        build_pb2.CreateStepRequest(header=header),
        build_pb2.CreateStepRequest(archive_chunk=code_archive()),
    ]
