"""The Kubernetes manifests in deploy/: valid objects, a sound Kustomize
layout, pinned images, unprivileged pods, least-privilege RBAC and network
policies that hold step code in.

No cluster runs here: every manifest is checked against the official schema
of the newest Kubernetes version kubernetes-validate ships.
"""

from __future__ import annotations

import re
from typing import Any

import kubernetes_validate
import pytest
from deploy.layout import (
    BASE,
    DEPLOY,
    SERVICES,
    TARGETS,
    Document,
    apply_json_patch,
    base_document,
    base_documents,
    components,
    containers,
    generated,
    generators,
    job_labels,
    job_namespaces,
    kustomization,
    layers,
    layers_above_base,
    manifest_documents,
    manifest_files,
    matches,
    patch_targets,
    patches,
    pod_labels,
    resources,
    selects,
    service_workloads,
)

KUBERNETES_VERSION = kubernetes_validate.latest_version()
# Our own image is built and tagged by whoever deploys; every other is pinned.
SERVICE_IMAGE = "stepforge"
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
JOB_RULES = {
    ("batch", "jobs"): {"create", "get", "list", "watch", "delete"},
    ("", "pods"): {"get", "list", "watch"},
    ("", "pods/log"): {"get"},
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "document" in metafunc.fixturenames:
        metafunc.parametrize("document", manifest_documents(), ids=str)


# --- schema and layout ----------------------------------------------------------


def test_the_schema_is_a_current_kubernetes() -> None:
    major, minor = (int(part) for part in KUBERNETES_VERSION.split(".")[:2])

    assert (major, minor) >= (1, 35)


def test_every_manifest_is_a_valid_kubernetes_object(document: Document) -> None:
    kubernetes_validate.validate(document.body, KUBERNETES_VERSION, strict=True)


def test_kustomizations_name_only_files_that_exist() -> None:
    for layer in layers():
        for path in resources(layer) + components(layer):
            assert path.is_file() or (path / "kustomization.yaml").is_file(), path
        for generator in generators(layer):
            for path in generator.files:
                assert path.is_file(), path
        for entry in kustomization(layer).get("patches", []):
            assert "patch" in entry or (layer / entry["path"]).is_file(), entry


def test_every_manifest_of_the_base_is_listed() -> None:
    on_disk = {path for path in manifest_files() if path.parent == BASE}

    assert on_disk == set(resources(BASE))


def test_overlays_build_on_the_base_and_components_are_components() -> None:
    overlays = [layer for layer in layers() if layer.parent.name == "overlays"]

    assert {overlay.name for overlay in overlays} >= {"gpu", "external-s3"}
    for overlay in overlays:
        assert kustomization(overlay)["kind"] == "Kustomization"
        assert BASE in resources(overlay), overlay
    for layer in layers():
        for component in components(layer):
            assert kustomization(component)["kind"] == "Component", component


def test_every_patch_targets_one_resource_of_the_base() -> None:
    patched = 0
    for layer in layers_above_base():
        for patch in patches(layer):
            for wanted in patch_targets(patch):
                found = [doc for doc in base_documents() if matches(doc, wanted)]
                assert len(found) == 1, f"{layer}: {wanted} matches {found}"
                patched += 1
    assert patched >= 1


def test_every_generator_above_the_base_changes_one_of_the_base() -> None:
    base = {(gen.kind, gen.name, gen.namespace) for gen in generators(BASE)}
    for layer in layers_above_base():
        for generator in generators(layer):
            assert generator.behavior in ("merge", "replace"), generator
            assert (generator.kind, generator.name, generator.namespace) in base


def test_json_patches_apply_to_the_base_and_keep_it_valid() -> None:
    applied = 0
    for layer in layers_above_base():
        for patch in patches(layer):
            if not isinstance(patch.body, list):
                continue
            assert patch.target is not None
            (target,) = [doc for doc in base_documents() if matches(doc, patch.target)]
            result = apply_json_patch(target.body, patch.body)

            assert result != target.body
            kubernetes_validate.validate(result, KUBERNETES_VERSION, strict=True)
            applied += 1
    assert applied >= 1


def test_generated_objects_are_valid_in_every_layer() -> None:
    for target in TARGETS:
        for (kind, name), data in generated((DEPLOY / target).resolve()).items():
            body = {
                "apiVersion": "v1",
                "kind": kind,
                "metadata": {"name": name, "namespace": "stepforge"},
                "stringData" if kind == "Secret" else "data": data,
            }
            kubernetes_validate.validate(body, KUBERNETES_VERSION, strict=True)


# --- images and pods -------------------------------------------------------------


def test_images_are_pinned_by_digest_except_the_service_image() -> None:
    for document, _, container in containers(manifest_documents()):
        image = container["image"]
        if _image_name(image) == SERVICE_IMAGE:
            continue
        assert DIGEST.search(image), f"{document}: {image} is not pinned by digest"


def test_every_container_is_sized_and_runs_unprivileged() -> None:
    for document, pod, container in containers(manifest_documents()):
        where = f"{document} container {container['name']}"
        resources = container.get("resources", {})
        assert {"cpu", "memory"} <= resources.get("requests", {}).keys(), where
        assert "memory" in resources.get("limits", {}), where
        context = container.get("securityContext", {})
        assert context.get("runAsNonRoot") is True, where
        assert context.get("allowPrivilegeEscalation") is False, where
        assert context.get("readOnlyRootFilesystem") is True, where
        assert context.get("capabilities", {}).get("drop") == ["ALL"], where
        pod_context = pod.get("securityContext", {})
        assert pod_context.get("seccompProfile") == {"type": "RuntimeDefault"}, where
        assert pod.get("enableServiceLinks") is False, where


def test_only_the_kubernetes_backends_get_an_api_token() -> None:
    accounts = {
        (doc.namespace, doc.name): doc.body.get("automountServiceAccountToken", True)
        for doc in base_documents()
        if doc.kind == "ServiceAccount"
    }
    for document, pod, _ in containers(base_documents()):
        account = pod.get("serviceAccountName", "default")
        assert (document.namespace, account) in accounts, document
        default = accounts[(document.namespace, account)]
        mounts = pod.get("automountServiceAccountToken", default)
        assert mounts == (account in {"stepforge-build", "stepforge-execution"})
    for namespace in job_namespaces().values():
        assert accounts[(namespace, "default")] is False


def test_each_job_namespace_exists_with_a_pod_security_level() -> None:
    levels = {
        doc.name: doc.body["metadata"]["labels"].get(
            "pod-security.kubernetes.io/enforce"
        )
        for doc in base_documents()
        if doc.kind == "Namespace"
    }

    assert levels["stepforge"] == "restricted"
    assert levels[job_namespaces()["execution"]] == "restricted"
    # Kaniko builds image layers as root.
    assert levels[job_namespaces()["build"]] == "baseline"


def test_each_service_runs_once_with_its_data_on_a_volume() -> None:
    for name, (workload, container) in service_workloads().items():
        data_dir = next(
            item.split("=", 1)[1]
            for item in container["args"]
            if item.startswith("--data-dir=")
        )
        claims = {
            claim["metadata"]["name"]
            for claim in workload.body["spec"].get("volumeClaimTemplates", [])
        }
        mounted = {
            mount["name"]
            for mount in container["volumeMounts"]
            if mount["mountPath"] == data_dir
        }

        assert workload.kind == "StatefulSet", name
        assert workload.body["spec"]["replicas"] == 1, name
        assert mounted and mounted <= claims, name


# --- RBAC --------------------------------------------------------------------------


def test_job_roles_grant_exactly_what_the_backends_need() -> None:
    roles = [doc for doc in manifest_documents() if doc.kind == "Role"]

    assert {role.namespace for role in roles} == set(job_namespaces().values())
    for role in roles:
        granted: dict[tuple[str, str], set[str]] = {}
        for rule in role.body["rules"]:
            assert "resourceNames" not in rule and "nonResourceURLs" not in rule
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    granted.setdefault((group, resource), set()).update(rule["verbs"])
        assert granted == JOB_RULES, role


def test_each_backend_is_bound_to_the_role_of_its_job_namespace() -> None:
    bindings = [doc for doc in manifest_documents() if doc.kind == "RoleBinding"]
    bound = {
        (binding.namespace, subject["name"], subject["namespace"])
        for binding in bindings
        for subject in binding.body["subjects"]
    }

    for binding in bindings:
        assert binding.body["roleRef"]["kind"] == "Role"
    assert bound == {
        (namespace, f"stepforge-{service}", "stepforge")
        for service, namespace in job_namespaces().items()
    }


def test_nothing_is_granted_cluster_wide() -> None:
    kinds = {doc.kind for doc in manifest_documents()}

    assert not kinds & {"ClusterRole", "ClusterRoleBinding"}


# --- network policies --------------------------------------------------------------


def test_step_pods_reach_only_dns_and_the_object_store() -> None:
    namespace = job_namespaces()["execution"]
    (policy,) = _policies_for(namespace, job_labels("execution"))
    minio = base_document("StatefulSet", "stepforge-minio")
    (container,) = minio.body["spec"]["template"]["spec"]["containers"]
    (store_port,) = [item["containerPort"] for item in container["ports"]]

    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    assert not policy.get("ingress")
    dns, objects = policy["egress"]
    assert {(port["protocol"], port["port"]) for port in dns["ports"]} == {
        ("UDP", 53),
        ("TCP", 53),
    }
    assert [peer["namespaceSelector"] for peer in dns["to"]] == [
        {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}
    ]
    assert [port["port"] for port in objects["ports"]] == [store_port]
    (peer,) = objects["to"]
    assert peer["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": minio.namespace}
    }
    assert selects(peer["podSelector"], pod_labels(minio))
    for document in base_documents():
        if document.kind == "StatefulSet" and document is not minio:
            assert not selects(peer["podSelector"], pod_labels(document))


