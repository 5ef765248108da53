from __future__ import annotations

from pathlib import Path

import pytest

from stepforge._container_config import (
    PROJECT_KEYS,
    STEP_KEYS,
    StepContainerConfig,
    container_config_to_dict,
    normalize_relative_path,
    parse_project_container_config,
    parse_step_container_config,
    resolve,
)
from stepforge._step_parameter import STEP_PARAMETER
from stepforge.errors import InvalidArgumentError
from stepforge.v1 import common_pb2


def _project(**values: object) -> common_pb2.ContainerConfig:
    config = common_pb2.ContainerConfig()
    for key, value in values.items():
        if isinstance(value, list):
            target = getattr(config, key)
            target.SetInParent()
            target.values.extend(value)
        else:
            setattr(config, key, value)
    return config


def test_step_parameter_values() -> None:
    assert STEP_PARAMETER.FALLBACK_PROJECT.value == "fallback_project"
    assert STEP_PARAMETER.NULL.value == "null"
    # Not a str: the text "null" stays a value, never the marker.
    assert not isinstance(STEP_PARAMETER.NULL, str)


def test_no_config_sets_nothing() -> None:
    parsed = parse_step_container_config(None)
    assert parsed == StepContainerConfig(common_pb2.ContainerConfig(), (), None)
    assert parse_step_container_config({}).mask_paths == ()


def test_values_are_set_and_masked_in_a_fixed_order() -> None:
    parsed = parse_step_container_config(
        {
            "system_dependencies": ["libgomp1"],
            "language": "python:3.10-slim",
            "repository_url": "git@example.com:team/repo.git",
            "repository_branch": "main",
            "repository_deploy_key": "KEY",
            "requirements_path": "./requirements.txt",
            "included_folders": ["src/", "setup.cfg"],
            "dockerfile_path": "docker/Dockerfile",
            "local_folder": "my/path",
        }
    )
    config = parsed.config
    assert config.language == "python:3.10-slim"
    assert config.repository_url == "git@example.com:team/repo.git"
    assert config.repository_branch == "main"
    assert config.repository_deploy_key == "KEY"
    assert config.requirements_path == "requirements.txt"
    assert list(config.included_folders.values) == ["src", "setup.cfg"]
    assert list(config.system_dependencies.values) == ["libgomp1"]
    assert config.dockerfile_path == "docker/Dockerfile"
    assert parsed.mask_paths == tuple(k for k in STEP_KEYS if k != "local_folder")
    assert parsed.local_folder == "my/path"


def test_local_folder_accepts_a_path_object(tmp_path: Path) -> None:
    parsed = parse_step_container_config({"local_folder": tmp_path})
    assert parsed.local_folder == str(tmp_path)


def test_null_masks_the_key_without_a_value() -> None:
    parsed = parse_step_container_config(
        {
            "requirements_path": STEP_PARAMETER.NULL,
            "included_folders": STEP_PARAMETER.NULL,
        }
    )
    assert parsed.mask_paths == ("requirements_path", "included_folders")
    assert not parsed.config.HasField("requirements_path")
    assert not parsed.config.HasField("included_folders")


def test_fallback_project_is_the_same_as_leaving_the_key_out() -> None:
    parsed = parse_step_container_config(
        {
            "language": STEP_PARAMETER.FALLBACK_PROJECT,
            "dockerfile_path": STEP_PARAMETER.FALLBACK_PROJECT,
            "local_folder": STEP_PARAMETER.FALLBACK_PROJECT,
        }
    )
    assert parsed == parse_step_container_config({})


def test_empty_list_is_a_value_distinct_from_none() -> None:
    parsed = parse_step_container_config({"system_dependencies": []})
    assert parsed.config.HasField("system_dependencies")
    assert parsed.mask_paths == ("system_dependencies",)
    assert container_config_to_dict(parsed.config) == {"system_dependencies": []}


def test_unknown_key_is_named_with_allowed_keys() -> None:
    with pytest.raises(InvalidArgumentError) as raised:
        parse_step_container_config({"requirement_path": "r.txt"})
    message = str(raised.value)
    assert message.startswith("container_config.requirement_path: is not a setting")
    assert "did you mean 'requirements_path'" in message
    for key in STEP_KEYS:
        assert key in message
    assert raised.value.field_violations[0].field == "container_config.requirement_path"
    assert raised.value.code is None


@pytest.mark.parametrize("key", ["dockerfile_path", "local_folder"])
def test_null_is_refused_where_there_is_no_project_value(key: str) -> None:
    with pytest.raises(InvalidArgumentError, match=f"container_config.{key}: cannot"):
        parse_step_container_config({key: STEP_PARAMETER.NULL})


@pytest.mark.parametrize(
    ("key", "value", "rule"),
    [
        ("language", 3.10, "must be a non-empty str"),
        ("language", "", "must be a non-empty str"),
        ("requirements_path", None, "None is ambiguous"),
        ("included_folders", "src", "must be a list of str"),
        ("system_dependencies", {"a": 1}, "must be a list of str"),
        ("local_folder", 5, "must be a non-empty path"),
    ],
)
def test_values_of_the_wrong_type_are_rejected(
    key: str, value: object, rule: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=rule) as raised:
        parse_step_container_config({key: value})
    assert raised.value.field_violations[0].field == f"container_config.{key}"


def test_the_text_null_is_a_value_not_the_marker() -> None:
    parsed = parse_step_container_config({"repository_branch": "null"})
    assert parsed.config.repository_branch == "null"
    assert parsed.mask_paths == ("repository_branch",)


