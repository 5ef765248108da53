"""The services' flags and environment in the manifests, as `stepforge`
itself parses them: every layer must give a configuration the code accepts."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import pytest
from deploy.layout import (
    BACKEND_VARIABLES,
    BASE,
    ROOT,
    SERVICES,
    TARGETS,
    VARIABLE_REFERENCE,
    base_document,
    console_container,
    environment,
    generated,
    job_namespaces,
    serves,
    service_named,
    service_workloads,
)

from stepforge.services import cli
from stepforge.services.core.object_store import S3ObjectStore, open_object_store
from stepforge.services.kubernetes.options import kubernetes_settings


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("service", SERVICES)
def test_each_service_configuration_is_accepted_by_the_stepforge_command(
    target: str, service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, container = service_workloads()[service]
    parsed = _parse_as_the_container(container, target, monkeypatch)
    settings = kubernetes_settings(parsed)

    assert (parsed.command, parsed.service) == ("serve", service)
    # Plaintext inside the cluster, where the kubelet's gRPC probes speak no
    # TLS; the gateway serves TLS to clients.
    assert parsed.plaintext and parsed.host == "0.0.0.0"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == parsed.port, probe
    if service not in BACKEND_VARIABLES:
        assert settings is None
        return
    assert settings is not None
    assert getattr(parsed, f"{service}_backend") == "kubernetes"
    assert settings.namespace == job_namespaces()[service]
    assert settings.registry_secret
    assert isinstance(open_object_store(parsed.object_store), S3ObjectStore)
    for option, peer in (("registry_url", "registry"), ("build_url", "build")):
        url = getattr(parsed, option)
        if url is not None:
            host, _, port = url.partition(":")
            assert serves(service_named("stepforge", host, int(port))) == peer


def test_the_readiness_probe_asks_for_the_service_itself() -> None:
    for service, (_, container) in service_workloads().items():
        wanted = f"stepforge.v1.{service.capitalize()}Service"

        assert container["readinessProbe"]["grpc"]["service"] == wanted


@pytest.mark.parametrize("target", ("base", "overlays/gpu"))
def test_the_gpu_settings_reach_the_execution_service(
    target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, container = service_workloads()["execution"]
    parsed = _parse_as_the_container(container, target, monkeypatch)
    settings = kubernetes_settings(parsed)
    explicit = "STEPFORGE_GPU_NODE_SELECTOR" in environment(container, target)

    assert settings is not None
    assert explicit == (target == "overlays/gpu")
    assert settings.gpu_resource == "nvidia.com/gpu"
    assert settings.gpu_node_selector == {"nvidia.com/gpu.present": "true"}
    assert [item.as_spec() for item in settings.gpu_tolerations] == [
        {"key": "nvidia.com/gpu", "effect": "NoSchedule", "operator": "Exists"}
    ]


def test_the_object_store_url_names_the_minio_service_for_every_namespace() -> None:
    url = urlsplit(
        generated(BASE)[("ConfigMap", "stepforge-object-store")][
            "STEPFORGE_OBJECT_STORE"
        ]
    )
    assert url.hostname is not None and url.port is not None
    # Step pods resolve it from their own namespace, so it names its namespace.
    name, namespace, rest = url.hostname.split(".", 2)
    service = service_named(namespace, name, url.port)
    minio = base_document("StatefulSet", "stepforge-minio")

    assert rest == "svc"
    assert service["spec"]["selector"].items() <= (
        minio.body["spec"]["template"]["metadata"]["labels"].items()
    )


def test_the_console_configuration_is_accepted_by_the_stepforge_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from stepforge.services.console.command import standalone_settings

    parsed = _parse_as_the_container(console_container(), "base", monkeypatch)
    settings = standalone_settings(parsed)
    url = urlsplit(settings.environment_url)
    assert url.hostname is not None and url.port is not None
    name, namespace, _ = url.hostname.split(".", 2)

    assert parsed.command == "console"
    assert settings.behind_tls_proxy and not settings.serves_tls
    assert service_named(namespace, name, url.port)["metadata"]["name"] == (
        "stepforge-gateway-internal"
    )


def test_the_service_image_is_given_only_variables_the_code_reads() -> None:
    code = "\n".join(
        path.read_text()
        for top in (ROOT / "services", ROOT / "clients" / "python" / "stepforge")
        for path in top.rglob("*.py")
    )
    given = [container for _, container in service_workloads().values()]
    given.append(console_container())
    for container in given:
        arguments = " ".join(container.get("args", []))
        expanded = set(VARIABLE_REFERENCE.findall(arguments))
        names: set[str] = set()
        for target in TARGETS:
            names |= set(environment(container, target))

        assert expanded <= names, f"{container['name']}: undefined {expanded - names}"
        for name in names - expanded:
            assert f'"{name}"' in code, f"{container['name']}: nothing reads {name}"


def _parse_as_the_container(
    container: Mapping[str, Any], target: str, monkeypatch: pytest.MonkeyPatch
) -> argparse.Namespace:
    """The container's arguments as `stepforge` parses them, in its
    environment: some flags take their defaults from it."""
    variables = environment(container, target)
    for name in list(os.environ):
        if name.startswith("STEPFORGE_"):
            monkeypatch.delenv(name)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    arguments = [
        VARIABLE_REFERENCE.sub(lambda match: variables[match.group(1)], item)
        for item in container["args"]
    ]
    parser = cli._parser()
    try:
        parsed = parser.parse_args(arguments)
    except SystemExit as error:
        raise AssertionError(f"stepforge refuses {arguments}") from error
    # argparse also takes a flag's unambiguous prefix, which a later flag
    # could make ambiguous: the manifests spell every flag out.
    known = _subcommands(parser)[arguments[0]]._option_string_actions
    for argument in arguments:
        if argument.startswith("--"):
            assert argument.split("=", 1)[0] in known, argument
    return parsed


def _subcommands(
    parser: argparse.ArgumentParser,
) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}
