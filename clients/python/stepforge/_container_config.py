"""The `container_config` a caller gives: checked, and turned into what is sent.

A step names the settings it sets itself, with a value or STEP_PARAMETER.NULL,
in a field mask; every other setting falls back on the project settings.
"""

from __future__ import annotations

import difflib
import os
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PureWindowsPath

from stepforge._step_parameter import STEP_PARAMETER
from stepforge.errors import InvalidArgumentError
from stepforge.v1 import common_pb2

STEP_KEYS = (
    "language",
    "repository_url",
    "repository_branch",
    "repository_deploy_key",
    "requirements_path",
    "included_folders",
    "system_dependencies",
    "dockerfile_path",
    "local_folder",
)
_STEP_ONLY_KEYS = ("dockerfile_path", "local_folder")
PROJECT_KEYS = tuple(key for key in STEP_KEYS if key not in _STEP_ONLY_KEYS)

_LIST_KEYS = ("included_folders", "system_dependencies")
_PATH_KEYS = ("requirements_path", "dockerfile_path")
# Keys that come back from the service, in the order the product document
# lists them.
_RETURNED_KEYS = (
    "language",
    "repository_url",
    "repository_branch",
    "included_folders",
    "system_dependencies",
    "dockerfile_path",
    "requirements_path",
)
_PREFIX = "container_config."


@dataclass(frozen=True)
class StepContainerConfig:
    """A step's own settings: values in `config`, the keys it sets in `mask_paths`.

    A key in `mask_paths` but unset in `config` was given STEP_PARAMETER.NULL.
    `local_folder` is where the code is read from; it is never sent.
    """

    config: common_pb2.ContainerConfig
    mask_paths: tuple[str, ...]
    local_folder: str | None


@dataclass(frozen=True)
class ResolvedPacking:
    """The settings that decide what is packed, after the project fallback."""

    included_folders: list[str] | None
    requirements_path: str | None
    dockerfile_path: str | None
    repository_url: str | None

    def extra_files(self) -> dict[str, str | None]:
        """The files packed besides the included ones, by the field naming them."""
        return {
            _PREFIX + "requirements_path": self.requirements_path,
            _PREFIX + "dockerfile_path": self.dockerfile_path,
        }


def parse_step_container_config(
    raw: Mapping[str, object] | None,
) -> StepContainerConfig:
    """Checks the `container_config` of create_step; raises InvalidArgumentError."""
    config = common_pb2.ContainerConfig()
    if raw is None:
        return StepContainerConfig(config, (), None)
    _check_keys(raw, STEP_KEYS, "")
    mask: list[str] = []
    local_folder = None
    for key in STEP_KEYS:
        if key not in raw:
            continue
        value = raw[key]
        field = _PREFIX + key
        if value is STEP_PARAMETER.FALLBACK_PROJECT:
            continue
        if value is STEP_PARAMETER.NULL:
            if key == "dockerfile_path":
                raise InvalidArgumentError.for_field(
                    field,
                    "cannot be STEP_PARAMETER.NULL: the project has no Dockerfile "
                    "to ignore; leave the key out to build without one",
                )
            if key == "local_folder":
                raise InvalidArgumentError.for_field(
                    field,
                    "cannot be STEP_PARAMETER.NULL; leave the key out when the "
                    "code is in a Git repository",
                )
            mask.append(key)
            continue
        if key == "local_folder":
            local_folder = _local_folder(value, field)
            continue
        _set_value(config, key, value, field)
        mask.append(key)
    return StepContainerConfig(config, tuple(mask), local_folder)


def resolve(
    step: StepContainerConfig, project: common_pb2.ContainerConfig
) -> ResolvedPacking:
    """What the packer needs: each setting from the step if it sets it, else the
    project; None where neither gives a value."""
    included = _source(step, project, "included_folders")
    return ResolvedPacking(
        included_folders=(
            list(included.included_folders.values)
            if included.HasField("included_folders")
            else None
        ),
        requirements_path=_resolved_string(step, project, "requirements_path"),
        dockerfile_path=_resolved_string(step, project, "dockerfile_path"),
        repository_url=_resolved_string(step, project, "repository_url"),
    )


def parse_project_container_config(
    raw: Mapping[str, object],
) -> tuple[common_pb2.ContainerConfig, tuple[str, ...]]:
    """Checks the `container_config` of update_project_settings.

    Returns the new values and the update mask, `container_config.<key>` for each
    key given; STEP_PARAMETER.NULL clears a value (named in the mask, unset).
    """
    _require_mapping(raw)
    for key in _STEP_ONLY_KEYS:
        if key in raw:
            raise InvalidArgumentError.for_field(
                _PREFIX + key,
                "is a step setting, not a project one; give it to create_step",
            )
    _check_keys(raw, PROJECT_KEYS, " of the project settings")
    config = common_pb2.ContainerConfig()
    mask = []
    for key in PROJECT_KEYS:
        if key not in raw:
            continue
        value = raw[key]
        field = _PREFIX + key
        if value is STEP_PARAMETER.FALLBACK_PROJECT:
            raise InvalidArgumentError.for_field(
                field,
                "cannot be STEP_PARAMETER.FALLBACK_PROJECT in the project "
                "settings; use STEP_PARAMETER.NULL to clear the value",
            )
        if value is not STEP_PARAMETER.NULL:
            _set_value(config, key, value, field)
        mask.append(field)
    return config, tuple(mask)


