"""Starting the services: each on its own, or all of them behind one port."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import grpc

from stepforge.services.build.assembly import build_parts
from stepforge.services.config import ServerConfig, load_service_token
from stepforge.services.core.auth import CachingTokenResolver, TokenResolver
from stepforge.services.core.object_store import (
    LocalObjectStore,
    ObjectStore,
    open_object_store,
)
from stepforge.services.core.registry_client import RegistryClient
from stepforge.services.core.server import ServiceParts, add_services, create_server
from stepforge.services.core.tls import (
    TlsSettings,
    server_credentials,
    service_channel_credentials,
)
from stepforge.services.execution.assembly import execution_parts
from stepforge.services.execution.build_client import BuildClient
from stepforge.services.registry.assembly import RegistryParts
from stepforge.v1 import build_pb2, registry_pb2

logger = logging.getLogger(__name__)

SERVICES = ("registry", "build", "execution")
ENVIRONMENT_URL = "STEPFORGE_ENVIRONMENT_URL"
SDK_TOKEN = "STEPFORGE_SDK_TOKEN"
ADMIN_TOKEN = "STEPFORGE_ADMIN_TOKEN"
CA_CERT = "STEPFORGE_CA_CERT"
# A peer that comes back is reconnected within a second, not after gRPC's
# default backoff of up to two minutes.
PEER_CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]
CLIENT_CERT = "STEPFORGE_CLIENT_CERT"
CLIENT_KEY = "STEPFORGE_CLIENT_KEY"
# Only the services may call these, with the service credential.
INTERNAL_SERVICES = frozenset(
    {
        registry_pb2.DESCRIPTOR.services_by_name["RegistryInternalService"].full_name,
        build_pb2.DESCRIPTOR.services_by_name["BuildInternalService"].full_name,
    }
)


@dataclass
class RunningSuite:
    """A started server and what must be closed with it."""

    server: grpc.Server
    port: int
    data_dir: Path
    env_file: Path | None
    _closers: list[Callable[[], None]] = field(default_factory=list)
    _stopped: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self, grace_s: float = 5.0) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.server.stop(grace_s).wait()
        for close in reversed(self._closers):
            close()


def start(config: ServerConfig, services: Sequence[str] = SERVICES) -> RunningSuite:
    """Starts `services` in one server on `config.address`.

    Co-hosted services still reach each other through gRPC, so both layouts run
    the same code: through a second server on a private loopback port, with
    threads of its own, so that a burst of users' calls, each waiting on a
    call to a peer, cannot take every thread those peer calls need.
    """
    unknown = sorted(set(services) - set(SERVICES))
    if unknown:
        raise ValueError(f"unknown services {unknown}; choose from {list(SERVICES)}")
    data_dir = config.data_dir.expanduser()
    service_token = load_service_token(data_dir)
    channels: list[grpc.Channel] = []

    registry_parts = RegistryParts(data_dir) if "registry" in services else None
    if registry_parts is not None:
        resolver: TokenResolver = registry_parts.resolve_user_token
    else:
        remote = _registry_client(
            config.registry_url, service_token, channels, config.tls
        )
        resolver = CachingTokenResolver(remote.authenticate)

    server = create_server(resolver, service_token, INTERNAL_SERVICES)
    port = _listen(server, config.address, config.tls)
    peers = create_server(resolver, service_token, INTERNAL_SERVICES)
    own_url = f"127.0.0.1:{_listen(peers, '127.0.0.1:0', config.tls)}"
    env_file = None
    if registry_parts is not None:
        env_file = _write_environment(registry_parts, data_dir, config, port)

    parts: list[ServiceParts] = [registry_parts] if registry_parts else []
    objects = None
    if "build" in services or "execution" in services:
        objects = open_object_store(config.resolved_object_store_url())
        registry = _registry_client(
            own_url if registry_parts else config.registry_url,
            service_token,
            channels,
            config.tls,
        )
    if "build" in services:
        parts.append(
            build_parts(
                data_dir,
                registry,
                objects,  # type: ignore[arg-type]
                strict_python_version=config.strict_python_version,
                system_site_packages=config.system_site_packages,
                workers=config.build_workers,
                backend_kind=config.build_backend,
                kubernetes=config.kubernetes,
            )
        )
    if "execution" in services:
        build_url = own_url if "build" in services else config.build_url
        parts.append(
            execution_parts(
                data_dir,
                registry,
                _build_client(build_url, service_token, channels, config.tls),
                objects,  # type: ignore[arg-type]
                max_concurrent=config.max_executions,
                gpu_fallback_to_cpu=config.gpu_fallback_to_cpu,
                hidden_roots=_hidden_roots(objects, data_dir),
                backend_kind=config.execution_backend,
                kubernetes=config.kubernetes,
            )
        )

    registrations = [item for part in parts for item in part.registrations]
    add_services(server, registrations)
    add_services(peers, registrations)
    peers.start()
    server.start()
    closers: list[Callable[[], None]] = [partial(_stop, peers)]
    closers += [channel.close for channel in channels]
    closers += [close for part in parts for close in part.closers]
    suite = RunningSuite(server, port, data_dir, env_file, closers)
    logger.info("serving %s on %s:%d", ", ".join(services), config.host, port)
    for part in parts:
        for hook in part.on_started:
            hook()
    return suite


def _hidden_roots(objects: ObjectStore | None, data_dir: Path) -> list[Path]:
    """What steps must not see: the data folder, and a local object store
    wherever it is."""
    roots = [data_dir]
    if isinstance(objects, LocalObjectStore) and data_dir not in objects.root.parents:
        roots.append(objects.root)
    return roots


def _stop(server: grpc.Server) -> None:
    server.stop(1.0).wait()


def _listen(server: grpc.Server, address: str, tls: TlsSettings | None) -> int:
    if tls is not None:
        port = server.add_secure_port(address, server_credentials(tls))
    else:
        port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot listen on {address}")
    return port


def write_env_file(path: Path, values: dict[str, str]) -> None:
    """Writes the variables the SDK reads, readable by the owner only. The
    admin token goes in as STEPFORGE_ADMIN_TOKEN, for changing project
    settings on a machine where one person is every role."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.writelines(f"{key}={value}\n" for key, value in values.items())


