"""Signing in with an environment token, and out again."""

from __future__ import annotations

import logging

import grpc

from stepforge.errors import StepforgeError
from stepforge.services.console.auth_pages import sign_in
from stepforge.services.console.context import ConsoleContext
from stepforge.services.console.sessions import new_cookie_value
from stepforge.services.console.web import Request, Response, is_local_path, redirect

logger = logging.getLogger(__name__)

HOME = "/steps"
MAX_TOKEN_CHARS = 1024


def show_sign_in(context: ConsoleContext, request: Request) -> Response:
    """The form; a browser without a cookie gets a visitor id, which the
    form's CSRF token is bound to."""
    next_path = _next_path(request.query.get("next", ""))
    if request.session is not None:
        return redirect(next_path)
    return _form(
        context, request, next_path, notice_key=request.query.get("notice", "")
    )


def submit_sign_in(context: ConsoleContext, request: Request) -> Response:
    """Checks the token with the registry and starts a session for it."""
    next_path = _next_path(request.form.get("next", ""))
    token = request.form.get("token", "").strip()
    problem = token_problem(token)
    if problem:
        return _form(context, request, next_path, error=problem, status=400)
    try:
        context.reader.check_token(token)
    except StepforgeError as error:
        status, message = _refusal(error, context.settings.environment_url)
        logger.info("a sign-in was refused: %s", error.code.name if error.code else "?")
        return _form(context, request, next_path, error=message, status=status)

    session = context.sessions.create(token)
    if request.cookie:
        context.sessions.end(request.cookie)
    logger.info("signed in a session; %d sessions now", len(context.sessions))
    response = redirect(next_path)
    response.headers.append(context.set_cookie(session.id))
    return response


def sign_out(context: ConsoleContext, request: Request) -> Response:
    if request.cookie:
        context.sessions.end(request.cookie)
    response = redirect("/sign-in?notice=signed-out")
    response.headers.append(context.clear_cookie())
    return response


def token_problem(token: str) -> str:
    """What is wrong with the token as typed, or "" when it may be tried."""
    if not token:
        return "token: is required; paste the token of an environment"
    if len(token) > MAX_TOKEN_CHARS:
        return f"token: must be at most {MAX_TOKEN_CHARS} characters"
    if not all("!" <= character <= "~" for character in token):
        return "token: must be printable ASCII without spaces"
    return ""


def _form(
    context: ConsoleContext,
    request: Request,
    next_path: str,
    *,
    error: str = "",
    notice_key: str = "",
    status: int = 200,
) -> Response:
    cookie = request.cookie or new_cookie_value()
    content = sign_in(
        context.sessions.csrf_token(cookie),
        context.settings.environment_url,
        next_path,
        error=error,
        notice_key=notice_key,
    )
    response = context.page(request, "Sign in", content, status=status)
    if cookie != request.cookie:
        response.headers.append(context.set_cookie(cookie))
    return response


def _refusal(error: StepforgeError, environment_url: str) -> tuple[int, str]:
    if error.code == grpc.StatusCode.UNAUTHENTICATED:
        return 401, (
            "This token is not accepted by the environment: it is unknown or "
            "was revoked."
        )
    if error.code == grpc.StatusCode.PERMISSION_DENIED:
        return 403, f"This token cannot read an environment: {error.message}"
    if error.code == grpc.StatusCode.UNAVAILABLE:
        return (
            503,
            f"The environment at {environment_url} cannot be reached: {error.message}",
        )
    return 502, f"The environment could not check the token: {error.message}"


def _next_path(candidate: str) -> str:
    """Where to go after sign-in: a path of this console, never elsewhere."""
    if candidate and is_local_path(candidate) and not candidate.startswith("/sign-"):
        return candidate
    return HOME