def test_to_dict_lists_keys_in_documented_order() -> None:
    config = _project(
        requirements_path="r.txt",
        system_dependencies=["git"],
        language="python:3.9-slim",
    )
    assert list(container_config_to_dict(config)) == [
        "language",
        "system_dependencies",
        "requirements_path",
    ]


@pytest.mark.parametrize(
    ("key", "value", "field", "rule"),
    [
        ("included_folders", ["src", ""], "included_folders[1]", "non-empty path"),
        ("included_folders", ["src", 3], "included_folders[1]", "non-empty path"),
        ("system_dependencies", ["curl", " "], "system_dependencies[1]", "non-empty"),
        ("included_folders", ["../up"], "included_folders[0]", "without '..'"),
        ("included_folders", ["a/../../b"], "included_folders[0]", "without '..'"),
        ("included_folders", ["/etc"], "included_folders[0]", "relative"),
        ("requirements_path", "/abs/req.txt", "requirements_path", "relative"),
        ("requirements_path", "C:/req.txt", "requirements_path", "relative"),
        ("dockerfile_path", "docker\\Dockerfile", "dockerfile_path", "'/'"),
        ("dockerfile_path", "../Dockerfile", "dockerfile_path", "without '..'"),
    ],
)
def test_bad_entries_and_paths_name_their_field(
    key: str, value: object, field: str, rule: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=rule) as raised:
        parse_step_container_config({key: value})
    assert raised.value.field_violations[0].field == f"container_config.{field}"


def test_config_must_be_a_mapping() -> None:
    with pytest.raises(InvalidArgumentError, match="container_config: must be a dict"):
        parse_step_container_config(["language"])  # type: ignore[arg-type]


def test_normalize_relative_path_cleans_harmless_forms() -> None:
    assert normalize_relative_path("./src//pkg/", "f") == "src/pkg"
    assert normalize_relative_path(".", "f") == "."


def test_resolve_takes_project_values_for_unmasked_keys() -> None:
    project = _project(
        requirements_path="requirements.txt",
        included_folders=["src"],
        repository_url="git@example.com:a/b.git",
    )
    resolved = resolve(parse_step_container_config({}), project)
    assert resolved.included_folders == ["src"]
    assert resolved.requirements_path == "requirements.txt"
    assert resolved.dockerfile_path is None
    assert resolved.repository_url == "git@example.com:a/b.git"


def test_resolve_prefers_step_values_and_null_hides_project_values() -> None:
    project = _project(
        requirements_path="requirements.txt",
        included_folders=["src"],
        repository_url="git@example.com:a/b.git",
    )
    step = parse_step_container_config(
        {
            "requirements_path": STEP_PARAMETER.NULL,
            "included_folders": ["lib", "main.py"],
            "repository_url": STEP_PARAMETER.NULL,
            "dockerfile_path": "Dockerfile",
        }
    )
    resolved = resolve(step, project)
    assert resolved.included_folders == ["lib", "main.py"]
    assert resolved.requirements_path is None
    assert resolved.repository_url is None
    assert resolved.dockerfile_path == "Dockerfile"
    assert resolved.extra_files() == {
        "container_config.requirements_path": None,
        "container_config.dockerfile_path": "Dockerfile",
    }


def test_null_included_folders_means_the_whole_folder() -> None:
    step = parse_step_container_config({"included_folders": STEP_PARAMETER.NULL})
    assert resolve(step, _project(included_folders=["src"])).included_folders is None


def test_project_config_masks_with_prefix_and_null_clears() -> None:
    config, mask = parse_project_container_config(
        {
            "requirements_path": STEP_PARAMETER.NULL,
            "language": "python:3.11-slim",
            "system_dependencies": ["git"],
        }
    )
    assert mask == (
        "container_config.language",
        "container_config.requirements_path",
        "container_config.system_dependencies",
    )
    assert config.language == "python:3.11-slim"
    assert not config.HasField("requirements_path")
    assert list(config.system_dependencies.values) == ["git"]


def test_project_config_accepts_every_project_key() -> None:
    raw = {key: STEP_PARAMETER.NULL for key in PROJECT_KEYS}
    _, mask = parse_project_container_config(raw)
    assert mask == tuple(f"container_config.{key}" for key in PROJECT_KEYS)


def test_project_config_refuses_fallback() -> None:
    with pytest.raises(InvalidArgumentError, match="FALLBACK_PROJECT") as raised:
        parse_project_container_config({"language": STEP_PARAMETER.FALLBACK_PROJECT})
    assert raised.value.field_violations[0].field == "container_config.language"


@pytest.mark.parametrize("key", ["dockerfile_path", "local_folder"])
def test_project_config_refuses_step_only_keys(key: str) -> None:
    with pytest.raises(InvalidArgumentError, match="is a step setting"):
        parse_project_container_config({key: "x"})


def test_project_config_refuses_unknown_keys() -> None:
    with pytest.raises(InvalidArgumentError, match="container_config.colour"):
        parse_project_container_config({"colour": "blue"})


def test_to_dict_shows_only_set_values_and_never_the_deploy_key() -> None:
    config = _project(
        language="python:3.10-slim",
        repository_deploy_key="SECRET",
        included_folders=["src"],
        dockerfile_path="Dockerfile",
    )
    config.has_repository_deploy_key = True
    assert container_config_to_dict(config) == {
        "language": "python:3.10-slim",
        "dockerfile_path": "Dockerfile",
        "included_folders": ["src"],
    }
    assert container_config_to_dict(common_pb2.ContainerConfig()) == {}
