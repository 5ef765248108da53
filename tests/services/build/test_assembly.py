from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.fake_kube import running_fake_cluster
from support.s3_server import S3Endpoint

from stepforge.services.build.assembly import build_parts
from stepforge.services.core.object_store import (
    LocalObjectStore,
    ObjectStore,
    open_object_store,
)
from stepforge.services.core.server import ServiceParts
from stepforge.services.kubernetes.settings import KubernetesSettings


def _parts(
    tmp_path: Path, objects: ObjectStore, kind: str, **kubernetes: Any
) -> ServiceParts:
    return build_parts(
        tmp_path,
        registry=None,  # type: ignore[arg-type]
        objects=objects,
        strict_python_version=False,
        system_site_packages=False,
        workers=1,
        backend_kind=kind,
        kubernetes=(
            KubernetesSettings(
                image_repository="registry.local:5000/steps", **kubernetes
            )
            if kubernetes
            else None
        ),
    )


def test_the_kubernetes_build_backend_refuses_a_store_without_presigned_urls(
    tmp_path: Path,
) -> None:
    store = LocalObjectStore(tmp_path / "objects")

    with pytest.raises(ValueError, match=r"needs an S3-compatible object store"):
        _parts(tmp_path, store, "kubernetes", kubeconfig=tmp_path / "kubeconfig")


def test_the_kubernetes_build_backend_needs_the_cluster_settings(
    tmp_path: Path, s3_server: S3Endpoint
) -> None:
    store = open_object_store(s3_server.url("assembly"))

    with pytest.raises(ValueError, match="needs the cluster settings"):
        _parts(tmp_path, store, "kubernetes")
    with pytest.raises(ValueError, match="backend_kind 'docker'"):
        _parts(tmp_path, store, "docker")


def test_the_kubernetes_backend_kind_assembles_the_image_builder(
    tmp_path: Path, s3_server: S3Endpoint
) -> None:
    store = open_object_store(s3_server.url("assembly"))
    with running_fake_cluster(tmp_path / "cluster") as cluster:
        parts = _parts(tmp_path, store, "kubernetes", kubeconfig=cluster.kubeconfig)
        for close in reversed(parts.closers):
            close()

    assert (tmp_path / "build" / "images.db").is_file()
