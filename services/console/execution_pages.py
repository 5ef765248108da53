"""The executions list and the page of one execution, with its logs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from google.protobuf import timestamp_pb2

from stepforge._execution_dict import execution_id_of
from stepforge._resource_names import PIPELINE_PREFIX, STEP_PREFIX, short_name
from stepforge._times import iso_time
from stepforge.services.console import formatting as fmt
from stepforge.services.console.components import (
    code,
    columns,
    details,
    heading,
    link,
    muted,
    notice,
    pagination,
    preformatted,
    section,
    table,
)
from stepforge.services.console.environment import Page
from stepforge.services.console.markup import Html, join, render
from stepforge.services.console.web import path_to
from stepforge.v1 import execution_pb2

# The executions list reloads itself this often while one of them is active.
LIST_REFRESH_S = 5


@dataclass(frozen=True)
class LogExcerpt:
    """The last lines of a log, and how many there are in all."""

    lines: Sequence[execution_pb2.LogLine]
    total: int

    @property
    def next_sequence(self) -> int:
        return self.lines[-1].sequence + 1 if self.lines else 0


def executions_list(
    page: Page[execution_pb2.Execution], pipeline_name: str, page_token: str
) -> Html:
    """A page of executions, newest first, of one pipeline or all."""
    title = f"Executions of {pipeline_name}" if pipeline_name else "Executions"
    filter_note = Html("")
    if pipeline_name:
        filter_note = render(
            '<p class="filter">Only pipeline {pipeline}. {all}</p>',
            pipeline=link(path_to("pipelines", pipeline_name), pipeline_name),
            all=link(path_to("executions"), "Show every execution"),
        )
    return render(
        "{heading}{filter}{listing}{pages}",
        heading=heading(title),
        filter=filter_note,
        listing=executions_table(page.items, show_pipeline=not pipeline_name),
        pages=pagination(
            "executions",
            page.next_page_token,
            on_first_page=not page_token,
            query={"pipeline": pipeline_name},
        ),
    )


def executions_table(
    executions: Sequence[execution_pb2.Execution], *, show_pipeline: bool
) -> Html:
    """Executions with their status and times."""
    headers = ["Execution"] + (["Pipeline"] if show_pipeline else [])
    headers += ["Status", "Created", "Started", "Ended", "Duration"]
    rows = []
    for execution in executions:
        identifier = execution_id_of(execution.name)
        pipeline = short_name(execution.pipeline, PIPELINE_PREFIX)
        row: list[object] = [
            link(path_to("executions", identifier), code(fmt.short_id(identifier)))
        ]
        if show_pipeline:
            row.append(link(path_to("pipelines", pipeline), pipeline))
        row += [
            fmt.status_badge(fmt.execution_status(execution.status)),
            fmt.time_element(execution.create_time, execution.HasField("create_time")),
            fmt.time_element(execution.start_time, execution.HasField("start_time")),
            fmt.time_element(execution.end_time, execution.HasField("end_time")),
            fmt.execution_duration(execution) or muted(fmt.NOT_SET),
        ]
        rows.append(row)
    return table(headers, rows, empty="No executions yet.", label="Executions")


def any_active(executions: Sequence[execution_pb2.Execution]) -> bool:
    return any(execution.status in fmt.ACTIVE_STATUSES for execution in executions)


def execution_detail(
    execution: execution_pb2.Execution, logs: LogExcerpt, csrf: str
) -> Html:
    """Status, times, inputs, outputs with their downloads, and the logs,
    which the script keeps following while the execution is active."""
    identifier = execution_id_of(execution.name)
    status = fmt.execution_status(execution.status)
    active = execution.status in fmt.ACTIVE_STATUSES
    actions = _cancel_form(identifier, csrf) if active else Html("")
    badge = render(
        '<span id="execution-status" data-status="{status}">{badge}</span>',
        status=status,
        badge=fmt.status_badge(status),
    )
    parts = [heading(f"Execution {fmt.short_id(identifier)}", badge, actions)]
    if execution.failure_reason:
        kind = "error" if status == "Failed" else "warning"
        parts.append(notice(f"{status}: {execution.failure_reason}", kind))
    parts += [
        section("Summary", _summary(execution, identifier)),
        columns(
            section("Inputs", _values(execution.inputs, identifier, downloads=False)),
            section("Outputs", _outputs(execution, identifier)),
        ),
        section("Logs", _logs(identifier, logs, active), anchor="logs"),
    ]
    return join(parts)


def log_line(line: execution_pb2.LogLine) -> Html:
    """One log line; the script builds the same markup for live lines."""
    stream = fmt.log_stream(line.stream)
    return render(
        '<li class="stream-{stream}" data-sequence="{sequence}">'
        '<time datetime="{iso}">{clock}</time>'
        '<span class="stream">{stream}</span>'
        '<span class="text">{text}</span></li>',
        stream=stream,
        sequence=str(line.sequence),
        iso=iso_time(line.time),
        clock=fmt.clock_time(line.time),
        text=line.text,
    )


def _cancel_form(identifier: str, csrf: str) -> Html:
    return render(
        '<form method="post" action="{action}" data-confirm="{question}">'
        '<input type="hidden" name="csrf" value="{csrf}">'
        '<button type="submit" class="button danger" id="cancel-execution">'
        "Cancel execution</button></form>",
        action=path_to("executions", identifier, "cancel"),
        question="Cancel this execution? Its processes are killed.",
        csrf=csrf,
    )


def _summary(execution: execution_pb2.Execution, identifier: str) -> Html:
    pipeline = short_name(execution.pipeline, PIPELINE_PREFIX)
    step = short_name(execution.step, STEP_PREFIX)
    duration = fmt.execution_duration(execution)
    pairs: list[tuple[str, object]] = [
        ("Execution id", code(identifier)),
        ("Pipeline", link(path_to("pipelines", pipeline), pipeline)),
        ("Step", link(path_to("steps", step), step)),
        (
            "Created",
            fmt.time_element(execution.create_time, execution.HasField("create_time")),
        ),
        (
            "Started",
            _timed("started", execution.start_time, execution.HasField("start_time")),
        ),
        (
            "Ended",
            _timed("ended", execution.end_time, execution.HasField("end_time")),
        ),
        (
            "Duration",
            render(
                '<span id="execution-duration">{d}</span>', d=duration or fmt.NOT_SET
            ),
        ),
    ]
    if execution.HasField("timeout"):
        pairs.append(("Time limit", fmt.timeout_text(execution.timeout)))
    if execution.gpu_devices:
        pairs.append(("GPU devices", ", ".join(execution.gpu_devices)))
    return details(pairs)


def _timed(name: str, moment: timestamp_pb2.Timestamp, is_set: bool) -> Html:
    """A time the script updates while the execution runs."""
    return render(
        '<span id="execution-{name}">{time}</span>',
        name=name,
        time=fmt.time_element(moment, is_set),
    )


def _outputs(execution: execution_pb2.Execution, identifier: str) -> Html:
    if execution.outputs:
        return _values(execution.outputs, identifier, downloads=True)
    if execution.status in fmt.ACTIVE_STATUSES:
        text = "The outputs appear here once the execution succeeds."
    elif execution.status == execution_pb2.EXECUTION_STATUS_SUCCEEDED:
        text = "The step returned no outputs."
    else:
        text = "The execution did not succeed, so it has no outputs."
    return render('<p class="empty">{text}</p>', text=text)


def _values(
    values: Mapping[str, execution_pb2.ExecutionValue],
    identifier: str,
    *,
    downloads: bool,
) -> Html:
    rows = []
    for name, value in sorted(values.items()):
        rows.append([code(name), _value(value, identifier, name, downloads)])
    label = "Outputs" if downloads else "Inputs"
    return table(["Name", "Value"], rows, empty="None.", label=label)


def _value(
    value: execution_pb2.ExecutionValue, identifier: str, name: str, downloads: bool
) -> Html:
    if value.WhichOneof("kind") == "json":
        text = fmt.json_text(value.json)
        if "\n" in text:
            return preformatted(text, "value-block")
        return code(text)
    stored = value.file
    size = fmt.size_text(stored.size_bytes)
    if not downloads:
        return render("file of {size}", size=size)
    return render(
        '<a class="button download" href="{href}" download="{filename}">'
        "Download</a> {size}, SHA-256 {digest}",
        href=path_to("executions", identifier, "outputs", name),
        filename=name,
        size=size,
        digest=code(stored.sha256[:16] + "…"),
    )


def _logs(identifier: str, logs: LogExcerpt, active: bool) -> Html:
    note = Html("")
    if logs.total > len(logs.lines):
        note = render(
            '<p class="muted">The last {shown} of {total} lines.</p>',
            shown=f"{len(logs.lines):,}",
            total=f"{logs.total:,}",
        )
    empty_text = "Waiting for the first line…" if active else "The log is empty."
    return render(
        '<div class="log-tools">{note}<a href="{download}">Download the whole log</a>'
        '<span id="log-state" class="muted" aria-live="polite"></span></div>'
        '<ol class="log" id="log" data-live="{live}" data-events-url="{events}" '
        'data-status-url="{status}" data-next-sequence="{next}">{lines}</ol>'
        "{empty}",
        note=note,
        download=path_to("executions", identifier, "log.txt"),
        live="true" if active else "false",
        events=path_to("executions", identifier, "events"),
        status=path_to("executions", identifier, "status"),
        next=str(logs.next_sequence),
        lines=[log_line(line) for line in logs.lines],
        empty=render('<p class="empty" id="log-empty">{text}</p>', text=empty_text)
        if not logs.lines
        else Html(""),
    )
