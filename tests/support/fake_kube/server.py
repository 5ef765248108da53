"""The HTTP side of the fake API server: routes, bearer-token auth, JSON and
chunked streams for watches and log follows."""

from __future__ import annotations

import hmac
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .api import ClusterApi, Query
from .errors import ApiError, failure_status
from .kinds import Kind, kind_at
from .logs import LogQuery
from .meta import Obj, parse_time
from .nodes import KUBELET_VERSION
from .selectors import field_selector, label_selector

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
_VERSION = {
    "major": "1",
    "minor": "33",
    "gitVersion": KUBELET_VERSION,
    "gitCommit": "",
    "gitTreeState": "clean",
    "buildDate": "2025-01-01T00:00:00Z",
    "goVersion": "",
    "compiler": "gc",
    "platform": "linux/amd64",
}


class ApiServer:
    """Serves a ClusterApi over HTTP on a free loopback port."""

    def __init__(self, api: ClusterApi, token: str) -> None:
        self._httpd = _HttpServer((LOOPBACK, 0), _Handler)
        self._httpd.api = api
        self._httpd.token = token
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="fake-kube-apiserver",
            daemon=True,
        )

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self._httpd.server_address[1]}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stops serving and drops open connections (watches, log follows)."""
        self._httpd.stopping.set()
        self._httpd.shutdown()
        self._httpd.drop_connections()
        self._httpd.server_close()
        self._thread.join()


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    # Client pools open several connections at once.
    request_queue_size = 64
    api: ClusterApi
    token: str

    def __init__(self, address: tuple[str, int], handler: Any) -> None:
        super().__init__(address, handler)
        self.stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that drops its connection is no error of the server's.
        logger.debug(
            "fake API server: connection from %s failed", client_address, exc_info=True
        )

    def drop_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _ClientGone(Exception):
    """The client closed the connection mid-stream."""


@dataclass(frozen=True)
class _Route:
    kind: Kind
    namespace: str | None
    name: str | None
    subresource: str | None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HttpServer

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    def _handle(self, method: str) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            if not self._authorized():
                raise ApiError("Unauthorized", "Unauthorized")
            self._dispatch(method, body)
        except ApiError as error:
            self._send_json(error.code, error.status())
        except _ClientGone:
            self.close_connection = True
        except Exception as error:
            logger.exception("fake API server: %s %s failed", method, self.path)
            message = f"the fake API server failed: {type(error).__name__}: {error}"
            self._send_json(500, failure_status(500, "InternalError", message))

    def _authorized(self) -> bool:
        given = self.headers.get("Authorization") or ""
        expected = f"Bearer {self.server.token}"
        return hmac.compare_digest(given.encode(), expected.encode())

    def _dispatch(self, method: str, raw_body: bytes) -> None:
        url = urlsplit(self.path)
        params = {key: values[-1] for key, values in parse_qs(url.query).items()}
        if url.path.rstrip("/") == "/version":
            self._send_json(200, _VERSION)
            return
        route = _route(url.path)
        if method in ("PUT", "PATCH"):
            raise ApiError(
                "MethodNotAllowed", f"the fake cluster does not emulate {method}"
            )
        if route.name is None:
            self._collection(method, route, params, raw_body)
        else:
            self._item(method, route, route.name, params, raw_body)

    def _collection(
        self, method: str, route: _Route, params: dict[str, str], raw_body: bytes
    ) -> None:
        api = self.server.api
        if method == "GET":
            self._list_or_watch(route, params)
        elif method == "POST":
            if route.namespace is None and route.kind.namespaced:
                raise ApiError("MethodNotAllowed", "create needs a namespace path")
            body = _json(raw_body)
            dry_run = bool(params.get("dryRun"))
            namespace = route.namespace or ""
            self._send_json(201, api.create(route.kind, namespace, body, dry_run))
        elif method == "DELETE":
            policy, grace, _ = _delete_options(params, raw_body)
            query = _query(route, params)
            listed = api.delete_collection(route.kind, query, policy, grace)
            self._send_json(200, listed)
        else:
            raise ApiError("MethodNotAllowed", f"{method} {self.path} is not served")

    def _item(
        self,
        method: str,
        route: _Route,
        name: str,
        params: dict[str, str],
        raw_body: bytes,
    ) -> None:
        api = self.server.api
        namespace = route.namespace or ""
        if method == "GET" and route.subresource in (None, "status"):
            self._send_json(200, api.read(route.kind, namespace, name))
        elif (
            method == "GET" and route.subresource == "log" and route.kind.name == "Pod"
        ):
            self._log(namespace, name, params)
        elif method == "DELETE" and route.subresource is None:
            policy, grace, dry_run = _delete_options(params, raw_body)
            answer = api.delete(route.kind, namespace, name, policy, grace, dry_run)
            self._send_json(200, answer)
        else:
            raise ApiError("MethodNotAllowed", f"{method} {self.path} is not served")

    def _list_or_watch(self, route: _Route, params: dict[str, str]) -> None:
        api = self.server.api
        query = _query(route, params)
        if not _flag(params.get("watch")):
            self._send_json(200, api.list_objects(route.kind, query))
            return
        timeout = params.get("timeoutSeconds")
        events = api.watch(
            route.kind,
            query,
            params.get("resourceVersion"),
            float(_number(timeout, "timeoutSeconds")) if timeout else None,
            self.server.stopping.is_set,
        )
        self._stream(
            "application/json", (json.dumps(e).encode() + b"\n" for e in events)
        )

    def _log(self, namespace: str, name: str, params: dict[str, str]) -> None:
        log = self.server.api.container_log(
            namespace, name, params.get("container"), _flag(params.get("previous"))
        )
        query = LogQuery(
            stream=params.get("stream", "All"),
            since_ns=_since_ns(params),
            tail_lines=_optional_number(params.get("tailLines"), "tailLines"),
        )
        timestamps = _flag(params.get("timestamps"))
        limit = _optional_number(params.get("limitBytes"), "limitBytes")
        if _flag(params.get("follow")):
            lines = log.follow(query, self.server.stopping.is_set)
            chunks = (line.render(timestamps) for line in lines)
            self._stream("text/plain", _limited(chunks, limit))
            return
        data = b"".join(line.render(timestamps) for line in log.read(query))
        self._send(200, "text/plain", data[:limit] if limit is not None else data)

    def _send_json(self, code: int, obj: Obj) -> None:
        self._send(code, "application/json", json.dumps(obj).encode())

    def _send(self, code: int, content_type: str, data: bytes) -> None:
        try:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _stream(self, content_type: str, chunks: Iterator[bytes]) -> None:
        """Sends `chunks` as they come, with chunked transfer encoding."""
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            self.wfile.flush()
            for chunk in chunks:
                if chunk:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError as error:
            raise _ClientGone() from error
        except Exception:
            # Too late for an error status: the response has begun.
            logger.exception("fake API server: stream of %s failed", self.path)
            self.close_connection = True


def _route(path: str) -> _Route:
    segments = [segment for segment in path.split("/") if segment]
    if segments[:2] == ["api", "v1"]:
        api_version, rest = "v1", segments[2:]
    elif len(segments) >= 3 and segments[0] == "apis":
        api_version, rest = f"{segments[1]}/{segments[2]}", segments[3:]
    else:
        raise _not_served(path)
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    if not rest or len(rest) > 3:
        raise _not_served(path)
    kind = kind_at(api_version, rest[0])
    if kind is None or (namespace is not None and not kind.namespaced):
        raise _not_served(path)
    name = rest[1] if len(rest) > 1 else None
    if kind.namespaced and name is not None and namespace is None:
        raise _not_served(path)
    return _Route(kind, namespace, name, rest[2] if len(rest) > 2 else None)


def _query(route: _Route, params: dict[str, str]) -> Query:
    labels = label_selector(params.get("labelSelector"))
    fields = field_selector(route.kind.name, params.get("fieldSelector"))
    return Query(route.namespace, lambda obj: labels(obj) and fields(obj))


def _delete_options(
    params: dict[str, str], raw_body: bytes
) -> tuple[str | None, int | None, bool]:
    """Propagation policy, grace period and dry run, from the query or a
    DeleteOptions body."""
    options = _json(raw_body) if raw_body.strip() else {}
    policy = params.get("propagationPolicy") or options.get("propagationPolicy")
    orphan = params.get("orphanDependents", options.get("orphanDependents"))
    if policy is None and orphan is not None:
        policy = "Orphan" if _flag(str(orphan)) else "Background"
    grace = params.get("gracePeriodSeconds", options.get("gracePeriodSeconds"))
    grace_s = None if grace is None else _number(str(grace), "gracePeriodSeconds")
    dry_run = bool(params.get("dryRun") or options.get("dryRun"))
    return policy, grace_s, dry_run


def _json(raw: bytes) -> Obj:
    try:
        decoded = json.loads(raw or b"null")
    except ValueError as error:
        raise ApiError("BadRequest", f"the request body is not JSON: {error}") from None
    if not isinstance(decoded, dict):
        raise ApiError("BadRequest", "the request body must be a JSON object")
    return decoded


def _flag(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1")


def _number(text: str, name: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ApiError("BadRequest", f"{name} {text!r} is not an integer") from None


def _optional_number(text: str | None, name: str) -> int | None:
    return None if text is None else _number(text, name)


def _since_ns(params: dict[str, str]) -> int | None:
    if params.get("sinceSeconds"):
        seconds = _number(params["sinceSeconds"], "sinceSeconds")
        return time.time_ns() - seconds * 1_000_000_000
    if params.get("sinceTime"):
        try:
            return int(parse_time(params["sinceTime"]) * 1_000_000_000)
        except ValueError:
            raise ApiError(
                "BadRequest", f"sinceTime {params['sinceTime']!r} is not RFC 3339"
            ) from None
    return None


def _limited(chunks: Iterator[bytes], limit: int | None) -> Iterator[bytes]:
    sent = 0
    for chunk in chunks:
        if limit is not None and sent + len(chunk) >= limit:
            yield chunk[: limit - sent]
            return
        sent += len(chunk)
        yield chunk


def _not_served(path: str) -> ApiError:
    return ApiError(
        "NotFound", f"the server could not find the requested resource ({path})"
    )
