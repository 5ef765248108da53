"""The console's URLs, and the handlers of its browsing pages."""

from __future__ import annotations

import re

import grpc

from stepforge._resource_names import STEP_PREFIX, short_name
from stepforge.errors import StepforgeError
from stepforge.services.console import downloads, live, signin
from stepforge.services.console.app import Route
from stepforge.services.console.context import ConsoleContext, session_of
from stepforge.services.console.execution_pages import (
    LIST_REFRESH_S,
    any_active,
    execution_detail,
    executions_list,
)
from stepforge.services.console.formatting import short_id
from stepforge.services.console.pipeline_pages import pipeline_detail, pipelines_list
from stepforge.services.console.step_pages import step_detail, steps_list
from stepforge.services.console.web import Request, Response, path_to, redirect
from stepforge.v1 import common_pb2

# Lines of an execution's log its page shows; the whole log is a download.
LOG_LINES_SHOWN = 2000
RECENT_EXECUTIONS = 10
_SEGMENT = "[^/]+"


def home(context: ConsoleContext, request: Request) -> Response:
    return redirect(signin.HOME)


def health(context: ConsoleContext, request: Request) -> Response:
    return Response(200, b"ok\n", "text/plain; charset=utf-8")


def steps(context: ConsoleContext, request: Request) -> Response:
    page_token = request.query.get("page_token", "")
    found = context.reader.list_steps(session_of(request).token, page_token)
    return context.page(
        request, "Steps", steps_list(found, page_token), section="steps"
    )


def step(context: ConsoleContext, request: Request, name: str) -> Response:
    token = session_of(request).token
    found = context.reader.get_step(token, name)
    pipelines = context.reader.pipelines_of_step(token, name)
    return context.page(
        request,
        name,
        step_detail(found, pipelines),
        section="steps",
        crumbs=[("Steps", "/steps")],
    )


def pipelines(context: ConsoleContext, request: Request) -> Response:
    page_token = request.query.get("page_token", "")
    found = context.reader.list_pipelines(session_of(request).token, page_token)
    return context.page(
        request, "Pipelines", pipelines_list(found, page_token), section="pipelines"
    )


def pipeline(context: ConsoleContext, request: Request, name: str) -> Response:
    token = session_of(request).token
    found = context.reader.get_pipeline(token, name)
    wrapped: common_pb2.Step | None = None
    try:
        wrapped = context.reader.get_step(token, short_name(found.step, STEP_PREFIX))
    except StepforgeError as error:
        # The page still says what the pipeline is when its step is gone.
        if error.code != grpc.StatusCode.NOT_FOUND:
            raise
    recent = context.reader.list_executions(token, name, page_size=RECENT_EXECUTIONS)
    return context.page(
        request,
        name,
        pipeline_detail(found, wrapped, recent),
        section="pipelines",
        crumbs=[("Pipelines", "/pipelines")],
    )


def executions(context: ConsoleContext, request: Request) -> Response:
    pipeline_name = request.query.get("pipeline", "")
    page_token = request.query.get("page_token", "")
    found = context.reader.list_executions(
        session_of(request).token, pipeline_name, page_token
    )
    return context.page(
        request,
        "Executions",
        executions_list(found, pipeline_name, page_token),
        section="executions",
        refresh_s=LIST_REFRESH_S if any_active(found.items) else 0,
    )


def execution(context: ConsoleContext, request: Request, execution_id: str) -> Response:
    token = session_of(request).token
    found = context.reader.get_execution(token, execution_id)
    logs = live.log_excerpt(context.reader, token, execution_id, LOG_LINES_SHOWN)
    csrf = context.csrf_for(request) or ""
    return context.page(
        request,
        f"Execution {short_id(execution_id)}",
        execution_detail(found, logs, csrf),
        section="executions",
        crumbs=[("Executions", "/executions")],
    )


def cancel(context: ConsoleContext, request: Request, execution_id: str) -> Response:
    context.reader.cancel_execution(session_of(request).token, execution_id)
    return redirect(path_to("executions", execution_id))


def _path(*parts: str) -> re.Pattern[str]:
    """A pattern of literal parts and `{name}` segments."""
    pieces = [
        f"(?P<{part[1:-1]}>{_SEGMENT})" if part.startswith("{") else re.escape(part)
        for part in parts
    ]
    return re.compile("/" + "/".join(pieces) if pieces else "/")


ROUTES = [
    Route("GET", _path(), home),
    Route("GET", _path("healthz"), health, signed_in=False, page=False),
    Route("GET", _path("sign-in"), signin.show_sign_in, signed_in=False),
    Route("POST", _path("sign-in"), signin.submit_sign_in, signed_in=False),
    Route("POST", _path("sign-out"), signin.sign_out, signed_in=False),
    Route("GET", _path("steps"), steps),
    Route("GET", _path("steps", "{name}"), step),
    Route("GET", _path("pipelines"), pipelines),
    Route("GET", _path("pipelines", "{name}"), pipeline),
    Route("GET", _path("executions"), executions),
    Route("GET", _path("executions", "{execution_id}"), execution),
    Route("POST", _path("executions", "{execution_id}", "cancel"), cancel),
    Route(
        "GET",
        _path("executions", "{execution_id}", "events"),
        live.events,
        page=False,
    ),
    Route(
        "GET",
        _path("executions", "{execution_id}", "status"),
        live.status,
        page=False,
    ),
    Route(
        "GET",
        _path("executions", "{execution_id}", "log.txt"),
        downloads.log_file,
    ),
    Route(
        "GET",
        _path("executions", "{execution_id}", "outputs", "{output_name}"),
        downloads.output_file,
    ),
]
