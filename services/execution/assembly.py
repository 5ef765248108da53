"""The execution service's part of a server."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import cast

from stepforge.services.core.object_store import ObjectStore, PresigningStore
from stepforge.services.core.periodic import Periodic
from stepforge.services.core.registry_client import RegistryClient
from stepforge.services.core.server import Registration, ServiceParts
from stepforge.services.execution.backend import ExecutionBackend
from stepforge.services.execution.build_client import BuildClient
from stepforge.services.execution.garbage import collect_orphan_files
from stepforge.services.execution.gpus import GpuAllocator, discover_gpus
from stepforge.services.execution.lifecycle import Lifecycle
from stepforge.services.execution.local_backend import (
    LocalBackend,
    LocalBackendSettings,
)
from stepforge.services.execution.logs import LogBook
from stepforge.services.execution.pod_spec import PresigningObjectStore
from stepforge.services.execution.service import ExecutionServicer
from stepforge.services.execution.store import ExecutionStore
from stepforge.services.kubernetes.settings import KubernetesSettings
from stepforge.v1 import execution_pb2, execution_pb2_grpc

logger = logging.getLogger(__name__)

BACKEND_KINDS = ("local", "kubernetes")
NEEDS_PRESIGNING_STORE = (
    "the kubernetes execution backend needs an S3-compatible object store "
    "(--object-store s3://...): pods fetch and store objects through presigned URLs"
)
GC_INTERVAL_S = 600.0
GC_GRACE = timedelta(minutes=10)


def execution_parts(
    data_dir: Path,
    registry: RegistryClient,
    build: BuildClient,
    objects: ObjectStore,
    *,
    max_concurrent: int,
    gpu_fallback_to_cpu: bool,
    hidden_roots: Sequence[Path],
    backend_kind: str = "local",
    kubernetes: KubernetesSettings | None = None,
) -> ServiceParts:
    if backend_kind not in BACKEND_KINDS:
        raise ValueError(
            f"backend_kind {backend_kind!r} is not one of {', '.join(BACKEND_KINDS)}"
        )
    # Checked before anything is opened, so a refusal leaves nothing behind.
    cluster = (
        _cluster_settings(kubernetes, objects) if backend_kind == "kubernetes" else None
    )
    execution_dir = data_dir / "execution"
    store = ExecutionStore(execution_dir / "executions.db")
    logs = LogBook(store)
    lifecycle = Lifecycle(store, logs, registry)
    backend: ExecutionBackend
    if cluster is not None:
        backend = _kubernetes_backend(*cluster, lifecycle, logs, store)
    else:
        gpus = GpuAllocator([device.index for device in discover_gpus()])
        backend = LocalBackend(
            LocalBackendSettings(
                runs_dir=execution_dir / "runs",
                max_concurrent=max_concurrent,
                gpu_fallback_to_cpu=gpu_fallback_to_cpu,
                hidden_roots=tuple(hidden_roots),
            ),
            lifecycle,
            logs,
            objects,
            build.locate_runtime,
            gpus,
        )
    servicer = ExecutionServicer(registry, store, logs, lifecycle, backend, objects)
    collector = Periodic(
        "execution-gc",
        partial(collect_orphan_files, objects, store, GC_GRACE),
        GC_INTERVAL_S,
    )

    def recover() -> None:
        servicer.recover()
        collector.start()

    return ServiceParts(
        registrations=[
            Registration(
                partial(
                    execution_pb2_grpc.add_ExecutionServiceServicer_to_server, servicer
                ),
                execution_pb2.DESCRIPTOR.services_by_name["ExecutionService"].full_name,
            )
        ],
        on_started=[recover],
        # Closed in reverse: the backend stops its runs before logs and store close.
        closers=[store.close, logs.stop, backend.shutdown, collector.stop],
    )


def _cluster_settings(
    kubernetes: KubernetesSettings | None, objects: ObjectStore
) -> tuple[KubernetesSettings, PresigningObjectStore]:
    """The settings and store the kubernetes backend needs, or ValueError."""
    if kubernetes is None:
        raise ValueError(
            "the kubernetes execution backend needs the cluster settings: at least "
            "--image-repository (STEPFORGE_IMAGE_REPOSITORY)"
        )
    if not isinstance(objects, PresigningStore):
        raise ValueError(NEEDS_PRESIGNING_STORE)
    return kubernetes, cast(PresigningObjectStore, objects)


def _kubernetes_backend(
    cluster: KubernetesSettings,
    objects: PresigningObjectStore,
    lifecycle: Lifecycle,
    logs: LogBook,
    store: ExecutionStore,
) -> ExecutionBackend:
    # Imported here: the `kubernetes` package is needed only by this backend.
    from stepforge.services.execution.kubernetes_backend import (
        KubernetesBackend,
        KubernetesBackendSettings,
    )
    from stepforge.services.kubernetes.client import api_client

    return KubernetesBackend(
        KubernetesBackendSettings(
            cluster, pending_timeout_s=float(cluster.pending_timeout_s)
        ),
        api_client(cluster),
        lifecycle,
        logs,
        store,
        objects,
    )
