"""Downloads: an execution's FILE outputs and its whole log, streamed chunk
by chunk from the suite to the browser, never held whole in memory."""

from __future__ import annotations

import re
from collections.abc import Generator, Iterator
from urllib.parse import quote

from stepforge._times import iso_time
from stepforge.services.console import formatting as fmt
from stepforge.services.console.context import ConsoleContext, session_of
from stepforge.services.console.environment import EnvironmentReader
from stepforge.services.console.live import LOG_READ_TIMEOUT_S
from stepforge.services.console.web import Request, Response

# Log lines are sent in pieces of about this size rather than one by one.
_LOG_PIECE_BYTES = 64 * 1024
_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]")


def output_file(
    context: ConsoleContext, request: Request, execution_id: str, output_name: str
) -> Response:
    """A FILE output as an attachment, with its exact length."""
    token = session_of(request).token
    execution = context.reader.get_execution(token, execution_id)
    value = execution.outputs.get(output_name)
    if value is None:
        return _refuse(
            context,
            request,
            404,
            f"The execution has no output named {output_name!r}.",
        )
    if value.WhichOneof("kind") != "file":
        return _refuse(
            context,
            request,
            409,
            f"Output {output_name!r} is a JSON value, shown on the execution page.",
        )
    chunks = context.reader.read_output(token, execution_id, output_name)
    # The first chunk is read before answering, so a refusal is a page, not
    # a download cut short.
    first = next(chunks, b"")
    headers = [
        ("Content-Length", str(value.file.size_bytes)),
        ("Content-Disposition", attachment(output_name)),
    ]
    body = _starting_with(first, chunks)
    return Response(200, body, "application/octet-stream", headers)


def log_file(context: ConsoleContext, request: Request, execution_id: str) -> Response:
    """The whole log as text: one `time stream text` line per log line."""
    token = session_of(request).token
    context.reader.get_execution(token, execution_id)
    body = _log_text(context.reader, token, execution_id)
    headers = [("Content-Disposition", attachment(f"execution-{execution_id}.log"))]
    return Response(200, body, "text/plain; charset=utf-8", headers)


def attachment(filename: str) -> str:
    """A Content-Disposition that saves under `filename`: a plain ASCII
    fallback, and the exact name percent-encoded for browsers that read it."""
    fallback = _UNSAFE_FILENAME.sub("_", filename) or "download"
    exact = quote(filename, safe="")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{exact}"


def _starting_with(first: bytes, rest: Generator[bytes, None, None]) -> Iterator[bytes]:
    try:
        yield first
        yield from rest
    finally:
        rest.close()


def _log_text(
    reader: EnvironmentReader, token: str, execution_id: str
) -> Iterator[bytes]:
    lines = reader.read_logs(token, execution_id, timeout_s=LOG_READ_TIMEOUT_S)
    piece: list[bytes] = []
    size = 0
    try:
        for line in lines:
            text = (
                f"{iso_time(line.time)} {fmt.log_stream(line.stream)} {line.text}\n"
            ).encode()
            piece.append(text)
            size += len(text)
            if size >= _LOG_PIECE_BYTES:
                yield b"".join(piece)
                piece, size = [], 0
    finally:
        lines.close()
    if piece:
        yield b"".join(piece)


def _refuse(
    context: ConsoleContext, request: Request, status: int, message: str
) -> Response:
    title = "Not found" if status == 404 else "Not a file"
    return context.error(request, status, title, message)
