"""deploy/ as the deploy tests read it: the Kustomize layers, their manifests,
generators and patches, and the suite's workloads among them."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from stepforge.services.kubernetes import labels

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
BASE = DEPLOY / "base"
SERVICES = ("registry", "build", "execution")
# The variable a Kubernetes backend's service sets to choose it.
BACKEND_VARIABLES = {
    "build": "STEPFORGE_BUILD_BACKEND",
    "execution": "STEPFORGE_EXECUTION_BACKEND",
}
# What `kubectl apply -k` is pointed at.
TARGETS = ("base", "overlays/gpu", "overlays/external-s3")
VARIABLE_REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


@dataclass(frozen=True)
class Document:
    """One YAML document of a manifest file."""

    path: Path
    index: int
    body: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.body["kind"])

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])

    @property
    def namespace(self) -> str | None:
        namespace = self.body["metadata"].get("namespace")
        return None if namespace is None else str(namespace)

    def __str__(self) -> str:
        where = self.path.relative_to(DEPLOY).as_posix()
        return f"{where}#{self.index} {self.kind}/{self.name}"


@dataclass(frozen=True)
class Patch:
    """A patch of a layer: a strategic merge document, or JSON6902 operations."""

    owner: Path
    body: Any
    target: Mapping[str, str] | None


@dataclass(frozen=True)
class Generator:
    """A configMapGenerator or secretGenerator entry, with the data it makes."""

    kind: str
    name: str
    namespace: str | None
    behavior: str
    data: Mapping[str, str]
    files: tuple[Path, ...]


# --- layers -------------------------------------------------------------------


@cache
def kustomization(directory: Path) -> dict[str, Any]:
    body = yaml.safe_load((directory / "kustomization.yaml").read_text())
    assert isinstance(body, dict), directory
    return body


def layers() -> list[Path]:
    """Every folder with a kustomization.yaml."""
    return sorted(path.parent for path in DEPLOY.rglob("kustomization.yaml"))


def layers_above_base() -> list[Path]:
    return [path for path in layers() if path != BASE]


def resources(directory: Path) -> list[Path]:
    return _listed(directory, "resources")


def components(directory: Path) -> list[Path]:
    return _listed(directory, "components")


def patches(directory: Path) -> list[Patch]:
    """Each document of each patch, inline or in a file."""
    found = []
    for entry in kustomization(directory).get("patches", []):
        text = (
            (directory / entry["path"]).read_text()
            if "path" in entry
            else entry["patch"]
        )
        for body in yaml.safe_load_all(text):
            if body is not None:
                found.append(Patch(directory, body, entry.get("target")))
    return found


def patch_targets(patch: Patch) -> list[Mapping[str, str]]:
    """What a patch applies to: its `target`, or the object a strategic merge
    patch names."""
    if patch.target is not None:
        return [patch.target]
    return [_coordinates(patch.body)]


def generators(directory: Path) -> list[Generator]:
    found = []
    body = kustomization(directory)
    for key, kind in (
        ("configMapGenerator", "ConfigMap"),
        ("secretGenerator", "Secret"),
    ):
        for entry in body.get(key, []):
            data = dict(item.split("=", 1) for item in entry.get("literals", []))
            files = tuple(directory / item for item in entry.get("files", []))
            envs = tuple(directory / item for item in entry.get("envs", []))
            for path in envs:
                data.update(_env_file(path))
            for path in files:
                data[path.name] = path.read_text()
            found.append(
                Generator(
                    kind,
                    entry["name"],
                    entry.get("namespace"),
                    entry.get("behavior", "create"),
                    data,
                    files + envs,
                )
            )
    return found


def auxiliary_files(directory: Path) -> list[Path]:
    """Files a layer reads that are not resources: patches, generator inputs."""
    files = [
        directory / entry["path"]
        for entry in kustomization(directory).get("patches", [])
        if "path" in entry
    ]
    for generator in generators(directory):
        files.extend(generator.files)
    return [path.resolve() for path in files]


def generated(target: Path) -> dict[tuple[str, str], dict[str, str]]:
    """The data of the generated ConfigMaps and Secrets of a deployable layer:
    the base's, merged with or replaced by its components' and then its own."""
    stack = [BASE] if target == BASE else [BASE, *components(target), target]
    data: dict[tuple[str, str], dict[str, str]] = {}
    for layer in stack:
        for generator in generators(layer):
            key = (generator.kind, generator.name)
            if generator.behavior == "merge":
                data[key] = {**data[key], **generator.data}
            else:
                data[key] = dict(generator.data)
    return data


# --- manifests ----------------------------------------------------------------


def manifest_files() -> list[Path]:
    """Every YAML file under deploy/ but kustomizations and their auxiliaries."""
    auxiliary = {path for layer in layers() for path in auxiliary_files(layer)}
    return sorted(
        path.resolve()
        for pattern in ("*.yaml", "*.yml")
        for path in DEPLOY.rglob(pattern)
        if path.name != "kustomization.yaml" and path.resolve() not in auxiliary
    )


def manifest_documents() -> list[Document]:
    return [doc for path in manifest_files() for doc in documents(path)]


@cache
def documents(path: Path) -> tuple[Document, ...]:
    bodies = yaml.safe_load_all(path.read_text())
    return tuple(
        Document(path, index, body)
        for index, body in enumerate(bodies)
        if body is not None
    )


@cache
def base_documents() -> tuple[Document, ...]:
    return tuple(doc for path in resources(BASE) for doc in documents(path))


def base_document(kind: str, name: str) -> Document:
    """The one document of the base of this kind and name."""
    (found,) = [doc for doc in base_documents() if (doc.kind, doc.name) == (kind, name)]
    return found


def matches(document: Document, target: Mapping[str, str]) -> bool:
    """Whether `document` is what a patch `target` selects."""
    wanted = _coordinates(document.body)
    return all(wanted[key] == value for key, value in target.items())


def apply_json_patch(document: Mapping[str, Any], operations: list[Any]) -> Any:
    """RFC 6902 add, remove, replace and test: what these layers use."""
    result: Any = copy.deepcopy(document)
    for operation in operations:
        *parents, last = [
            part.replace("~1", "/").replace("~0", "~")
            for part in operation["path"].split("/")[1:]
        ]
        holder = result
        for part in parents:
            holder = holder[int(part) if isinstance(holder, list) else part]
        key: Any = last
        if isinstance(holder, list):
            key = len(holder) if last == "-" else int(last)
        op = operation["op"]
        if op in ("test", "remove", "replace") and not _has(holder, key):
            raise AssertionError(f"{operation['path']} does not exist")
        if op == "test":
            assert holder[key] == operation["value"], operation
        elif op == "remove":
            del holder[key]
        elif op == "replace":
            holder[key] = operation["value"]
        elif op == "add" and isinstance(holder, list):
            holder.insert(key, operation["value"])
        elif op == "add":
            holder[key] = operation["value"]
        else:
            raise AssertionError(f"unsupported JSON patch operation {op}")
    return result


# --- the suite's workloads ------------------------------------------------------


def containers(
    docs: Iterable[Document],
) -> Iterator[tuple[Document, dict[str, Any], dict[str, Any]]]:
    """(workload, pod spec, container) for every container of `docs`."""
    for document in docs:
        pod = document.body.get("spec", {}).get("template", {}).get("spec")
        if pod is None:
            continue
        for container in pod.get("initContainers", []) + pod["containers"]:
            yield document, pod, container


@cache
def service_workloads() -> dict[str, tuple[Document, dict[str, Any]]]:
    """Each service's workload and container, found by its `serve` arguments."""
    found = {}
    for document, _, container in containers(base_documents()):
        arguments = container.get("args", [])
        if arguments[:1] == ["serve"]:
            found[arguments[1]] = (document, container)
    assert set(found) == set(SERVICES), found
    return found