def test_kaniko_pods_accept_no_traffic() -> None:
    (policy,) = _policies_for(job_namespaces()["build"], job_labels("build"))

    assert "Ingress" in policy["policyTypes"] and not policy.get("ingress")


def test_services_accept_calls_from_the_gateway_and_each_other_only() -> None:
    allowed = {"gateway", *SERVICES}
    components = {
        pod_labels(doc)["app.kubernetes.io/component"]
        for doc, _, _ in containers(base_documents())
    }
    assert any(
        spec["podSelector"] == {} and not spec.get("ingress")
        for spec in _policies_for("stepforge", {})
    ), "no default deny of ingress in stepforge"
    for service in SERVICES:
        workload, _ = service_workloads()[service]
        for policy in _policies_for("stepforge", pod_labels(workload)):
            for rule in policy.get("ingress", []):
                assert rule.get("from"), f"{service}: ingress from anywhere"
                for peer in rule["from"]:
                    assert peer.keys() == {"podSelector"}, (service, peer)
                    callers = {
                        component
                        for component in components
                        if selects(
                            peer["podSelector"],
                            {"app.kubernetes.io/component": component},
                        )
                    }
                    assert callers and callers <= allowed, (service, callers)


def _policies_for(namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
    """The specs of the base's policies in `namespace` that select pods with
    `labels`; empty labels: the policies that select every pod."""
    return [
        doc.body["spec"]
        for doc in base_documents()
        if doc.kind == "NetworkPolicy"
        and doc.namespace == namespace
        and selects(doc.body["spec"]["podSelector"], labels)
    ]


def _image_name(image: str) -> str:
    """The repository of an image reference, without tag or digest."""
    repository = image.split("@", 1)[0]
    head, _, last = repository.rpartition("/")
    name = last.split(":", 1)[0]
    return f"{head}/{name}" if head else name
