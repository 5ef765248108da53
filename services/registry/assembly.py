"""The registry's part of a server."""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

from stepforge.services.core.auth import Principal
from stepforge.services.core.server import Registration, ServiceParts
from stepforge.services.core.sqlite import Database
from stepforge.services.registry.service import (
    RegistryInternalServicer,
    RegistryServicer,
    resolve_user_token,
)
from stepforge.services.registry.store import STEPS_SCHEMA, RegistryStore
from stepforge.services.registry.tenancy import (
    TENANCY_SCHEMA,
    Tenancy,
    default_container_config,
)
from stepforge.v1 import registry_pb2, registry_pb2_grpc

logger = logging.getLogger(__name__)

DEFAULT_PROJECT = "default"
DEFAULT_ENVIRONMENT = "default"


def open_registry_database(data_dir: Path) -> Database:
    """The registry's database; the admin command opens it the same way."""
    return Database(
        data_dir / "registry" / "registry.db", TENANCY_SCHEMA + STEPS_SCHEMA
    )


class RegistryParts(ServiceParts):
    """The registry's servicers, over a store the server also authenticates with."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__()
        database = open_registry_database(data_dir)
        self.closers.append(database.close)
        self.tenancy = Tenancy(database)
        store = RegistryStore(database)
        services = registry_pb2.DESCRIPTOR.services_by_name
        self.registrations += [
            Registration(
                partial(
                    registry_pb2_grpc.add_RegistryServiceServicer_to_server,
                    RegistryServicer(store, self.tenancy),
                ),
                services["RegistryService"].full_name,
            ),
            Registration(
                partial(
                    registry_pb2_grpc.add_RegistryInternalServiceServicer_to_server,
                    RegistryInternalServicer(store, self.tenancy),
                ),
                services["RegistryInternalService"].full_name,
            ),
        ]

    def resolve_user_token(self, token: str) -> Principal:
        return resolve_user_token(self.tenancy, token)

    def bootstrap(self, have_tokens: bool) -> tuple[str, str] | None:
        """Makes the default project and environment on first start, and the
        tokens of both roles for them when they are new or when the tokens
        given to the user were lost; returns (environment token, admin token)."""
        environment, created = self.tenancy.ensure_environment(
            DEFAULT_PROJECT, DEFAULT_ENVIRONMENT, default_container_config()
        )
        if not created and have_tokens:
            return None
        if created:
            logger.info(
                "created environment %s/%s", environment.project, environment.name
            )
        return (
            self.tenancy.create_token(environment, label="default"),
            self.tenancy.create_admin_token(environment.project, label="default"),
        )
