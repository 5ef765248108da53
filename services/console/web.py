"""Requests and responses as the console's routes see them, apart from the
HTTP server that parses and writes them."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import quote

from stepforge.services.console.markup import Html
from stepforge.services.console.sessions import Session

HTML_TYPE = "text/html; charset=utf-8"
JSON_TYPE = "application/json"


@dataclass
class Request:
    """A parsed request; `form` holds a POST's urlencoded fields."""

    method: str
    path: str
    query: Mapping[str, str] = field(default_factory=dict)
    form: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    # The value of the console's cookie, a session id or a visitor id.
    cookie: str | None = None
    # Set once the cookie was found to name a live session.
    session: Session | None = None

    @property
    def target(self) -> str:
        """The path with its query, as the browser asked for it."""
        if not self.query:
            return self.path
        return f"{self.path}?{_query_string(self.query)}"


@dataclass
class Response:
    """What to send: a body in one piece, or chunks sent as they come."""

    status: int
    body: bytes | Iterable[bytes] = b""
    content_type: str = HTML_TYPE
    headers: list[tuple[str, str]] = field(default_factory=list)


def html_response(page: Html, status: int = 200) -> Response:
    return Response(status, page.text.encode("utf-8"))


def json_response(value: object, status: int = 200) -> Response:
    return Response(status, json.dumps(value).encode("utf-8"), JSON_TYPE)


def redirect(location: str, status: int = 303) -> Response:
    """A redirect to a path of this console; 303 turns a POST into a GET."""
    return Response(status, b"", "text/plain", [("Location", location)])


def path_to(*segments: str, query: Mapping[str, str] | None = None) -> str:
    """A console path of quoted segments, such as `/steps/<name>`."""
    path = "/" + "/".join(quote(segment, safe="") for segment in segments)
    kept = {key: value for key, value in (query or {}).items() if value}
    if kept:
        path += "?" + _query_string(kept)
    return path


def is_local_path(target: str) -> bool:
    """Whether `target` is a path on this console, safe to redirect to after
    sign-in: one leading slash, no scheme, no host, no backslash."""
    return (
        target.startswith("/")
        and not target.startswith("//")
        and "\\" not in target
        and not any(ord(character) < 0x20 for character in target)
    )


def _query_string(query: Mapping[str, str]) -> str:
    return "&".join(
        f"{quote(key, safe='')}={quote(value, safe='')}" for key, value in query.items()
    )
