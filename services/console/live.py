"""An execution as it runs: its log lines as Server-Sent Events, and its
status as JSON for the page's script to poll."""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Iterator

import grpc

from stepforge._times import iso_time
from stepforge.errors import StepforgeError
from stepforge.services.console import formatting as fmt
from stepforge.services.console.context import ConsoleContext, session_of
from stepforge.services.console.environment import CALL_TIMEOUT_S, EnvironmentReader
from stepforge.services.console.execution_pages import LogExcerpt
from stepforge.services.console.web import Request, Response, json_response
from stepforge.v1 import execution_pb2

# One event stream follows the log this long, then ends; the browser
# reconnects where it left off. A stream whose browser went away therefore
# holds a thread and a call for this long at most.
LIVE_WINDOW_S = 25.0
# What the browser waits before it reconnects, in milliseconds.
RECONNECT_MS = 1000
# Reading a whole log for a page or a download may take longer than a read.
LOG_READ_TIMEOUT_S = 4 * CALL_TIMEOUT_S
_SEQUENCE = re.compile("[0-9]{1,18}")


def log_excerpt(
    reader: EnvironmentReader, token: str, execution_id: str, max_lines: int
) -> LogExcerpt:
    """The last `max_lines` lines of the log so far, and how many it has."""
    kept: deque[execution_pb2.LogLine] = deque(maxlen=max_lines)
    total = 0
    lines = reader.read_logs(token, execution_id, timeout_s=LOG_READ_TIMEOUT_S)
    try:
        for line in lines:
            kept.append(line)
            total += 1
    finally:
        lines.close()
    return LogExcerpt(list(kept), total)


def events(context: ConsoleContext, request: Request, execution_id: str) -> Response:
    """The log from the line after `Last-Event-ID`, or from `?from=`, as
    `line` events while the execution runs, then an `end` event."""
    start = _start_sequence(request)
    if start is None:
        return json_response(
            {"error": "from: must be a whole number of at least 0"}, 400
        )
    token = session_of(request).token
    # Read first, so an unknown execution is a 404 rather than a stream.
    context.reader.get_execution(token, execution_id)
    stream = _event_stream(context.reader, token, execution_id, start)
    headers = [("Cache-Control", "no-store"), ("X-Accel-Buffering", "no")]
    return Response(200, stream, "text/event-stream; charset=utf-8", headers)


def status(context: ConsoleContext, request: Request, execution_id: str) -> Response:
    """The execution's status and times, as the page shows them."""
    found = context.reader.get_execution(session_of(request).token, execution_id)
    return json_response(status_summary(found))


def status_summary(execution: execution_pb2.Execution) -> dict[str, object]:
    started = execution.start_time if execution.HasField("start_time") else None
    ended = execution.end_time if execution.HasField("end_time") else None
    return {
        "status": fmt.execution_status(execution.status),
        "active": execution.status in fmt.ACTIVE_STATUSES,
        "started": fmt.display_time(started) if started else fmt.NOT_SET,
        "ended": fmt.display_time(ended) if ended else fmt.NOT_SET,
        "duration": fmt.execution_duration(execution) or fmt.NOT_SET,
        "failureReason": execution.failure_reason,
    }


def sse_event(name: str, data: object, event_id: str = "") -> bytes:
    """One Server-Sent Event. JSON data holds no line break, so no value can
    end the event early or forge another."""
    head = f"event: {name}\n"
    if event_id:
        head += f"id: {event_id}\n"
    return (head + f"data: {json.dumps(data)}\n\n").encode("utf-8")


def _event_stream(
    reader: EnvironmentReader, token: str, execution_id: str, start: int
) -> Iterator[bytes]:
    yield f"retry: {RECONNECT_MS}\n\n".encode()
    lines = reader.read_logs(
        token,
        execution_id,
        from_sequence=start,
        follow=True,
        timeout_s=LIVE_WINDOW_S,
    )
    try:
        for line in lines:
            yield sse_event("line", _line_data(line), str(line.sequence))
    except StepforgeError as error:
        if error.code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return
        yield sse_event(
            "failure",
            {
                "message": error.message,
                "signIn": error.code == grpc.StatusCode.UNAUTHENTICATED,
            },
        )
        return
    finally:
        lines.close()
    yield sse_event("end", {})


def _line_data(line: execution_pb2.LogLine) -> dict[str, object]:
    return {
        "sequence": line.sequence,
        "time": iso_time(line.time),
        "clock": fmt.clock_time(line.time),
        "stream": fmt.log_stream(line.stream),
        "text": line.text,
    }


def _start_sequence(request: Request) -> int | None:
    """Where the stream starts; None when the request names no valid place."""
    last_seen = request.headers.get("last-event-id", "")
    if last_seen:
        return int(last_seen) + 1 if _SEQUENCE.fullmatch(last_seen) else None
    wanted = request.query.get("from", "0")
    return int(wanted) if _SEQUENCE.fullmatch(wanted) else None
