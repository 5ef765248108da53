"""ExecutionOutputFile: a FILE output of an execution, read as a stream."""

from __future__ import annotations

import hashlib
import io
from typing import TYPE_CHECKING, Callable

import grpc

from stepforge.errors import StepforgeError, translate_rpc_error

if TYPE_CHECKING:
    from collections.abc import Iterator

    from _typeshed import WriteableBuffer

    from stepforge.v1 import execution_pb2

    _OutputCall = grpc.CallIterator[execution_pb2.ReadExecutionOutputResponse]


class ExecutionOutputFile(io.BufferedReader):
    """A readable binary file over one FILE output of an execution.

    Nothing is fetched before the first read, and at most one piece of the
    content is held at a time. Closing it ends the stream. The content is
    checked against the size and SHA-256 the service recorded once it ends.
    """

    def __init__(
        self,
        open_call: Callable[[], _OutputCall],
        output_name: str,
        *,
        size_bytes: int | None = None,
        sha256: str | None = None,
    ) -> None:
        super().__init__(_OutputStream(open_call, output_name, size_bytes, sha256))


class _OutputStream(io.RawIOBase):
    """The raw stream under ExecutionOutputFile: the chunks of one gRPC call."""

    def __init__(
        self,
        open_call: Callable[[], _OutputCall],
        output_name: str,
        size_bytes: int | None,
        sha256: str | None,
    ) -> None:
        super().__init__()
        self.name = output_name
        self._open_call = open_call
        self._expected_size = size_bytes
        self._expected_sha256 = sha256 or None
        # grpc-stubs leaves Call.cancel untyped; held as a typed callable.
        self._cancel: Callable[[], object] | None = None
        self._responses: Iterator[execution_pb2.ReadExecutionOutputResponse] | None = (
            None
        )
        self._chunk = b""
        self._offset = 0
        self._received = 0
        self._digest = hashlib.sha256()
        self._ended = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        self._check_open()
        target = memoryview(buffer).cast("B")
        if not target:
            return 0
        if self._offset >= len(self._chunk) and not self._next_chunk():
            return 0
        count = min(len(target), len(self._chunk) - self._offset)
        target[:count] = memoryview(self._chunk)[self._offset : self._offset + count]
        self._offset += count
        return count

    def readall(self) -> bytes:
        self._check_open()
        parts = [self._chunk[self._offset :]]
        self._offset = len(self._chunk)
        while self._next_chunk():
            parts.append(self._chunk)
            self._offset = len(self._chunk)
        return b"".join(parts)

    def close(self) -> None:
        # Cancelling tells the service to stop sending what nobody will read.
        if self._cancel is not None and not self._ended:
            self._cancel()
        self._chunk = b""
        super().close()

    def _next_chunk(self) -> bool:
        """Moves to the next non-empty chunk; False at the end of the content."""
        if self._ended:
            self._check_complete()
            return False
        if self._responses is None:
            call = self._open_call()
            self._cancel = call.cancel
            self._responses = iter(call)
        try:
            data = b""
            while not data:
                data = next(self._responses).data
        except StopIteration:
            self._ended = True
            self._chunk, self._offset = b"", 0
            self._check_complete()
            return False
        except grpc.RpcError as error:
            raise translate_rpc_error(error) from None
        self._chunk, self._offset = data, 0
        self._received += len(data)
        self._digest.update(data)
        return True

    def _check_complete(self) -> None:
        expected = self._expected_size
        if expected is not None and self._received != expected:
            raise StepforgeError(
                f"output {self.name!r} ended after {self._received:,} bytes, "
                f"but {expected:,} were recorded"
            )
        digest = self._digest.hexdigest()
        if self._expected_sha256 is not None and digest != self._expected_sha256:
            raise StepforgeError(
                f"output {self.name!r} arrived with SHA-256 {digest}, "
                f"but {self._expected_sha256} was recorded"
            )

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file")
