"""The execution service's part of a server."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from stepforge.services.core.object_store import ObjectStore
from stepforge.services.core.registry_client import RegistryClient
from stepforge.services.core.server import Registration, ServiceParts
from stepforge.services.execution.build_client import BuildClient
from stepforge.services.execution.gpus import GpuAllocator, discover_gpus
from stepforge.services.execution.lifecycle import Lifecycle
from stepforge.services.execution.local_backend import (
    LocalBackend,
    LocalBackendSettings,
)
from stepforge.services.execution.logs import LogBook
from stepforge.services.execution.service import ExecutionServicer
from stepforge.services.execution.store import ExecutionStore
from stepforge.v1 import execution_pb2, execution_pb2_grpc


def execution_parts(
    data_dir: Path,
    registry: RegistryClient,
    build: BuildClient,
    objects: ObjectStore,
    *,
    max_concurrent: int,
    gpu_fallback_to_cpu: bool,
) -> ServiceParts:
    execution_dir = data_dir / "execution"
    store = ExecutionStore(execution_dir / "executions.db")
    logs = LogBook(store)
    lifecycle = Lifecycle(store, logs, registry)
    gpus = GpuAllocator([device.index for device in discover_gpus()])
    backend = LocalBackend(
        LocalBackendSettings(
            runs_dir=execution_dir / "runs",
            max_concurrent=max_concurrent,
            gpu_fallback_to_cpu=gpu_fallback_to_cpu,
        ),
        lifecycle,
        logs,
        objects,
        build.locate_runtime,
        gpus,
    )
    servicer = ExecutionServicer(registry, store, logs, lifecycle, backend, objects)
    return ServiceParts(
        registrations=[
            Registration(
                partial(
                    execution_pb2_grpc.add_ExecutionServiceServicer_to_server, servicer
                ),
                execution_pb2.DESCRIPTOR.services_by_name["ExecutionService"].full_name,
            )
        ],
        on_started=[servicer.recover],
        # Closed in reverse: the backend stops its runs before logs and store close.
        closers=[store.close, logs.stop, backend.shutdown],
    )
