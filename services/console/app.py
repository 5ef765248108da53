"""Dispatching a request: static files, the session, CSRF, the route, and
the suite's refusals turned into pages."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import quote, unquote

import grpc

from stepforge.errors import StepforgeError
from stepforge.services.console.context import ConsoleContext
from stepforge.services.console.failures import failure_of
from stepforge.services.console.web import Request, Response, json_response, redirect

logger = logging.getLogger(__name__)

_STATIC = re.compile(r"/static/(?P<name>[A-Za-z0-9_.-]+)")


# Called with the context, the request, and the named parts of the path.
Handler = Callable[..., Response]


@dataclass(frozen=True)
class Route:
    """One URL: its method, its pattern with named parts, and its handler.

    A page route (pages, downloads) answers a stranger with a redirect to
    sign-in and a refusal with an error page; a data route (live logs,
    status) answers both with a status and a JSON body, which is what the
    page's script can use.
    """

    method: str
    pattern: re.Pattern[str]
    handler: Handler
    signed_in: bool = True
    page: bool = True


class ConsoleApp:
    """Answers each request through the first route that matches it."""

    def __init__(self, context: ConsoleContext, routes: Sequence[Route]) -> None:
        self._context = context
        self._routes = routes

    def handle(self, request: Request) -> Response:
        if request.method == "GET":
            static = _STATIC.fullmatch(request.path)
            if static:
                found = self._context.assets.response(static["name"])
                return found or self._context.error(request, 404, "Not found", "")
        if request.cookie:
            request.session = self._context.sessions.get(request.cookie)

        route, params = self._match(request)
        if route is None:
            return self._unrouted(request, params.get("allowed", ""))
        if route.signed_in and request.session is None:
            return self._stranger(request, route)
        if request.method == "POST" and not self._context.sessions.csrf_matches(
            request.cookie, request.form.get("csrf")
        ):
            logger.warning("refused a POST to %s without its CSRF token", request.path)
            return self._context.error(
                request,
                403,
                "The form has expired",
                "This form does not carry the security token of your current "
                "session. Reload the page and try again.",
            )
        try:
            return route.handler(self._context, request, **params)
        except StepforgeError as error:
            return self._refused(request, route, error)

    def _match(self, request: Request) -> tuple[Route | None, dict[str, str]]:
        allowed = []
        for route in self._routes:
            found = route.pattern.fullmatch(request.path)
            if found is None:
                continue
            if route.method != request.method:
                allowed.append(route.method)
                continue
            return route, {
                key: unquote(value) for key, value in found.groupdict().items()
            }
        return None, {"allowed": ", ".join(allowed)}

    def _stranger(self, request: Request, route: Route) -> Response:
        if not route.page:
            return json_response({"error": "sign in first", "signIn": True}, 401)
        destination = "/sign-in"
        if request.method == "GET" and request.path != "/":
            destination += "?next=" + quote(request.target, safe="")
        return redirect(destination)

    def _refused(
        self, request: Request, route: Route, error: StepforgeError
    ) -> Response:
        failure = failure_of(error, self._context.settings.environment_url)
        if error.code == grpc.StatusCode.UNAUTHENTICATED and request.cookie:
            # The token was revoked since sign-in: the session is worth nothing.
            self._context.sessions.end(request.cookie)
            request.session = None
            if route.page:
                response = redirect("/sign-in?notice=token-rejected")
                response.headers.append(self._context.clear_cookie())
                return response
        logger.info(
            "%s %s: the environment answered %s",
            request.method,
            request.path,
            error.code.name if error.code else "an error",
        )
        if not route.page:
            body = {
                "error": failure.message,
                "signIn": error.code == grpc.StatusCode.UNAUTHENTICATED,
            }
            return json_response(body, failure.status)
        return self._context.error(
            request, failure.status, failure.title, failure.message
        )

    def _unrouted(self, request: Request, allowed: str) -> Response:
        """404 for a path no route knows, 405 for a method it does not take."""
        if allowed:
            response = self._context.error(
                request,
                405,
                "Method not allowed",
                f"This address answers {allowed} only.",
            )
            response.headers.append(("Allow", allowed))
            return response
        return self._context.error(request, 404, "Not found", "There is no page here.")
