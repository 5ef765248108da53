"""The gateway: Envoy routes each gRPC call, by its service name, to the
Kubernetes Service that serves it, and keeps the internal APIs inside."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from deploy.layout import (
    BASE,
    ROOT,
    Document,
    Generator,
    base_document,
    base_documents,
    flag,
    generators,
    serves,
    service_named,
)

from stepforge.services.suite import INTERNAL_SERVICES

PROTOS = ROOT / "protos" / "stepforge" / "v1"
CLUSTER_ADDRESS = re.compile(r"^([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.cluster\.local$")
SHARED_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
)


def test_every_proto_service_is_routed_inside_the_cluster_to_its_server() -> None:
    routes = _routes("cluster")
    for service, proto in _proto_services().items():
        route = routes[f"/stepforge.v1.{service}/"]
        target = _cluster_service(route["route"]["cluster"])

        assert serves(target) == proto, f"{service} goes to {target}"


def test_the_public_listener_refuses_the_internal_services() -> None:
    public = _routes("public")
    inside = _routes("cluster")

    assert INTERNAL_SERVICES <= {f"stepforge.v1.{name}" for name in _proto_services()}
    for service in _proto_services():
        prefix = f"/stepforge.v1.{service}/"
        if f"stepforge.v1.{service}" in INTERNAL_SERVICES:
            assert public[prefix]["direct_response"]["status"] == 403, service
        else:
            assert public[prefix]["route"] == inside[prefix]["route"], service


def test_health_and_reflection_reach_a_server_through_both_listeners() -> None:
    for listener in ("public", "cluster"):
        routes = _routes(listener)
        for prefix in SHARED_PREFIXES:
            assert serves(_cluster_service(routes[prefix]["route"]["cluster"]))


def test_the_listeners_route_nothing_else_to_the_services() -> None:
    known = {f"/stepforge.v1.{name}/" for name in _proto_services()}
    known |= set(SHARED_PREFIXES)
    for listener in ("public", "cluster"):
        assert set(_routes(listener)) == known, listener


def test_grpc_calls_go_over_http2_without_a_gateway_deadline() -> None:
    for listener in ("public", "cluster"):
        for route in _routes(listener).values():
            if "route" not in route:
                continue
            name = route["route"]["cluster"]
            options = _cluster(name).get("typed_extension_protocol_options", {})
            http2 = [
                "http2_protocol_options" in value.get("explicit_http_config", {})
                for value in options.values()
            ]

            assert http2 == [True], name
            # Waits and followed logs last as long as the run; the client's
            # own deadline bounds them.
            assert route["route"]["timeout"] == "0s", route


def test_everything_but_grpc_on_the_public_listener_goes_to_the_console() -> None:
    (catch_all,) = [
        route for route in _all_routes("public") if route["match"]["prefix"] == "/"
    ]
    (header,) = catch_all["match"]["headers"]
    target = _cluster_service(catch_all["route"]["cluster"])

    assert header["name"] == "content-type" and header["invert_match"] is True
    assert header["string_match"] == {"prefix": "application/grpc"}
    assert target["metadata"]["name"] == "stepforge-console"
    assert not any(route["match"]["prefix"] == "/" for route in _all_routes("cluster"))


def test_the_gateway_mounts_its_config_and_certificate_where_envoy_reads_them() -> None:
    pod = _gateway().body["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    mounts = {
        mount["name"]: Path(mount["mountPath"]) for mount in container["volumeMounts"]
    }
    generator = _envoy_generator()
    (config_file,) = generator.files
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    (config_volume,) = [
        name
        for name, volume in volumes.items()
        if volume.get("configMap", {}).get("name") == generator.name
    ]
    (secret_volume,) = [name for name, volume in volumes.items() if "secret" in volume]

    assert flag(container["args"], "--config-path") == str(
        mounts[config_volume] / config_file.name
    )
    for certificate in _public_certificate_files():
        assert Path(certificate).parent == mounts[secret_volume]


def test_each_listener_has_a_port_of_the_gateway_and_the_right_service() -> None:
    (container,) = _gateway().body["spec"]["template"]["spec"]["containers"]
    ports = {item["name"]: item["containerPort"] for item in container["ports"]}
    exposed = {
        (doc.name, ports[item["targetPort"]])
        for doc in base_documents()
        if doc.kind == "Service" and doc.name.startswith("stepforge-gateway")
        for item in doc.body["spec"]["ports"]
    }

    assert exposed == {
        ("stepforge-gateway", _port("public")),
        ("stepforge-gateway-internal", _port("cluster")),
    }


def _gateway() -> Document:
    return base_document("Deployment", "stepforge-gateway")


def _envoy_generator() -> Generator:
    """The ConfigMap generator of the gateway's Envoy config."""
    (generator,) = [gen for gen in generators(BASE) if gen.name == "stepforge-gateway"]
    return generator


@cache
def _envoy() -> dict[str, Any]:
    (path,) = _envoy_generator().files
    config = yaml.safe_load(path.read_text())
    assert isinstance(config, dict)
    return config


def _envoy_resource(section: str, name: str) -> dict[str, Any]:
    """The one item called `name` of a `static_resources` section."""
    (found,) = [
        item for item in _envoy()["static_resources"][section] if item["name"] == name
    ]
    return dict(found)


def _listener(name: str) -> dict[str, Any]:
    return _envoy_resource("listeners", name)


def _port(listener: str) -> int:
    return int(_listener(listener)["address"]["socket_address"]["port_value"])


def _all_routes(listener: str) -> list[dict[str, Any]]:
    (chain,) = _listener(listener)["filter_chains"]
    (manager,) = chain["filters"]
    (host,) = manager["typed_config"]["route_config"]["virtual_hosts"]
    return list(host["routes"])


def _routes(listener: str) -> dict[str, dict[str, Any]]:
    """The listener's routes by path prefix, but the console's catch-all."""
    return {
        route["match"]["prefix"]: route
        for route in _all_routes(listener)
        if route["match"]["prefix"] != "/"
    }


def _public_certificate_files() -> list[str]:
    (chain,) = _listener("public")["filter_chains"]
    context = chain["transport_socket"]["typed_config"]["common_tls_context"]
    return [
        item[part]["filename"]
        for item in context["tls_certificates"]
        for part in ("certificate_chain", "private_key")
    ]


def _cluster(name: str) -> dict[str, Any]:
    return _envoy_resource("clusters", name)


def _cluster_service(name: str) -> dict[str, Any]:
    """The Kubernetes Service an Envoy cluster sends to."""
    (locality,) = _cluster(name)["load_assignment"]["endpoints"]
    (endpoint,) = locality["lb_endpoints"]
    address = endpoint["endpoint"]["address"]["socket_address"]
    match = CLUSTER_ADDRESS.match(address["address"])
    assert match, f"{name}: {address['address']} is not a Service's cluster name"
    return service_named(match.group(2), match.group(1), address["port_value"])


@cache
def _proto_services() -> dict[str, str]:
    """Each gRPC service of the protos, and the proto file defining it, which
    is named after the service that serves it."""
    services = {}
    for path in sorted(PROTOS.glob("*.proto")):
        for name in re.findall(r"^service\s+(\w+)\s*\{", path.read_text(), re.M):
            services[name] = path.stem
    assert services
    return services
