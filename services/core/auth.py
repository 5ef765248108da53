"""Bearer-token authentication on every server, and who the current caller is.

Users present an environment token; the services present the shared service
credential to each other. Health checks and reflection answer without a token
so that probes and tools such as grpcurl can find their way.
"""

from __future__ import annotations

import contextvars
import hmac
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc

from stepforge.services.core.errors import PermissionDenied, Unauthenticated
from stepforge.services.core.handlers import Handler, HandlerInterceptor, wrap_handler
from stepforge.v1 import common_pb2

OPEN_SERVICES = frozenset(
    {
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
    }
)

SERVICE_PRINCIPAL_PROJECT = "_service"


@dataclass(frozen=True)
class Principal:
    """Who a call speaks for: a user of one environment, a project's admin, or
    another service."""

    project: str
    environment: str
    admin: bool = False
    limits: common_pb2.ExecutionLimits = field(
        default_factory=common_pb2.ExecutionLimits, compare=False
    )

    @property
    def is_service(self) -> bool:
        return self.project == SERVICE_PRINCIPAL_PROJECT


SERVICE_PRINCIPAL = Principal(SERVICE_PRINCIPAL_PROJECT, "")

_current: contextvars.ContextVar[Principal] = contextvars.ContextVar("principal")

TokenResolver = Callable[[str], Principal]


def current_principal() -> Principal:
    """The caller of the RPC being served; only valid inside a handler."""
    return _current.get()


def current_environment() -> str:
    """The environment the caller works in; an admin token has none, since it
    manages its project's settings and nothing else."""
    principal = _current.get()
    if principal.admin or not principal.environment:
        raise PermissionDenied(
            "authorization: a project admin token manages project settings; "
            "use an environment token for steps, pipelines and executions"
        )
    return principal.environment


def require_admin() -> Principal:
    """The caller, when it holds its project's admin token."""
    principal = _current.get()
    if not principal.admin:
        raise PermissionDenied(
            "authorization: only a project admin token can change project settings"
        )
    return principal


def bearer_metadata(token: str) -> tuple[tuple[str, str]]:
    """The call metadata that presents `token`."""
    return (("authorization", f"Bearer {token}"),)


def bearer_token(metadata: Iterable[tuple[str, Any]]) -> str | None:
    for key, value in metadata:
        if key == "authorization" and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


class AuthInterceptor(HandlerInterceptor):
    """Rejects calls without a valid token and records the caller.

    Methods of `service_only` services accept only the service credential; all
    other methods accept only user tokens, resolved by `resolve_user_token`.
    """

    def __init__(
        self,
        resolve_user_token: TokenResolver,
        service_token: str,
        service_only: frozenset[str] = frozenset(),
    ) -> None:
        self._resolve_user_token = resolve_user_token
        self._service_token = service_token.encode()
        self._service_only = service_only

    def wrap(self, handler: Handler, method: str) -> Handler:
        service = method.lstrip("/").rpartition("/")[0]
        if service in OPEN_SERVICES:
            return handler
        needs_service = service in self._service_only

        @contextmanager
        def authenticated(context: grpc.ServicerContext) -> Iterator[None]:
            token = bearer_token(context.invocation_metadata())
            if token is None:
                raise Unauthenticated(
                    "authorization: a bearer token is required "
                    "(metadata 'authorization: Bearer <token>')"
                )
            reset = _current.set(self._principal_for(token, needs_service))
            try:
                yield
            finally:
                _current.reset(reset)

        return wrap_handler(handler, authenticated)

    def _principal_for(self, token: str, needs_service: bool) -> Principal:
        is_service = hmac.compare_digest(token.encode(), self._service_token)
        if needs_service:
            if not is_service:
                # An unknown or revoked token is UNAUTHENTICATED here as
                # anywhere; only a valid user token is told it may not.
                self._resolve_user_token(token)
                raise PermissionDenied(
                    "authorization: this service is for Stepforge services only"
                )
            return SERVICE_PRINCIPAL
        if is_service:
            raise PermissionDenied(
                "authorization: the service credential cannot act as a user"
            )
        return self._resolve_user_token(token)


class CachingTokenResolver:
    """Remembers successful resolutions for a short time.

    A peer service asks the registry once per token per `ttl_s`; a revoked
    token therefore keeps working on peers for at most that long.
    """

    def __init__(self, resolve: TokenResolver, ttl_s: float = 10.0) -> None:
        self._resolve = resolve
        self._ttl_s = ttl_s
        self._cache: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    def __call__(self, token: str) -> Principal:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(token)
        if hit is not None and now - hit[0] < self._ttl_s:
            return hit[1]
        principal = self._resolve(token)
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[token] = (now, principal)
        return principal
