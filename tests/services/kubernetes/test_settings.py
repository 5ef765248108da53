"""The Kubernetes backends' settings refuse what a cluster would refuse later."""

from __future__ import annotations

import pytest

from stepforge.services.kubernetes.settings import (
    KubernetesSettings,
    Toleration,
    parse_node_selector,
    parse_toleration,
)

REPOSITORY = "registry.local:5000/stepforge/steps"


def test_defaults_target_nvidia_gpu_nodes() -> None:
    settings = KubernetesSettings(image_repository=REPOSITORY)

    assert settings.namespace == "stepforge-steps"
    assert settings.gpu_resource == "nvidia.com/gpu"
    assert dict(settings.gpu_node_selector) == {"nvidia.com/gpu.present": "true"}
    assert [t.as_spec() for t in settings.gpu_tolerations] == [
        {"key": "nvidia.com/gpu", "effect": "NoSchedule", "operator": "Exists"}
    ]
    assert "@sha256:" in settings.kaniko_image
    assert "@sha256:" in settings.fetch_image


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"image_repository": "Registry/Steps"}, "image_repository"),
        ({"image_repository": "registry.local/steps:v1"}, "no tag"),
        ({"namespace": "Steps_NS"}, "namespace"),
        ({"gpu_node_selector": {"bad key!": "x"}}, "gpu_node_selector"),
        ({"gpu_tolerations": (Toleration("nvidia.com/gpu", "Never"),)}, "effect"),
        ({"gpu_resource": "gpu"}, "gpu_resource"),
        ({"job_ttl_s": 0}, "job_ttl_s"),
        ({"presign_ttl_s": 8 * 24 * 3600}, "seven days"),
    ],
)
def test_invalid_settings_name_the_field(
    fields: dict[str, object], message: str
) -> None:
    arguments: dict[str, object] = {"image_repository": REPOSITORY, **fields}
    with pytest.raises(ValueError, match=message):
        KubernetesSettings(**arguments)  # type: ignore[arg-type]


def test_a_toleration_with_a_value_uses_the_equal_operator() -> None:
    assert Toleration("gpu", "NoExecute", "a100").as_spec() == {
        "key": "gpu",
        "effect": "NoExecute",
        "operator": "Equal",
        "value": "a100",
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nvidia.com/gpu", Toleration("nvidia.com/gpu", "NoSchedule")),
        ("nvidia.com/gpu:NoExecute", Toleration("nvidia.com/gpu", "NoExecute")),
        ("dedicated=ml:NoSchedule", Toleration("dedicated", "NoSchedule", "ml")),
    ],
)
def test_tolerations_parse_like_kubectl_taints(text: str, expected: Toleration) -> None:
    assert parse_toleration(text) == expected


def test_a_toleration_without_a_key_is_refused() -> None:
    with pytest.raises(ValueError, match="KEY"):
        parse_toleration(":NoSchedule")


def test_node_selectors_need_key_and_value() -> None:
    assert parse_node_selector(["a=b", "c="]) == {"a": "b", "c": ""}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_node_selector(["novalue"])
