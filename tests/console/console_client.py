"""A browser stand-in for the console's HTTP tests: cookies, CSRF tokens
taken from forms, and redirects left for the test to look at."""

from __future__ import annotations

import re
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from email.message import Message

_CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


@dataclass
class Reply:
    status: int
    headers: Message
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    @property
    def location(self) -> str:
        return self.headers.get("Location", "")

    def csrf(self) -> str:
        found = _CSRF.search(self.text)
        assert found, "the page holds no form with a CSRF token"
        return found.group(1)


class _KeepRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


class ConsoleClient:
    """One browser: it keeps the console's cookie as browsers do."""

    def __init__(self, base_url: str, ssl_context: ssl.SSLContext | None = None):
        self.base_url = base_url
        self.cookie: str | None = None
        self.cookie_name = ""
        handlers: list[urllib.request.BaseHandler] = [_KeepRedirects()]
        if ssl_context is not None:
            handlers.append(urllib.request.HTTPSHandler(context=ssl_context))
        self._opener = urllib.request.build_opener(*handlers)

    def get(self, path: str, headers: dict[str, str] | None = None) -> Reply:
        return self._send(
            urllib.request.Request(self.base_url + path, headers=headers or {})
        )

    def post(self, path: str, fields: dict[str, str]) -> Reply:
        body = urllib.parse.urlencode(fields).encode()
        request = urllib.request.Request(
            self.base_url + path,
            data=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            method="POST",
        )
        return self._send(request)

    def sign_in(self, token: str, next_path: str = "") -> Reply:
        """Opens the sign-in page and sends its form with `token`."""
        form = self.get("/sign-in")
        fields = {"csrf": form.csrf(), "token": token}
        if next_path:
            fields["next"] = next_path
        return self.post("/sign-in", fields)

    def csrf(self) -> str:
        """The CSRF token of the current session, as its pages carry it."""
        return self.get("/steps").csrf()

    def _send(self, request: urllib.request.Request) -> Reply:
        if self.cookie is not None:
            request.add_header("Cookie", f"{self.cookie_name}={self.cookie}")
        try:
            with self._opener.open(request, timeout=30) as response:
                reply = Reply(response.status, response.headers, response.read())
        except urllib.error.HTTPError as error:
            reply = Reply(error.code, error.headers, error.read())
        self._keep_cookie(reply)
        return reply

    def _keep_cookie(self, reply: Reply) -> None:
        for header in reply.headers.get_all("Set-Cookie") or []:
            pair = header.split(";")[0]
            name, _, value = pair.partition("=")
            self.cookie_name = name
            self.cookie = value or None
            if "Max-Age=0" in header:
                self.cookie = None