def read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip():
            values[key.strip()] = value.strip()
    return values


def _write_environment(
    parts: RegistryParts, data_dir: Path, config: ServerConfig, port: int
) -> Path:
    """Writes `<data_dir>/env`: this server's address and the default
    environment's tokens, made on first start (or again if the file is lost)."""
    env_file = data_dir / "env"
    previous = read_env_file(env_file) if env_file.exists() else {}
    have_tokens = {SDK_TOKEN, ADMIN_TOKEN} <= previous.keys()
    made = parts.bootstrap(have_tokens)
    if made is not None:
        previous[SDK_TOKEN], previous[ADMIN_TOKEN] = made
    address = f"{_advertised_host(config.host)}:{port}"
    values = {
        ENVIRONMENT_URL: f"grpcs://{address}" if config.tls else address,
        SDK_TOKEN: previous[SDK_TOKEN],
        ADMIN_TOKEN: previous[ADMIN_TOKEN],
    }
    if config.tls is not None:
        files = config.tls.files
        values[CA_CERT] = str(files.ca_cert)
        if config.tls.require_client_certs and files.user_cert and files.user_key:
            values[CLIENT_CERT] = str(files.user_cert)
            values[CLIENT_KEY] = str(files.user_key)
    write_env_file(env_file, values)
    return env_file


def _advertised_host(host: str) -> str:
    return "127.0.0.1" if host in ("", "0.0.0.0", "::", "[::]") else host


def _registry_client(
    url: str | None,
    service_token: str,
    channels: list[grpc.Channel],
    tls: TlsSettings | None,
) -> RegistryClient:
    if not url:
        raise ValueError("registry_url is required when the registry runs elsewhere")
    return RegistryClient(_peer_channel(url, channels, tls), url, service_token)


def _build_client(
    url: str | None,
    service_token: str,
    channels: list[grpc.Channel],
    tls: TlsSettings | None,
) -> BuildClient:
    if not url:
        raise ValueError("build_url is required when the build service runs elsewhere")
    return BuildClient(_peer_channel(url, channels, tls), url, service_token)


def _peer_channel(
    url: str, channels: list[grpc.Channel], tls: TlsSettings | None
) -> grpc.Channel:
    """A channel to another service, over TLS whenever this server uses it."""
    if tls is None:
        channel = grpc.insecure_channel(url, PEER_CHANNEL_OPTIONS)
    else:
        channel = grpc.secure_channel(
            url, service_channel_credentials(tls), PEER_CHANNEL_OPTIONS
        )
    channels.append(channel)
    return channel
