"""A gRPC server with what every Stepforge server has: authentication, error
translation, health checks and reflection."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from stepforge.services.core.auth import AuthInterceptor, TokenResolver
from stepforge.services.core.error_translation import ErrorTranslationInterceptor
from stepforge.services.core.limits import CHUNK_BYTES
from stepforge.services.core.request_parsing import RequestParsingInterceptor

# A chunk plus its envelope must fit; nothing else is larger.
MAX_MESSAGE_BYTES = 4 * CHUNK_BYTES
MAX_CONCURRENT_RPCS = 1000


@dataclass(frozen=True)
class Registration:
    """One servicer: how to add it, and the full gRPC service name it serves."""

    add: Callable[[grpc.Server], None]
    service_name: str


@dataclass
class ServiceParts:
    """What one service adds to a server: its servicers, what to run once the
    server listens (recovery of work in flight), and what to close on stop."""

    registrations: list[Registration] = field(default_factory=list)
    on_started: list[Callable[[], None]] = field(default_factory=list)
    closers: list[Callable[[], None]] = field(default_factory=list)


def create_server(
    resolve_user_token: TokenResolver,
    service_token: str,
    service_only: frozenset[str],
    *,
    max_workers: int = 32,
    max_concurrent_rpcs: int = MAX_CONCURRENT_RPCS,
) -> grpc.Server:
    """Builds a server with no services yet; bind it, then `add_services`."""
    return grpc.server(
        ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="rpc"),
        # Past this many calls in flight a server answers RESOURCE_EXHAUSTED
        # at once, rather than queueing without bound.
        maximum_concurrent_rpcs=max_concurrent_rpcs,
        interceptors=[
            ErrorTranslationInterceptor(),
            AuthInterceptor(resolve_user_token, service_token, service_only),
            RequestParsingInterceptor(),
        ],
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),
        ],
    )


def add_services(server: grpc.Server, registrations: Sequence[Registration]) -> None:
    """Adds the servicers, then health checks and reflection covering them."""
    for registration in registrations:
        registration.add(server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [registration.service_name for registration in registrations]
    for name in [*names, ""]:
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        [*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server
    )
