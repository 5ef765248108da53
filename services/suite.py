"""Starting the services: each on its own, or all of them behind one port."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from pathlib import Path

import grpc

from stepforge.services.build.build_runner import BuildRunner
from stepforge.services.build.garbage import collect_unreferenced_archives
from stepforge.services.build.local_builder import LocalBuilder
from stepforge.services.build.service import BuildServicer
from stepforge.services.config import ServerConfig, load_service_token
from stepforge.services.core.auth import CachingTokenResolver, TokenResolver
from stepforge.services.core.languages import find_language
from stepforge.services.core.object_store import ObjectStore, open_object_store
from stepforge.services.core.registry_client import RegistryClient
from stepforge.services.core.server import Registration, add_services, create_server
from stepforge.services.registry.service import (
    RegistryInternalServicer,
    RegistryServicer,
    resolve_user_token,
)
from stepforge.services.registry.store import RegistryStore
from stepforge.v1 import (
    build_pb2,
    build_pb2_grpc,
    common_pb2,
    registry_pb2,
    registry_pb2_grpc,
)

logger = logging.getLogger(__name__)

SERVICES = ("registry", "build")
DEFAULT_PROJECT = "default"
DEFAULT_ENVIRONMENT = "default"
_GC_INTERVAL_S = 600.0
_GC_GRACE = timedelta(minutes=10)


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
    """Starts `services` in one server on `config.address`."""
    unknown = sorted(set(services) - set(SERVICES))
    if unknown:
        raise ValueError(f"unknown services {unknown}; choose from {list(SERVICES)}")
    data_dir = config.data_dir.expanduser()
    service_token = load_service_token(data_dir)
    closers: list[Callable[[], None]] = []
    on_started: list[Callable[[], None]] = []

    store = None
    env_file = None
    if "registry" in services:
        store = RegistryStore(data_dir / "registry" / "registry.db")
        closers.append(store.close)
        env_file = _bootstrap(store, data_dir)
        resolver: TokenResolver = partial(resolve_user_token, store)
    else:
        remote = _registry_client(config.registry_url, service_token, closers)
        resolver = CachingTokenResolver(remote.authenticate)

    server = create_server(resolver, service_token, _service_only(services))
    port = server.add_insecure_port(config.address)
    if port == 0:
        raise OSError(f"cannot listen on {config.address}")
    if env_file is not None:
        token = read_env_file(env_file)["STEPFORGE_SDK_TOKEN"]
        write_env_file(env_file, f"{_advertised_host(config.host)}:{port}", token)

    registrations: list[Registration] = []
    if store is not None:
        registrations += _registry_registrations(store)
    if "build" in services:
        # Co-hosted, the build service still reaches the registry through gRPC,
        # so both layouts run the same code.
        registry_url = f"127.0.0.1:{port}" if store is not None else config.registry_url
        registry = _registry_client(registry_url, service_token, closers)
        registrations.append(
            _build_registration(config, data_dir, registry, closers, on_started)
        )
    add_services(server, registrations)
    server.start()
    suite = RunningSuite(server, port, data_dir, env_file, closers)
    logger.info("serving %s on %s:%d", ", ".join(services), config.host, port)
    for hook in on_started:
        hook()
    return suite


def write_env_file(path: Path, url: str, token: str) -> None:
    """Writes the two variables the SDK reads, readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(f"STEPFORGE_ENVIRONMENT_URL={url}\nSTEPFORGE_SDK_TOKEN={token}\n")


def read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip():
            values[key.strip()] = value.strip()
    return values


def _bootstrap(store: RegistryStore, data_dir: Path) -> Path:
    """Creates the default project, environment and token on first start."""
    environment, created = store.ensure_environment(
        DEFAULT_PROJECT, DEFAULT_ENVIRONMENT, _default_project_config()
    )
    env_file = data_dir / "env"
    if created or not env_file.exists():
        token = store.create_token(environment.id)
        # The URL is completed by the caller once the port is known.
        write_env_file(env_file, "", token)
        logger.info("created environment %s/%s", environment.project, environment.name)
    return env_file


def _advertised_host(host: str) -> str:
    return "127.0.0.1" if host in ("", "0.0.0.0", "::", "[::]") else host


def _default_project_config() -> common_pb2.ContainerConfig:
    host = f"python:{sys.version_info.major}.{sys.version_info.minor}-slim"
    language = host if find_language(host) else "python:3.11-slim"
    return common_pb2.ContainerConfig(language=language)


def _service_only(services: Sequence[str]) -> frozenset[str]:
    if "registry" in services:
        return frozenset(
            {
                registry_pb2.DESCRIPTOR.services_by_name[
                    "RegistryInternalService"
                ].full_name
            }
        )
    return frozenset()


def _registry_registrations(store: RegistryStore) -> list[Registration]:
    public = RegistryServicer(store)
    internal = RegistryInternalServicer(store)
    services = registry_pb2.DESCRIPTOR.services_by_name
    return [
        Registration(
            partial(registry_pb2_grpc.add_RegistryServiceServicer_to_server, public),
            services["RegistryService"].full_name,
        ),
        Registration(
            partial(
                registry_pb2_grpc.add_RegistryInternalServiceServicer_to_server,
                internal,
            ),
            services["RegistryInternalService"].full_name,
        ),
    ]


def _build_registration(
    config: ServerConfig,
    data_dir: Path,
    registry: RegistryClient,
    closers: list[Callable[[], None]],
    on_started: list[Callable[[], None]],
) -> Registration:
    build_dir = data_dir / "build"
    store = open_object_store(config.resolved_object_store_url())
    builder = LocalBuilder(
        build_dir, strict_python_version=config.strict_python_version
    )
    runner = BuildRunner(
        builder, registry, store, build_dir / "scratch", config.build_workers
    )
    closers.append(runner.shutdown)
    servicer = BuildServicer(registry, store, runner, build_dir / "uploads")

    def resume_and_collect() -> None:
        resumed = runner.resume_pending()
        if resumed:
            logger.info("resumed %d interrupted builds", resumed)
        stop = threading.Event()
        closers.append(stop.set)
        threading.Thread(
            target=_collect_periodically,
            args=(store, registry, stop),
            name="archive-gc",
            daemon=True,
        ).start()

    on_started.append(resume_and_collect)
    return Registration(
        partial(build_pb2_grpc.add_BuildServiceServicer_to_server, servicer),
        build_pb2.DESCRIPTOR.services_by_name["BuildService"].full_name,
    )


def _collect_periodically(
    store: ObjectStore, registry: RegistryClient, stop: threading.Event
) -> None:
    while True:
        try:
            collect_unreferenced_archives(store, registry, _GC_GRACE)
        except Exception:
            logger.exception("archive garbage collection failed; retrying later")
        if stop.wait(_GC_INTERVAL_S):
            return


def _registry_client(
    url: str | None, service_token: str, closers: list[Callable[[], None]]
) -> RegistryClient:
    if not url:
        raise ValueError("registry_url is required when the registry runs elsewhere")
    channel = grpc.insecure_channel(url)
    closers.append(channel.close)
    return RegistryClient(channel, url, service_token)
