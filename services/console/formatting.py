"""How the console shows values: times, sizes, statuses, types and JSON."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from google.protobuf import duration_pb2, timestamp_pb2

from stepforge._execution_dict import LOG_STREAM_NAMES, STATUS_NAMES
from stepforge._io_proto import data_type_from_proto
from stepforge._step_dict import STATUS_NAMES as STEP_STATUS_NAMES
from stepforge._times import iso_time
from stepforge.services.console.markup import Html, render
from stepforge.services.core.durations import duration_seconds
from stepforge.v1 import common_pb2, execution_pb2

ACTIVE_STATUSES = frozenset(
    {execution_pb2.EXECUTION_STATUS_PENDING, execution_pb2.EXECUTION_STATUS_RUNNING}
)
ORIGIN_NAMES = {
    common_pb2.STEP_ORIGIN_LOCAL: "local folder",
    common_pb2.STEP_ORIGIN_GIT_REPOSITORY: "Git repository",
}
NOT_SET = "—"


def execution_status(status: execution_pb2.ExecutionStatus.ValueType) -> str:
    return STATUS_NAMES.get(status, "Unknown")


def step_status(status: common_pb2.StepStatus.ValueType) -> str:
    return STEP_STATUS_NAMES.get(status, "Unknown")


def log_stream(stream: execution_pb2.LogStream.ValueType) -> str:
    return LOG_STREAM_NAMES.get(stream, "unknown")


def status_badge(label: str) -> Html:
    """A status as a coloured label; the class is derived from a fixed name."""
    return render(
        '<span class="badge status-{kind}">{label}</span>',
        kind=label.lower(),
        label=label,
    )


def data_type(value: common_pb2.DataType.ValueType) -> str:
    try:
        return data_type_from_proto(value).value
    except ValueError:
        return "unknown"


def time_element(timestamp: timestamp_pb2.Timestamp, is_set: bool) -> Html:
    """A UTC time to the second, with its exact value for machines."""
    if not is_set:
        return render('<span class="muted">{none}</span>', none=NOT_SET)
    return render(
        '<time datetime="{iso}">{shown}</time>',
        iso=iso_time(timestamp),
        shown=display_time(timestamp),
    )


def display_time(timestamp: timestamp_pb2.Timestamp) -> str:
    """A UTC time to the second, as people read it."""
    moment = timestamp.ToDatetime(tzinfo=timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def clock_time(timestamp: timestamp_pb2.Timestamp) -> str:
    """The time of day of a log line, to the millisecond."""
    moment = timestamp.ToDatetime(tzinfo=timezone.utc)
    return moment.strftime("%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def execution_duration(execution: execution_pb2.Execution) -> str:
    """How long the function ran, or has run so far; empty before it started."""
    if not execution.HasField("start_time"):
        return ""
    started = execution.start_time.ToDatetime(tzinfo=timezone.utc)
    if execution.HasField("end_time"):
        ended = execution.end_time.ToDatetime(tzinfo=timezone.utc)
    else:
        ended = datetime.now(timezone.utc)
    return seconds_text(max(0.0, (ended - started).total_seconds()))


def timeout_text(timeout: duration_pb2.Duration) -> str:
    return seconds_text(duration_seconds(timeout))


def seconds_text(seconds: float) -> str:
    """A span of time as people read it: `850 ms`, `12.3 s`, `4 min 5 s`,
    `2 h 3 min`."""
    if seconds < 1:
        return f"{round(seconds * 1000)} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} min"


def size_text(size_bytes: int) -> str:
    """A size in decimal units, the way the limits are given: `5.0 MB`."""
    if size_bytes < 1000:
        return f"{size_bytes} B"
    value = size_bytes / 1000
    unit = "kB"
    for larger in ("MB", "GB", "TB"):
        if value < 1000:
            break
        value /= 1000
        unit = larger
    return f"{value:,.1f} {unit}"


def json_text(value_json: str) -> str:
    """JSON text laid out for reading; text that does not parse, as it is."""
    try:
        value = json.loads(value_json)
    except ValueError:
        return value_json
    if isinstance(value, (dict, list)) and value:
        return json.dumps(value, indent=2, ensure_ascii=False)
    return json.dumps(value, ensure_ascii=False)


def short_id(execution_id: str) -> str:
    """The first characters of an id, enough to tell executions apart."""
    return execution_id[:12]
