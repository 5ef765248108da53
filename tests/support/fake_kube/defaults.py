"""Server-side defaults of new objects, and the pods the Job controller makes."""

from __future__ import annotations

import base64
from typing import Any

from .kinds import Kind
from .meta import Obj, clone, generated_name, name_of, new_uid, now, owner_reference

CONTROLLER_UID = "batch.kubernetes.io/controller-uid"
JOB_NAME = "batch.kubernetes.io/job-name"
# The older label names, which Kubernetes still sets too.
LEGACY_CONTROLLER_UID = "controller-uid"
LEGACY_JOB_NAME = "job-name"
DEFAULT_TERMINATION_MESSAGE_PATH = "/dev/termination-log"
DEFAULT_GRACE_PERIOD_S = 30
DEFAULT_BACKOFF_LIMIT = 6


def with_metadata(kind: Kind, body: Obj, namespace: str) -> Obj:
    """`body` with apiVersion, kind, name, uid and timestamps set."""
    obj = clone(body)
    obj["apiVersion"] = kind.api_version
    obj["kind"] = kind.name
    metadata = obj.setdefault("metadata", {})
    if kind.namespaced:
        metadata["namespace"] = namespace
    if not metadata.get("name") and metadata.get("generateName"):
        metadata["name"] = generated_name(metadata["generateName"])
    metadata["uid"] = new_uid()
    metadata["creationTimestamp"] = now()
    metadata["generation"] = 1
    for key in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds"):
        metadata.pop(key, None)
    return obj


def default_job(job: Obj) -> None:
    """Fills a new Job's defaults, its selector and its pod labels, in place."""
    spec = job.setdefault("spec", {})
    uid = job["metadata"]["uid"]
    name = name_of(job)
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
    spec.setdefault("parallelism", 1)
    spec.setdefault("backoffLimit", DEFAULT_BACKOFF_LIMIT)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault(
        "podReplacementPolicy",
        "Failed" if spec.get("podFailurePolicy") else "TerminatingOrFailed",
    )
    template = spec.setdefault("template", {})
    template_metadata = template.setdefault("metadata", {})
    if not job["metadata"].get("labels") and template_metadata.get("labels"):
        job["metadata"]["labels"] = dict(template_metadata["labels"])
    if not spec.get("manualSelector"):
        spec["selector"] = {"matchLabels": {CONTROLLER_UID: uid}}
        template_metadata["labels"] = {
            **(template_metadata.get("labels") or {}),
            CONTROLLER_UID: uid,
            JOB_NAME: name,
            LEGACY_CONTROLLER_UID: uid,
            LEGACY_JOB_NAME: name,
        }
    default_pod_spec(template.setdefault("spec", {}))
    job["status"] = {}


def default_pod(pod: Obj) -> None:
    """Fills a new Pod's defaults and initial status, in place."""
    default_pod_spec(pod.setdefault("spec", {}))
    pod["status"] = {"phase": "Pending", "qosClass": _qos_class(pod["spec"])}


def default_secret(secret: Obj) -> None:
    """Moves a new Secret's stringData into data, base64-encoded, in place."""
    secret.setdefault("type", "Opaque")
    plain = secret.pop("stringData", None) or {}
    data = secret.setdefault("data", {})
    for key, value in plain.items():
        data[key] = base64.b64encode(str(value).encode()).decode()


def default_pod_spec(spec: Obj) -> None:
    """Fills the defaults of a pod spec, in place."""
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", DEFAULT_GRACE_PERIOD_S)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    for container in [*(spec.get("initContainers") or []), *spec.get("containers", [])]:
        if not isinstance(container, dict):
            continue
        container.setdefault("terminationMessagePath", DEFAULT_TERMINATION_MESSAGE_PATH)
        container.setdefault("terminationMessagePolicy", "File")
        container.setdefault("imagePullPolicy", _pull_policy(container.get("image")))
        resources = container.setdefault("resources", {})
        if resources.get("limits") and not resources.get("requests"):
            resources["requests"] = dict(resources["limits"])


def pod_for_job(job: Obj) -> Obj:
    """A new Pod for `job`, made from its template, as the Job controller makes
    it (metadata not yet filled in: see `with_metadata`)."""
    template = clone(job["spec"]["template"])
    metadata: dict[str, Any] = template.get("metadata") or {}
    name = name_of(job)
    labels = {**(metadata.get("labels") or {}), JOB_NAME: name, LEGACY_JOB_NAME: name}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": f"{name}-",
            "labels": labels,
            "annotations": dict(metadata.get("annotations") or {}),
            "ownerReferences": [owner_reference(job)],
        },
        "spec": template.get("spec") or {},
    }


def _pull_policy(image: Any) -> str:
    if not isinstance(image, str):
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    if "@" in last:
        return "IfNotPresent"
    if ":" not in last or last.endswith(":latest"):
        return "Always"
    return "IfNotPresent"


def _qos_class(spec: Obj) -> str:
    containers = [*(spec.get("initContainers") or []), *spec.get("containers", [])]
    resources = [c.get("resources") or {} for c in containers if isinstance(c, dict)]
    if not any(r.get("limits") or r.get("requests") for r in resources):
        return "BestEffort"
    guaranteed = all(
        (r.get("limits") or {}).get(name) is not None
        for r in resources
        for name in ("cpu", "memory")
    )
    return "Guaranteed" if guaranteed else "Burstable"