def container_config_to_dict(config: common_pb2.ContainerConfig) -> dict[str, object]:
    """The settings that have a value; the deploy key is never shown."""
    result: dict[str, object] = {}
    for key in _RETURNED_KEYS:
        if not config.HasField(key):  # type: ignore[arg-type]
            continue
        if key in _LIST_KEYS:
            result[key] = list(getattr(config, key).values)
        else:
            result[key] = getattr(config, key)
    return result


def normalize_relative_path(value: object, field: str) -> str:
    """`value` as a normalized path inside the code root; raises naming `field`."""
    if not isinstance(value, str) or not value:
        raise InvalidArgumentError.for_field(
            field, f"must be a non-empty path, got {value!r}"
        )
    if "\\" in value or "\0" in value:
        raise InvalidArgumentError.for_field(
            field, f"must use '/' between folders and hold no NUL, got {value!r}"
        )
    if value.startswith("/") or PureWindowsPath(value).drive:
        raise InvalidArgumentError.for_field(
            field, f"must be relative to the code folder, got {value!r}"
        )
    if ".." in value.split("/"):
        raise InvalidArgumentError.for_field(
            field, f"must stay inside the code folder, without '..', got {value!r}"
        )
    return posixpath.normpath(value)


def _require_mapping(raw: object) -> None:
    if not isinstance(raw, Mapping):
        raise InvalidArgumentError.for_field(
            "container_config", f"must be a dict, got {type(raw).__name__}"
        )


def _check_keys(
    raw: Mapping[str, object], allowed: tuple[str, ...], where: str
) -> None:
    _require_mapping(raw)
    for key in raw:
        if key in allowed:
            continue
        if not isinstance(key, str):
            raise InvalidArgumentError.for_field(
                "container_config", f"keys must be str, got {key!r}"
            )
        close = difflib.get_close_matches(key, allowed, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise InvalidArgumentError.for_field(
            _PREFIX + key,
            f"is not a setting{where}{hint}; the settings are: {', '.join(allowed)}",
        )


def _set_value(
    config: common_pb2.ContainerConfig, key: str, value: object, field: str
) -> None:
    if value is None:
        raise InvalidArgumentError.for_field(
            field,
            "None is ambiguous: use STEP_PARAMETER.NULL for no value, or leave "
            "the key out for the project's value",
        )
    if key in _LIST_KEYS:
        values = _string_list(key, value, field)
        target = (
            config.included_folders
            if key == "included_folders"
            else config.system_dependencies
        )
        # An empty list is a value of its own, distinct from no list at all.
        target.SetInParent()
        target.values.extend(values)
        return
    if not isinstance(value, str) or not value:
        raise InvalidArgumentError.for_field(
            field,
            f"must be a non-empty str or a STEP_PARAMETER, got {value!r}",
        )
    if key in _PATH_KEYS:
        value = normalize_relative_path(value, field)
    setattr(config, key, value)


def _string_list(key: str, value: object, field: str) -> list[str]:
    if not isinstance(value, (list, tuple)):
        raise InvalidArgumentError.for_field(
            field,
            f"must be a list of str or a STEP_PARAMETER, got {type(value).__name__}",
        )
    checked = []
    for index, item in enumerate(value):
        item_field = f"{field}[{index}]"
        if key == "included_folders":
            checked.append(normalize_relative_path(item, item_field))
        elif isinstance(item, str) and item.strip():
            checked.append(item)
        else:
            raise InvalidArgumentError.for_field(
                item_field, f"must be a non-empty str, got {item!r}"
            )
    return checked


def _local_folder(value: object, field: str) -> str:
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value:
        raise InvalidArgumentError.for_field(
            field, f"must be a non-empty path of a folder, got {value!r}"
        )
    return value


def _source(
    step: StepContainerConfig, project: common_pb2.ContainerConfig, key: str
) -> common_pb2.ContainerConfig:
    return step.config if key in step.mask_paths else project


def _resolved_string(
    step: StepContainerConfig, project: common_pb2.ContainerConfig, key: str
) -> str | None:
    source = _source(step, project, key)
    if not source.HasField(key):  # type: ignore[arg-type]
        return None
    value: str = getattr(source, key)
    return value
