"""The backend flags and their environment variables."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from stepforge.services.config import ServerConfig
from stepforge.services.kubernetes.options import (
    add_backend_options,
    kubernetes_settings,
)
from stepforge.services.kubernetes.settings import Toleration


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_backend_options(parser)
    return parser.parse_args(argv)


def test_local_backends_need_no_cluster_settings() -> None:
    assert kubernetes_settings(parse([])) is None


def test_a_kubernetes_backend_needs_an_image_repository() -> None:
    with pytest.raises(ValueError, match="--image-repository"):
        kubernetes_settings(parse(["--execution-backend", "kubernetes"]))


def test_flags_become_settings(tmp_path: Path) -> None:
    settings = kubernetes_settings(
        parse(
            [
                "--build-backend=kubernetes",
                "--image-repository=registry.local:5000/steps",
                f"--kubeconfig={tmp_path / 'config'}",
                "--kube-namespace=ml-steps",
                "--gpu-node-selector=gpu=a100,zone=a",
                "--gpu-toleration=dedicated=ml:NoExecute,nvidia.com/gpu",
                "--job-ttl=60",
                "--pending-timeout=30",
                "--build-timeout=900",
                "--insecure-registry",
            ]
        )
    )

    assert settings is not None
    assert settings.kubeconfig == tmp_path / "config"
    assert settings.namespace == "ml-steps"
    assert dict(settings.gpu_node_selector) == {"gpu": "a100", "zone": "a"}
    assert settings.gpu_tolerations == (
        Toleration("dedicated", "NoExecute", "ml"),
        Toleration("nvidia.com/gpu", "NoSchedule"),
    )
    assert settings.job_ttl_s == 60
    assert settings.pending_timeout_s == 30
    assert settings.build_timeout_s == 900
    assert settings.insecure_registry


def test_environment_variables_set_the_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STEPFORGE_EXECUTION_BACKEND", "kubernetes")
    monkeypatch.setenv("STEPFORGE_IMAGE_REPOSITORY", "registry.local/steps")
    monkeypatch.setenv("STEPFORGE_GPU_NODE_SELECTOR", "")
    monkeypatch.setenv("STEPFORGE_GPU_TOLERATIONS", "")
    monkeypatch.setenv("STEPFORGE_INSECURE_REGISTRY", "true")

    args = parse([])
    settings = kubernetes_settings(args)

    assert args.execution_backend == "kubernetes"
    assert settings is not None
    assert settings.image_repository == "registry.local/steps"
    # Set but empty means none, for GPU nodes with no such label or taint.
    assert dict(settings.gpu_node_selector) == {}
    assert settings.gpu_tolerations == ()
    assert settings.insecure_registry


def test_an_unknown_backend_is_refused_by_the_config(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="build_backend 'docker'"):
        ServerConfig(data_dir=tmp_path, build_backend="docker")


def test_a_kubernetes_backend_without_settings_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="execution_backend kubernetes"):
        ServerConfig(data_dir=tmp_path, execution_backend="kubernetes")
