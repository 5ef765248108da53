"""Starting the services: each on its own, or all of them behind one port."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from stepforge.services.build.assembly import build_parts
from stepforge.services.config import ServerConfig, load_service_token
from stepforge.services.core.auth import CachingTokenResolver, TokenResolver
from stepforge.services.core.object_store import open_object_store
from stepforge.services.core.registry_client import RegistryClient
from stepforge.services.core.server import ServiceParts, add_services, create_server
from stepforge.services.execution.assembly import execution_parts
from stepforge.services.execution.build_client import BuildClient
from stepforge.services.registry.assembly import RegistryParts
from stepforge.v1 import build_pb2, registry_pb2

logger = logging.getLogger(__name__)

SERVICES = ("registry", "build", "execution")
ENVIRONMENT_URL = "STEPFORGE_ENVIRONMENT_URL"
SDK_TOKEN = "STEPFORGE_SDK_TOKEN"
ADMIN_TOKEN = "STEPFORGE_ADMIN_TOKEN"
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

    def wait(self) -> None:
        self.server.wait_for_termination()


def start(config: ServerConfig, services: Sequence[str] = SERVICES) -> RunningSuite:
    """Starts `services` in one server on `config.address`.

    Co-hosted services still reach each other through gRPC on this server's
    own port, so both layouts run the same code.
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
        remote = _registry_client(config.registry_url, service_token, channels)
        resolver = CachingTokenResolver(remote.authenticate)

    server = create_server(resolver, service_token, INTERNAL_SERVICES)
    port = server.add_insecure_port(config.address)
    if port == 0:
        raise OSError(f"cannot listen on {config.address}")
    own_url = f"127.0.0.1:{port}"
    env_file = None
    if registry_parts is not None:
        env_file = _write_environment(registry_parts, data_dir, config.host, port)

    parts: list[ServiceParts] = [registry_parts] if registry_parts else []
    objects = None
    if "build" in services or "execution" in services:
        objects = open_object_store(config.resolved_object_store_url())
        registry = _registry_client(
            own_url if registry_parts else config.registry_url, service_token, channels
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
            )
        )
    if "execution" in services:
        build_url = own_url if "build" in services else config.build_url
        parts.append(
            execution_parts(
                data_dir,
                registry,
                _build_client(build_url, service_token, channels),
                objects,  # type: ignore[arg-type]
                max_concurrent=config.max_executions,
                gpu_fallback_to_cpu=config.gpu_fallback_to_cpu,
            )
        )

    add_services(server, [item for part in parts for item in part.registrations])
    server.start()
    closers = [channel.close for channel in channels]
    closers += [close for part in parts for close in part.closers]
    suite = RunningSuite(server, port, data_dir, env_file, closers)
    logger.info("serving %s on %s:%d", ", ".join(services), config.host, port)
    for part in parts:
        for hook in part.on_started:
            hook()
    return suite


def write_env_file(path: Path, url: str, token: str, admin_token: str) -> None:
    """Writes the variables the SDK reads, readable by the owner only. The
    admin token goes in as STEPFORGE_ADMIN_TOKEN, for changing project
    settings on a machine where one person is every role."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(
            f"{ENVIRONMENT_URL}={url}\n{SDK_TOKEN}={token}\n{ADMIN_TOKEN}={admin_token}\n"
        )


def read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip():
            values[key.strip()] = value.strip()
    return values


def _write_environment(
    parts: RegistryParts, data_dir: Path, host: str, port: int
) -> Path:
    """Writes `<data_dir>/env`: this server's address and the default
    environment's tokens, made on first start (or again if the file is lost)."""
    env_file = data_dir / "env"
    previous = read_env_file(env_file) if env_file.exists() else {}
    have_tokens = {SDK_TOKEN, ADMIN_TOKEN} <= previous.keys()
    made = parts.bootstrap(have_tokens)
    if made is not None:
        previous[SDK_TOKEN], previous[ADMIN_TOKEN] = made
    write_env_file(
        env_file,
        f"{_advertised_host(host)}:{port}",
        previous[SDK_TOKEN],
        previous[ADMIN_TOKEN],
    )
    return env_file


def _advertised_host(host: str) -> str:
    return "127.0.0.1" if host in ("", "0.0.0.0", "::", "[::]") else host


def _registry_client(
    url: str | None, service_token: str, channels: list[grpc.Channel]
) -> RegistryClient:
    if not url:
        raise ValueError("registry_url is required when the registry runs elsewhere")
    channel = grpc.insecure_channel(url)
    channels.append(channel)
    return RegistryClient(channel, url, service_token)


def _build_client(
    url: str | None, service_token: str, channels: list[grpc.Channel]
) -> BuildClient:
    if not url:
        raise ValueError("build_url is required when the build service runs elsewhere")
    channel = grpc.insecure_channel(url)
    channels.append(channel)
    return BuildClient(channel, url, service_token)
