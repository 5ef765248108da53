"""The registry's part of a server."""

from __future__ import annotations

import logging
import sys
from functools import partial
from pathlib import Path

from stepforge.services.core.auth import Principal
from stepforge.services.core.languages import find_language
from stepforge.services.core.server import Registration, ServiceParts
from stepforge.services.registry.service import (
    RegistryInternalServicer,
    RegistryServicer,
    resolve_user_token,
)
from stepforge.services.registry.store import Environment, RegistryStore
from stepforge.v1 import common_pb2, registry_pb2, registry_pb2_grpc

logger = logging.getLogger(__name__)

DEFAULT_PROJECT = "default"
DEFAULT_ENVIRONMENT = "default"


class RegistryParts(ServiceParts):
    """The registry's servicers, over a store the server also authenticates with."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__()
        self.store = RegistryStore(data_dir / "registry" / "registry.db")
        self.closers.append(self.store.close)
        services = registry_pb2.DESCRIPTOR.services_by_name
        self.registrations += [
            Registration(
                partial(
                    registry_pb2_grpc.add_RegistryServiceServicer_to_server,
                    RegistryServicer(self.store),
                ),
                services["RegistryService"].full_name,
            ),
            Registration(
                partial(
                    registry_pb2_grpc.add_RegistryInternalServiceServicer_to_server,
                    RegistryInternalServicer(self.store),
                ),
                services["RegistryInternalService"].full_name,
            ),
        ]

    def resolve_user_token(self, token: str) -> Principal:
        return resolve_user_token(self.store, token)

    def default_environment(self) -> tuple[Environment, str | None]:
        """The default project and environment, created on first start, and a
        new token for it when it was just created."""
        environment, created = self.store.ensure_environment(
            DEFAULT_PROJECT, DEFAULT_ENVIRONMENT, _default_project_config()
        )
        if not created:
            return environment, None
        logger.info("created environment %s/%s", environment.project, environment.name)
        return environment, self.store.create_token(environment.id)

    def new_token(self, environment: Environment) -> str:
        return self.store.create_token(environment.id)


def _default_project_config() -> common_pb2.ContainerConfig:
    host = f"python:{sys.version_info.major}.{sys.version_info.minor}-slim"
    language = host if find_language(host) else "python:3.11-slim"
    return common_pb2.ContainerConfig(language=language)
