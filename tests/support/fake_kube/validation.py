"""Validating new objects: the official schema, then the API server's rules."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import kubernetes_validate

from .errors import ApiError, invalid
from .kinds import Kind
from .meta import Obj
from .nodes import GPU_RESOURCE

# The newest Kubernetes version the installed kubernetes-validate describes.
SCHEMA_VERSION = kubernetes_validate.latest_version()

Cause = tuple[str, str, str]  # field, reason, message

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_JOB_RESTART_POLICIES = ("OnFailure", "Never")
_POD_RESTART_POLICIES = ("Always", "OnFailure", "Never")
_DNS_LABEL_RULE = "must be a lowercase RFC 1123 label (a-z, 0-9, '-'), at most 63"
_LABEL_RULE = "must be at most 63 of A-Z, a-z, 0-9, '-', '_', '.', alphanumeric at ends"


def check_schema(kind: Kind, body: Obj) -> None:
    """Invalid (422) unless `body` matches the official strict schema."""
    try:
        kubernetes_validate.validate(body, SCHEMA_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        field = "".join(
            f"[{step}]" if isinstance(step, int) else f".{step}" for step in error.path
        ).lstrip(".")
        cause = (field or "<root>", "FieldValueInvalid", error.message)
        raise invalid(kind.name, kind.group, _name(body), [cause]) from None
    except kubernetes_validate.SchemaNotFoundError as error:
        raise ApiError("BadRequest", error.message) from None


def check_rules(kind: Kind, obj: Obj) -> None:
    """Invalid (422) unless the defaulted `obj` follows the API server's rules
    the fake relies on (names, labels, images, restart policies, volumes)."""
    causes = _metadata_causes(kind, obj)
    spec = obj.get("spec") or {}
    if kind.name == "Job":
        causes += _job_causes(spec)
    elif kind.name == "Pod":
        causes += pod_spec_causes(spec, "spec", _POD_RESTART_POLICIES)
    if causes:
        raise invalid(kind.name, kind.group, _name(obj), causes)


def pod_spec_causes(
    spec: Mapping[str, Any], path: str, restart_policies: Sequence[str]
) -> list[Cause]:
    """What is wrong with a pod spec."""
    causes: list[Cause] = []
    policy = spec.get("restartPolicy")
    if policy not in restart_policies:
        allowed = ", ".join(f'"{value}"' for value in restart_policies)
        causes.append(_bad(f"{path}.restartPolicy", policy, f"supported: {allowed}"))
    volumes = spec.get("volumes") or []
    causes += _volume_causes(volumes, f"{path}.volumes")
    volume_names = {volume.get("name") for volume in volumes}
    containers = spec.get("containers") or []
    if not containers:
        causes.append(_required(f"{path}.containers"))
    seen: set[str] = set()
    sections = (("initContainers", spec.get("initContainers") or []),)
    for section, items in (*sections, ("containers", containers)):
        for index, container in enumerate(items):
            where = f"{path}.{section}[{index}]"
            causes += _container_causes(container, where, volume_names, seen)
    deadline = spec.get("activeDeadlineSeconds")
    if deadline is not None and deadline <= 0:
        causes.append(
            _bad(f"{path}.activeDeadlineSeconds", deadline, "must be greater than 0")
        )
    return causes


def _job_causes(spec: Mapping[str, Any]) -> list[Cause]:
    causes: list[Cause] = []
    for field, minimum in (
        ("backoffLimit", 0),
        ("completions", 0),
        ("parallelism", 0),
        ("ttlSecondsAfterFinished", 0),
        ("activeDeadlineSeconds", 1),
    ):
        value = spec.get(field)
        if value is not None and value < minimum:
            causes.append(_bad(f"spec.{field}", value, f"must be at least {minimum}"))
    if spec.get("completionMode") != "NonIndexed":
        rule = 'the fake cluster emulates only "NonIndexed" Jobs'
        causes.append(_bad("spec.completionMode", spec.get("completionMode"), rule))
    template = spec.get("template") or {}
    pod_spec = template.get("spec") or {}
    causes += pod_spec_causes(pod_spec, "spec.template.spec", _JOB_RESTART_POLICIES)
    restart_policy = pod_spec.get("restartPolicy")
    if spec.get("podFailurePolicy") and restart_policy != "Never":
        rule = 'only "Never" is supported when podFailurePolicy is specified'
        causes.append(_bad("spec.template.spec.restartPolicy", restart_policy, rule))
    if spec.get("manualSelector"):
        selector = (spec.get("selector") or {}).get("matchLabels") or {}
        labels = (template.get("metadata") or {}).get("labels") or {}
        if not selector or any(labels.get(k) != v for k, v in selector.items()):
            rule = "`selector` does not match template `labels`"
            causes.append(_bad("spec.selector", selector, rule))
    return causes


def _container_causes(
    container: Mapping[str, Any], where: str, volume_names: set[Any], seen: set[str]
) -> list[Cause]:
    causes: list[Cause] = []
    name = container.get("name") or ""
    if not name:
        causes.append(_required(f"{where}.name"))
    elif not _DNS_LABEL.match(name) or len(name) > 63:
        causes.append(_bad(f"{where}.name", name, _DNS_LABEL_RULE))
    elif name in seen:
        causes.append((f"{where}.name", "FieldValueDuplicate", f'Duplicate: "{name}"'))
    seen.add(name)
    if not str(container.get("image") or "").strip():
        causes.append(_required(f"{where}.image"))
    for index, item in enumerate(container.get("env") or []):
        env_name = item.get("name") or ""
        if not _ENV_NAME.match(env_name):
            rule = "must be letters, digits, '_', '-' or '.', not starting with a digit"
            causes.append(_bad(f"{where}.env[{index}].name", env_name, rule))
        if item.get("value") and item.get("valueFrom"):
            rule = "may not be specified when `value` is not empty"
            causes.append(_bad(f"{where}.env[{index}].valueFrom", "...", rule))
    mount_paths: set[str] = set()
    for index, mount in enumerate(container.get("volumeMounts") or []):
        field = f"{where}.volumeMounts[{index}]"
        if mount.get("name") not in volume_names:
            message = f'Not found: "{mount.get("name")}"'
            causes.append((f"{field}.name", "FieldValueNotFound", message))
        path = mount.get("mountPath") or ""
        if not path:
            causes.append(_required(f"{field}.mountPath"))
        elif path in mount_paths:
            causes.append(_bad(f"{field}.mountPath", path, "must be unique"))
        mount_paths.add(path)
    return causes + _gpu_causes(container.get("resources") or {}, f"{where}.resources")


def _gpu_causes(resources: Mapping[str, Any], where: str) -> list[Cause]:
    causes: list[Cause] = []
    values = {}
    for section in ("limits", "requests"):
        value = (resources.get(section) or {}).get(GPU_RESOURCE)
        if value is None:
            continue
        if not str(value).isdigit():
            field = f"{where}.{section}[{GPU_RESOURCE}]"
            causes.append(_bad(field, value, "must be an integer"))
            continue
        values[section] = int(str(value))
    if len(values) == 2 and values["limits"] != values["requests"]:
        rule = f"must equal the {GPU_RESOURCE} limit of {values['limits']}"
        causes.append(_bad(f"{where}.requests", values["requests"], rule))
    return causes


def _volume_causes(volumes: Sequence[Mapping[str, Any]], where: str) -> list[Cause]:
    causes: list[Cause] = []
    names: set[str] = set()
    for index, volume in enumerate(volumes):
        name = volume.get("name") or ""
        if not _DNS_LABEL.match(name):
            causes.append(_bad(f"{where}[{index}].name", name, _DNS_LABEL_RULE))
        elif name in names:
            message = f'Duplicate: "{name}"'
            causes.append((f"{where}[{index}].name", "FieldValueDuplicate", message))
        names.add(name)
        sources = [key for key in volume if key != "name"]
        if len(sources) != 1:
            rule = "must specify exactly 1 volume type"
            causes.append(_bad(f"{where}[{index}]", sources, rule))
    return causes


def _metadata_causes(kind: Kind, obj: Obj) -> list[Cause]:
    causes: list[Cause] = []
    metadata = obj.get("metadata") or {}
    name = metadata.get("name") or ""
    short = kind.name in ("Job", "Namespace")
    pattern, limit = (_DNS_LABEL, 63) if short else (_DNS_SUBDOMAIN, 253)
    if not name:
        causes.append(_required("metadata.name", "name or generateName is required"))
    elif not pattern.match(name) or len(name) > limit:
        rule = f"must be a lowercase RFC 1123 name of at most {limit} characters"
        causes.append(_bad("metadata.name", name, rule))
    spec = obj.get("spec") or {}
    template_metadata = (spec.get("template") or {}).get("metadata") or {}
    for where, labels in (
        ("metadata.labels", metadata.get("labels") or {}),
        ("spec.template.metadata.labels", template_metadata.get("labels") or {}),
    ):
        for key, value in labels.items():
            causes += _label_causes(where, key, value)
    return causes


def _label_causes(where: str, key: str, value: Any) -> list[Cause]:
    prefix, _, label_name = key.rpartition("/")
    causes: list[Cause] = []
    bad_prefix = bool(prefix) and (
        not _DNS_SUBDOMAIN.match(prefix) or len(prefix) > 253
    )
    if bad_prefix or not _LABEL_NAME.match(label_name) or len(label_name) > 63:
        causes.append(_bad(where, key, "not a valid label key"))
    if not isinstance(value, str) or not _LABEL_VALUE.match(value) or len(value) > 63:
        causes.append(_bad(where, value, f"a label value {_LABEL_RULE}"))
    return causes


def _required(field: str, detail: str = "") -> Cause:
    message = f"Required value: {detail}" if detail else "Required value"
    return (field, "FieldValueRequired", message)


def _bad(field: str, value: Any, rule: str) -> Cause:
    if value is None:
        return _required(field, rule)
    return (field, "FieldValueInvalid", f"Invalid value: {value!r}: {rule}")


def _name(obj: Obj) -> str:
    metadata = obj.get("metadata") or {}
    return str(metadata.get("name") or metadata.get("generateName") or "")