def console_container() -> dict[str, Any]:
    (container,) = [
        container
        for _, _, container in containers(base_documents())
        if container.get("args", [])[:1] == ["console"]
    ]
    return container


def environment(container: Mapping[str, Any], target: str) -> dict[str, str]:
    """The container's variables as Kubernetes would set them in `target`;
    every reference must name a generated object and one of its keys."""
    data = generated((DEPLOY / target).resolve())
    variables: dict[str, str] = {}
    for source in container.get("envFrom", []):
        variables.update(data[("ConfigMap", source["configMapRef"]["name"])])
    for variable in container.get("env", []):
        if "value" in variable:
            variables[variable["name"]] = variable["value"]
            continue
        source = variable["valueFrom"]
        for key, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
            if key in source:
                reference = source[key]
                values = data[(kind, reference["name"])]
                variables[variable["name"]] = values[reference["key"]]
    return variables


def job_namespaces() -> dict[str, str]:
    """The namespace of each backend's Jobs, as its container sets it."""
    return {
        service: environment(service_workloads()[service][1], "base")[
            "STEPFORGE_KUBE_NAMESPACE"
        ]
        for service in BACKEND_VARIABLES
    }


def job_labels(component: str) -> dict[str, str]:
    """Labels every pod of a backend's Jobs carries."""
    return {labels.MANAGED_BY: labels.MANAGER, labels.COMPONENT: component}


