"""Receiving the file inputs of a run: each streamed to the object store in the
order the header announced, hashed and counted as it flows."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence

from stepforge.services.core.errors import InvalidArgument
from stepforge.services.core.limits import CHUNK_BYTES
from stepforge.services.core.object_store import ObjectStore
from stepforge.services.execution.object_keys import input_key
from stepforge.v1 import execution_pb2


def receive_file_inputs(
    requests: Iterator[execution_pb2.RunPipelineRequest],
    expected: Sequence[str],
    objects: ObjectStore,
    execution: str,
) -> dict[str, execution_pb2.StoredFile]:
    """Stores the chunks that follow the header; memory does not grow with size.

    On an error the input being written is not stored; the caller removes the
    ones stored before it.
    """
    stream = _Lookahead(requests)
    stored: dict[str, execution_pb2.StoredFile] = {}
    for name in expected:
        digest = hashlib.sha256()
        size = objects.put_stream(
            input_key(execution, name), _chunks_of(stream, name, digest)
        )
        stored[name] = execution_pb2.StoredFile(
            size_bytes=size, sha256=digest.hexdigest()
        )
    leftover = stream.peek()
    if leftover is not None:
        raise InvalidArgument(
            "file_chunk.input_name",
            f"{_input_name(leftover)!r} comes out of order or was not announced; "
            "send each file's chunks once, in the order of header.file_inputs",
        )
    return stored


def _chunks_of(stream: _Lookahead, name: str, digest: hashlib._Hash) -> Iterator[bytes]:
    while True:
        message = stream.peek()
        if message is None or _input_name(message) != name:
            return
        stream.advance()
        data = message.file_chunk.data
        if len(data) > CHUNK_BYTES:
            raise InvalidArgument(
                "file_chunk.data", f"must be at most {CHUNK_BYTES} bytes per message"
            )
        digest.update(data)
        yield data


def _input_name(message: execution_pb2.RunPipelineRequest) -> str:
    if message.WhichOneof("payload") != "file_chunk":
        raise InvalidArgument("header", "only the first message may hold the header")
    return message.file_chunk.input_name


class _Lookahead:
    """An iterator that can show its next item without taking it."""

    def __init__(self, items: Iterator[execution_pb2.RunPipelineRequest]) -> None:
        self._items = items
        self._next: execution_pb2.RunPipelineRequest | None = None
        self._done = False

    def peek(self) -> execution_pb2.RunPipelineRequest | None:
        if self._next is None and not self._done:
            self._next = next(self._items, None)
            self._done = self._next is None
        return self._next

    def advance(self) -> None:
        self._next = None
