"""The build service's part of a server."""

from __future__ import annotations

import logging
from datetime import timedelta
from functools import partial
from pathlib import Path

from stepforge.services.build.build_runner import BuildRunner
from stepforge.services.build.builder import Builder
from stepforge.services.build.garbage import (
    collect_stale_build_contexts,
    collect_unreferenced_archives,
)
from stepforge.services.build.internal_service import BuildInternalServicer
from stepforge.services.build.kaniko_builder import NEEDS_PRESIGNING, KanikoBuilder
from stepforge.services.build.local_builder import LocalBuilder
from stepforge.services.build.service import BuildServicer
from stepforge.services.core.object_store import ObjectStore, PresigningStore
from stepforge.services.core.periodic import Periodic
from stepforge.services.core.registry_client import RegistryClient
from stepforge.services.core.server import Registration, ServiceParts
from stepforge.services.kubernetes.client import api_client
from stepforge.services.kubernetes.settings import KubernetesSettings
from stepforge.v1 import build_pb2, build_pb2_grpc

logger = logging.getLogger(__name__)

GC_INTERVAL_S = 600.0
GC_GRACE = timedelta(minutes=10)


def build_parts(
    data_dir: Path,
    registry: RegistryClient,
    objects: ObjectStore,
    *,
    strict_python_version: bool,
    system_site_packages: bool,
    workers: int,
    backend_kind: str = "local",
    kubernetes: KubernetesSettings | None = None,
) -> ServiceParts:
    build_dir = data_dir / "build"
    builder: Builder
    local_builder: LocalBuilder | None = None
    kaniko: KanikoBuilder | None = None
    if backend_kind == "local":
        builder = local_builder = LocalBuilder(
            build_dir,
            strict_python_version=strict_python_version,
            system_site_packages=system_site_packages,
        )
    elif backend_kind == "kubernetes":
        builder = kaniko = _kaniko_builder(build_dir, objects, kubernetes)
    else:
        raise ValueError(
            f"backend_kind {backend_kind!r} must be one of: local, kubernetes"
        )
    runner = BuildRunner(builder, registry, objects, build_dir / "scratch", workers)
    services = build_pb2.DESCRIPTOR.services_by_name
    parts = ServiceParts(
        registrations=[
            Registration(
                partial(
                    build_pb2_grpc.add_BuildServiceServicer_to_server,
                    BuildServicer(
                        registry,
                        objects,
                        runner,
                        build_dir / "uploads",
                        builds_images=backend_kind == "kubernetes",
                    ),
                ),
                services["BuildService"].full_name,
            ),
            Registration(
                partial(
                    build_pb2_grpc.add_BuildInternalServiceServicer_to_server,
                    BuildInternalServicer(local_builder),
                ),
                services["BuildInternalService"].full_name,
            ),
        ],
        closers=[runner.shutdown],
    )
    if kaniko is not None:
        # Closers run last to first: stop following Jobs, let the workers
        # return, then close the image records.
        parts.closers.insert(0, kaniko.close)
        parts.closers.append(kaniko.interrupt)

    def recover() -> None:
        # No build runs yet: what these folders hold was left by a crash.
        for folder in (build_dir / "uploads", build_dir / "scratch"):
            for leftover in folder.glob("*") if folder.is_dir() else ():
                leftover.unlink(missing_ok=True)
        resumed = runner.resume_pending()
        if resumed:
            logger.info("resumed %d interrupted builds", resumed)
        # A build context is useless once the URL handed out for it expired.
        context_max_age = (
            timedelta(seconds=kubernetes.presign_ttl_s)
            if kaniko is not None and kubernetes is not None
            else None
        )

        def collect() -> None:
            collect_unreferenced_archives(objects, registry, GC_GRACE)
            if context_max_age is not None:
                collect_stale_build_contexts(objects, context_max_age)

        collector = Periodic("archive-gc", collect, GC_INTERVAL_S)
        parts.closers.append(collector.stop)
        collector.start()

    parts.on_started.append(recover)
    return parts


def _kaniko_builder(
    build_dir: Path, objects: ObjectStore, kubernetes: KubernetesSettings | None
) -> KanikoBuilder:
    if kubernetes is None:
        raise ValueError(
            "the kubernetes build backend needs the cluster settings "
            "(--image-repository and the other Kubernetes flags)"
        )
    if not isinstance(objects, PresigningStore):
        raise ValueError(NEEDS_PRESIGNING)
    return KanikoBuilder(api_client(kubernetes), kubernetes, objects, build_dir)
