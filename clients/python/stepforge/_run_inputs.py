"""The inputs of a run: checked, sorted into JSON and files, and streamed."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator, Mapping, Set
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any, Callable

from stepforge._resource_names import PIPELINE_PREFIX
from stepforge._rules import CHUNK_BYTES, MAX_JSON_VALUE_BYTES
from stepforge.errors import InvalidArgumentError
from stepforge.v1 import execution_pb2

_ChunkSource = Callable[[], Iterator[bytes]]

_BINARY_TYPES = (bytes, bytearray, memoryview)


class RunRequests:
    """The RunPipeline request stream: the header, then each file's chunks.

    Keeps the error that stopped it, which gRPC only reports as a cancelled
    call.
    """

    def __init__(
        self,
        header: execution_pb2.RunPipelineHeader,
        files: list[tuple[str, _ChunkSource]],
    ) -> None:
        self._header = header
        self._files = files
        self.error: Exception | None = None

    def __iter__(self) -> Iterator[execution_pb2.RunPipelineRequest]:
        try:
            yield execution_pb2.RunPipelineRequest(header=self._header)
            for input_name, chunks in self._files:
                for data in chunks():
                    yield execution_pb2.RunPipelineRequest(
                        file_chunk=execution_pb2.FileChunk(
                            input_name=input_name, data=data
                        )
                    )
        except Exception as error:
            self.error = error
            raise


def parse_inputs(
    inputs: Mapping[str, Any] | None,
) -> list[tuple[str, Any, str | None]]:
    """Each input as (name, value, JSON text); the text is None for a value
    that can only be a file. Sends nothing."""
    if inputs is None:
        return []
    if not isinstance(inputs, Mapping):
        raise InvalidArgumentError.for_field(
            "inputs", "must be a mapping of input name to value"
        )
    parsed = []
    for name, value in inputs.items():
        if not isinstance(name, str) or not name:
            raise InvalidArgumentError.for_field(
                "inputs", f"names must be non-empty strings, got {name!r}"
            )
        if isinstance(value, io.TextIOBase):
            raise InvalidArgumentError.for_field(
                f"inputs.{name}", "is a text stream: open the file in binary mode"
            )
        parsed.append(
            (name, value, None if _is_file(value) else _json_text(name, value))
        )
    return parsed


def run_requests(
    pipeline_name: str,
    given: list[tuple[str, Any, str | None]],
    declared_files: Set[str],
    timeout: timedelta | None,
) -> RunRequests:
    """The RunPipeline request stream for inputs from parse_inputs: JSON values
    in the header, unless declared FILE inputs, and the files after it."""
    header = execution_pb2.RunPipelineHeader(pipeline=PIPELINE_PREFIX + pipeline_name)
    if timeout is not None:
        header.timeout.FromTimedelta(timeout)
    files: list[tuple[str, _ChunkSource]] = []
    for name, value, json_text in given:
        if json_text is not None and name not in declared_files:
            header.json_inputs[name] = json_text
        else:
            files.append((name, _file_source(name, value)))
    header.file_inputs.extend(name for name, _ in files)
    return RunRequests(header, files)


def _file_source(name: str, value: Any) -> _ChunkSource:
    """What streams a FILE input; checks a local path exists before anything
    is sent."""
    field = f"inputs.{name}"
    if isinstance(value, (str, os.PathLike)):
        shown = os.fsdecode(value)
        path = Path(shown)
        if not path.is_file():
            raise InvalidArgumentError.for_field(
                field, f"is a FILE input, and {shown!r} is not a local file"
            )
        return partial(_path_chunks, field, path)
    if isinstance(value, _BINARY_TYPES):
        return partial(_content_chunks, bytes(value))
    if callable(getattr(value, "read", None)):
        return partial(_reader_chunks, field, value)
    raise InvalidArgumentError.for_field(
        field,
        "is a FILE input: give a path (str or os.PathLike), a binary file "
        f"object or bytes, not {type(value).__name__}",
    )


def _is_file(value: Any) -> bool:
    return isinstance(value, (os.PathLike, *_BINARY_TYPES)) or callable(
        getattr(value, "read", None)
    )


def _json_text(name: str, value: Any) -> str:
    field = f"inputs.{name}"
    try:
        text = json.dumps(
            value, allow_nan=False, ensure_ascii=False, separators=(",", ":")
        )
    except (TypeError, ValueError, RecursionError) as error:
        raise InvalidArgumentError.for_field(
            field, f"must be a JSON value or a file: {error}"
        ) from None
    size = len(text.encode("utf-8"))
    if size > MAX_JSON_VALUE_BYTES:
        raise InvalidArgumentError.for_field(
            field,
            f"must be at most {MAX_JSON_VALUE_BYTES:,} bytes once serialized, "
            f"got {size:,}",
        )
    return text


def _path_chunks(field: str, path: Path) -> Iterator[bytes]:
    try:
        handle = open(path, "rb")
    except OSError as error:
        raise InvalidArgumentError.for_field(
            field, f"cannot be read: {error}"
        ) from None
    with handle:
        yield from _reader_chunks(field, handle)


def _reader_chunks(field: str, reader: Any) -> Iterator[bytes]:
    while True:
        data = reader.read(CHUNK_BYTES)
        if isinstance(data, (bytearray, memoryview)):
            data = bytes(data)
        if not isinstance(data, bytes):
            raise InvalidArgumentError.for_field(
                field,
                "must be a binary file object whose read returns bytes, "
                f"got {type(data).__name__}",
            )
        if not data:
            return
        yield from _content_chunks(data)


def _content_chunks(content: bytes) -> Iterator[bytes]:
    for start in range(0, len(content), CHUNK_BYTES):
        yield content[start : start + CHUNK_BYTES]