def pod_labels(document: Document) -> dict[str, str]:
    found: dict[str, str] = document.body["spec"]["template"]["metadata"]["labels"]
    return found


def serves(service: Mapping[str, Any]) -> str | None:
    """Which `stepforge serve` service a Service's pods run, if any."""
    selector = service["spec"]["selector"]
    for name, (workload, _) in service_workloads().items():
        if selector.items() <= pod_labels(workload).items():
            return name
    return None


def service_named(namespace: str, name: str, port: int) -> dict[str, Any]:
    """The Service `name` of `namespace` in the base; it must expose `port`."""
    (service,) = [
        doc.body
        for doc in base_documents()
        if doc.kind == "Service" and (doc.namespace, doc.name) == (namespace, name)
    ]
    assert port in {item["port"] for item in service["spec"]["ports"]}, name
    return service


def selects(selector: Mapping[str, Any], pod: Mapping[str, str]) -> bool:
    """Whether a label selector matches the labels `pod`."""
    if not selector.get("matchLabels", {}).items() <= pod.items():
        return False
    for expression in selector.get("matchExpressions", []):
        value = pod.get(expression["key"])
        operator = expression["operator"]
        if operator == "In" and value not in expression["values"]:
            return False
        if operator == "NotIn" and value in expression["values"]:
            return False
        if operator == "Exists" and value is None:
            return False
        if operator == "DoesNotExist" and value is not None:
            return False
    return True


def flag(arguments: list[str], name: str) -> str:
    """The value of `--name=value` in `arguments`, given exactly once."""
    values = [
        item.split("=", 1)[1] for item in arguments if item.startswith(name + "=")
    ]
    assert len(values) == 1, f"{name} in {arguments}"
    return values[0]


def _listed(directory: Path, field: str) -> list[Path]:
    """The paths a kustomization lists under `field`, resolved."""
    return [
        (directory / item).resolve() for item in kustomization(directory).get(field, [])
    ]


def _coordinates(body: Mapping[str, Any]) -> dict[str, str]:
    """What a patch target selects an object by."""
    metadata = body["metadata"]
    group, _, version = body["apiVersion"].rpartition("/")
    return {
        "group": group,
        "version": version,
        "kind": body["kind"],
        "name": metadata["name"],
        "namespace": metadata.get("namespace") or "",
    }


def _env_file(path: Path) -> dict[str, str]:
    pairs = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value
    return pairs


def _has(holder: Any, key: Any) -> bool:
    if isinstance(holder, list):
        return isinstance(key, int) and 0 <= key < len(holder)
    return key in holder
