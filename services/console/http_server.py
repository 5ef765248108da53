"""The HTTP side: parsing requests for the app, writing its responses with
the security headers every answer carries, and TLS when asked for."""

from __future__ import annotations

import logging
import re
import socket
import ssl
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from stepforge.services.console.web import Request, Response

logger = logging.getLogger(__name__)

MAX_FORM_BYTES = 16 * 1024
MAX_FIELDS = 20
# How long a connection may stay silent, reading or writing, before it is
# dropped, so a stalled client cannot hold a thread for good.
SOCKET_TIMEOUT_S = 60.0
SECURITY_HEADERS = (
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
        "base-uri 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "same-origin"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
)
# The cookie holds ids the console made: URL-safe base64 of 32 random bytes.
_COOKIE_VALUE = re.compile(r"[A-Za-z0-9_-]{16,128}")
# Errors that mean the browser went away while an answer was being written.
_GONE = (BrokenPipeError, ConnectionResetError, TimeoutError, ssl.SSLError)

App = Callable[[Request], Response]


class ConsoleHttpServer(ThreadingHTTPServer):
    """One thread per connection; TLS, when given, is negotiated in that
    thread, so a slow handshake never holds up the others."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        app: App,
        cookie_name: str,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.app = app
        self.cookie_name = cookie_name
        self.tls = tls
        super().__init__(address, _RequestHandler)

    def get_request(self) -> tuple[Any, Any]:
        connection, client = super().get_request()
        if self.tls is not None:
            connection = self.tls.wrap_socket(
                connection, server_side=True, do_handshake_on_connect=False
            )
        return connection, client

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.exception("the console failed to answer %s", client_address[0])


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    """A server context presenting `cert`, TLS 1.2 at least."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


class _RequestHandler(BaseHTTPRequestHandler):
    server: ConsoleHttpServer
    protocol_version = "HTTP/1.1"
    server_version = "StepforgeConsole"
    sys_version = ""
    timeout = SOCKET_TIMEOUT_S

    def handle(self) -> None:
        if isinstance(self.connection, ssl.SSLSocket):
            try:
                self.connection.do_handshake()
            except (OSError, ssl.SSLError) as error:
                logger.debug("a TLS handshake failed: %s", error)
                return
        super().handle()

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        logger.debug("%s %s %s", self.command, urlsplit(self.path).path, code)

    def log_error(self, format: str, *args: Any) -> None:
        logger.warning("a malformed request: %s", format % args)

    def _serve(self, method: str) -> None:
        request = self._parse(method)
        if isinstance(request, Response):
            response = request
        else:
            try:
                response = self.server.app(request)
            except Exception:
                logger.exception("the console failed on %s %s", method, request.path)
                response = _plain(500, "The console failed; its log says why.")
        self._write(response)

    def _parse(self, method: str) -> Request | Response:
        target = urlsplit(self.path)
        try:
            query = _fields(target.query)
        except ValueError as error:
            return _plain(400, f"query: {error}")
        form: dict[str, str] = {}
        if method == "POST":
            body = self._form_body()
            if isinstance(body, Response):
                return body
            try:
                form = _fields(body)
            except ValueError as error:
                return _plain(400, f"form: {error}")
        headers = {"last-event-id": self.headers.get("Last-Event-ID", "")}
        return Request(
            method=method,
            path=target.path,
            query=query,
            form=form,
            headers=headers,
            cookie=_cookie(
                self.headers.get_all("Cookie") or [], self.server.cookie_name
            ),
        )

    def _form_body(self) -> str | Response:
        content_type = self.headers.get("Content-Type", "").split(";")[0].strip()
        if content_type != "application/x-www-form-urlencoded":
            return _plain(
                415, "Content-Type: must be application/x-www-form-urlencoded"
            )
        length_text = self.headers.get("Content-Length", "")
        if not length_text.isascii() or not length_text.isdigit():
            return _plain(411, "Content-Length: is required")
        length = int(length_text)
        if length > MAX_FORM_BYTES:
            self.close_connection = True
            return _plain(413, f"form: must be at most {MAX_FORM_BYTES} bytes")
        try:
            return self.rfile.read(length).decode("utf-8")
        except UnicodeDecodeError:
            return _plain(400, "form: must be UTF-8")

    def _write(self, response: Response) -> None:
        self.send_response(response.status)
        for name, value in SECURITY_HEADERS:
            self.send_header(name, value)
        self.send_header("Content-Type", response.content_type)
        names = {name.lower() for name, _ in response.headers}
        if "cache-control" not in names:
            self.send_header("Cache-Control", "no-store")
        for name, value in response.headers:
            self.send_header(name, value)
        if isinstance(response.body, bytes):
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            self._send_all([response.body])
            return
        if "content-length" not in names:
            # The end of a body of unknown length is the end of the connection.
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self._send_all(response.body)

    def _send_all(self, chunks: Iterable[bytes]) -> None:
        try:
            for chunk in chunks:
                self.wfile.write(chunk)
                self.wfile.flush()
        except _GONE as error:
            logger.debug("a browser went away during %s: %s", self.path, error)
            self.close_connection = True
        except Exception:
            # Headers are out: a body cut short is all the browser can learn.
            logger.exception("an answer to %s broke off", urlsplit(self.path).path)
            self.close_connection = True
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()


def _fields(text: str) -> dict[str, str]:
    pairs = parse_qsl(
        text, keep_blank_values=True, strict_parsing=False, max_num_fields=MAX_FIELDS
    )
    fields: dict[str, str] = {}
    for key, value in pairs:
        fields.setdefault(key, value)
    return fields


def _cookie(headers: list[str], name: str) -> str | None:
    """The value of the console's cookie; None when absent or malformed."""
    for header in headers:
        for part in header.split(";"):
            key, _, value = part.strip().partition("=")
            if key == name and _COOKIE_VALUE.fullmatch(value):
                return value
    return None


def _plain(status: int, message: str) -> Response:
    return Response(status, (message + "\n").encode(), "text/plain; charset=utf-8")
