"""Checking container settings and applying the project defaults to a step's."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence

from stepforge.services.core.errors import FieldViolation
from stepforge.services.core.languages import describe_unsupported, find_language
from stepforge.services.core.repositories import check_branch, check_repository_url
from stepforge.v1 import common_pb2

STRING_FIELDS = (
    "language",
    "repository_url",
    "repository_branch",
    "repository_deploy_key",
    "requirements_path",
    "dockerfile_path",
)
LIST_FIELDS = ("included_folders", "system_dependencies")
FIELDS = STRING_FIELDS + LIST_FIELDS
# A Dockerfile belongs to one step's code; a project cannot default it.
STEP_ONLY_FIELDS = frozenset({"dockerfile_path"})

DEBIAN_PACKAGE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9+.-]{1,127}$")
_PATH_FIELDS = frozenset({"requirements_path", "dockerfile_path"})
_MAX_STRING = 4096
_MAX_LIST = 256


def check_mask(
    paths: Sequence[str], field: str, allowed: Sequence[str]
) -> list[FieldViolation]:
    violations = []
    for index, path in enumerate(paths):
        if path not in allowed:
            violations.append(
                FieldViolation(
                    f"{field}.paths[{index}]",
                    f"unknown field {path!r}; allowed: {', '.join(allowed)}",
                )
            )
    if len(set(paths)) != len(paths):
        violations.append(FieldViolation(f"{field}.paths", "a field is named twice"))
    return violations


def check_container_config(
    config: common_pb2.ContainerConfig, field: str, *, for_project: bool
) -> list[FieldViolation]:
    """Checks every value that is set; unset fields are always fine."""
    violations = []
    for name in STRING_FIELDS:
        if not config.HasField(name):  # type: ignore[arg-type]
            continue
        value = getattr(config, name)
        path = f"{field}.{name}"
        if for_project and name in STEP_ONLY_FIELDS:
            violations.append(
                FieldViolation(path, "is a step setting, not a project one")
            )
        elif not value.strip():
            violations.append(FieldViolation(path, "must not be empty when set"))
        elif len(value) > _MAX_STRING and name != "repository_deploy_key":
            violations.append(
                FieldViolation(path, f"must be at most {_MAX_STRING} characters")
            )
        elif name == "language" and find_language(value) is None:
            violations.append(FieldViolation(path, describe_unsupported(value)))
        elif name == "repository_url" and check_repository_url(value):
            violations.append(FieldViolation(path, check_repository_url(value) or ""))
        elif name == "repository_branch" and check_branch(value):
            violations.append(FieldViolation(path, check_branch(value) or ""))
        elif name in _PATH_FIELDS:
            violations.extend(_check_relative_path(value, path))
    if config.HasField("included_folders"):
        values = list(config.included_folders.values)
        violations.extend(_check_list(values, f"{field}.included_folders"))
        for index, value in enumerate(values):
            violations.extend(
                _check_relative_path(value, f"{field}.included_folders[{index}]")
            )
    if config.HasField("system_dependencies"):
        values = list(config.system_dependencies.values)
        violations.extend(_check_list(values, f"{field}.system_dependencies"))
        for index, value in enumerate(values):
            if not DEBIAN_PACKAGE_PATTERN.match(value):
                violations.append(
                    FieldViolation(
                        f"{field}.system_dependencies[{index}]",
                        f"{value!r} is not a Debian package name "
                        "(lower-case letters, digits, '+', '-', '.')",
                    )
                )
    return violations


def apply_update(
    current: common_pb2.ContainerConfig,
    update: common_pb2.ContainerConfig,
    fields: Sequence[str],
) -> common_pb2.ContainerConfig:
    """Returns `current` with each named field taken from `update`, unset there
    meaning cleared."""
    merged = common_pb2.ContainerConfig()
    merged.CopyFrom(current)
    for name in fields:
        if update.HasField(name):  # type: ignore[arg-type]
            if name in LIST_FIELDS:
                getattr(merged, name).CopyFrom(getattr(update, name))
            else:
                setattr(merged, name, getattr(update, name))
        else:
            merged.ClearField(name)  # type: ignore[arg-type]
    merged.has_repository_deploy_key = merged.HasField("repository_deploy_key")
    return merged


def resolve_step_config(
    project: common_pb2.ContainerConfig,
    step: common_pb2.ContainerConfig,
    step_fields: Sequence[str],
) -> common_pb2.ContainerConfig:
    """The step's own values where it set them (or cleared them), else the
    project's. A Dockerfile never comes from the project."""
    project_defaults = common_pb2.ContainerConfig()
    project_defaults.CopyFrom(project)
    for name in STEP_ONLY_FIELDS:
        project_defaults.ClearField(name)  # type: ignore[arg-type]
    return apply_update(project_defaults, step, step_fields)


def without_secrets(config: common_pb2.ContainerConfig) -> common_pb2.ContainerConfig:
    """A copy safe to return: the deploy key is replaced by the fact of it."""
    public = common_pb2.ContainerConfig()
    public.CopyFrom(config)
    public.has_repository_deploy_key = config.HasField("repository_deploy_key")
    public.ClearField("repository_deploy_key")
    return public


def _check_relative_path(value: str, field: str) -> list[FieldViolation]:
    normalized = posixpath.normpath(value)
    if value.startswith("/") or "\\" in value or "\x00" in value:
        return [FieldViolation(field, "must be a relative path with '/' separators")]
    if normalized == ".." or normalized.startswith("../"):
        return [FieldViolation(field, "must stay inside the code folder (no '..')")]
    return []


def _check_list(values: Sequence[str], field: str) -> list[FieldViolation]:
    if len(values) > _MAX_LIST:
        return [FieldViolation(field, f"must hold at most {_MAX_LIST} entries")]
    return [
        FieldViolation(f"{field}[{index}]", "must not be empty")
        for index, value in enumerate(values)
        if not value.strip()
    ]
