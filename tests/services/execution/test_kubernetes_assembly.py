"""Choosing the execution backend by configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from stepforge.services.core.object_store import LocalObjectStore
from stepforge.services.core.registry_client import RegistryClient
from stepforge.services.execution.assembly import execution_parts
from stepforge.services.execution.build_client import BuildClient
from stepforge.services.kubernetes.settings import KubernetesSettings

SETTINGS = KubernetesSettings(image_repository="registry.local:5000/steps")


def _parts(tmp_path: Path, **options: Any) -> None:
    execution_parts(
        tmp_path / "data",
        cast(RegistryClient, None),
        cast(BuildClient, None),
        LocalObjectStore(tmp_path / "objects"),
        max_concurrent=1,
        gpu_fallback_to_cpu=False,
        hidden_roots=[],
        **options,
    )


def test_the_kubernetes_backend_refuses_a_store_without_presigned_urls(
    tmp_path: Path,
) -> None:
    with pytest.raises(ValueError) as raised:
        _parts(tmp_path, backend_kind="kubernetes", kubernetes=SETTINGS)

    assert str(raised.value) == (
        "the kubernetes execution backend needs an S3-compatible object store "
        "(--object-store s3://...): pods fetch and store objects through "
        "presigned URLs"
    )
    # Refused before anything was opened.
    assert not (tmp_path / "data" / "execution").exists()


def test_the_kubernetes_backend_needs_the_cluster_settings(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs the cluster settings"):
        _parts(tmp_path, backend_kind="kubernetes")


def test_an_unknown_backend_is_refused_naming_the_choices(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'docker' is not one of local, kubernetes"):
        _parts(tmp_path, backend_kind="docker")
