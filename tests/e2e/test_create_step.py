"""create_step end to end: the SDK, the registry and the build service over gRPC."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from support.suite import SuiteUnderTest

from stepforge import (
    INPUT_OUTPUT_TYPES,
    STEP_PARAMETER,
    AlreadyExistsError,
    Input,
    InvalidArgumentError,
    NotFoundError,
    Output,
    StepBuildError,
)
from stepforge.errors import ResourceExhaustedError
from stepforge.services.core.object_store import open_object_store

ENTRY = "src/my_entry_function_step.py"


def create_example(suite: SuiteUnderTest, folder: Path, **overrides: object) -> dict:
    arguments: dict[str, object] = {
        "function_path": ENTRY,
        "function_name": "entryStep",
        "container_config": {"local_folder": str(folder)},
        "inputs": [Input(name="dataX_input", data_type="json")],
        "outputs": [Output(name="result_output", data_type="json")],
    }
    arguments.update(overrides)
    return suite.sdk.create_step(**arguments)  # type: ignore[arg-type]


def stored_archives(suite: SuiteUnderTest) -> list[str]:
    store = open_object_store(suite.object_store_url)
    return [info.key for info in store.list("archives/")]


def test_create_step_returns_the_documented_dict_when_ready(
    suite: SuiteUnderTest, code_folder: Path
) -> None:
    step = create_example(suite, code_folder, description="echo")

    assert step["parameters"] == {
        "step_name": "entryStep",
        "function_path": ENTRY,
        "function_name": "entryStep",
        "description": "echo",
        "inputs": [
            {
                "name": "dataX_input",
                "data_type": "json",
                "description": "",
                "is_required": False,
                "default_value": None,
            }
        ],
        "outputs": [
            {
                "name": "result_output",
                "data_type": "json",
                "description": "",
                "default_value": None,
            }
        ],
    }
    info = step["creation_info"]
    assert info["status"] == "Ready"
    assert info["origin"] == "local"
    assert info["commit_id"] is None
    assert info["created_at"] <= info["updated_at"]
    assert step["container_config"]["language"].startswith("python:3.")
    assert len(stored_archives(suite)) == 1


def test_steps_can_be_read_listed_and_deleted(
    suite: SuiteUnderTest, code_folder: Path
) -> None:
    created = create_example(suite, code_folder, step_name="first")
    create_example(suite, code_folder, name="second")

    assert suite.sdk.get_step("first") == created
    assert [s["parameters"]["step_name"] for s in suite.sdk.list_steps()] == [
        "first",
        "second",
    ]
    suite.sdk.delete_step("first")
    assert suite.sdk.get_step("first") is None
    assert [s["parameters"]["step_name"] for s in suite.sdk.list_steps()] == ["second"]
    with pytest.raises(NotFoundError, match="first"):
        suite.sdk.delete_step("first")


def test_identical_code_is_stored_once(
    suite: SuiteUnderTest, code_folder: Path
) -> None:
    create_example(suite, code_folder, step_name="one")
    create_example(suite, code_folder, step_name="two")

    assert len(stored_archives(suite)) == 1


def test_download_step_local_folder_writes_the_packed_files(
    suite: SuiteUnderTest, code_folder: Path, tmp_path: Path
) -> None:
    create_example(
        suite,
        code_folder,
        container_config={
            "local_folder": str(code_folder),
            "included_folders": ["src"],
            "requirements_path": "requirements.txt",
        },
    )

    suite.sdk.download_step_local_folder("entryStep", str(tmp_path / "out"))

    archive = tmp_path / "out" / "entryStep.tgz"
    with tarfile.open(archive) as tar:
        names = sorted(member.name for member in tar.getmembers() if member.isfile())
        content = tar.extractfile(ENTRY).read()  # type: ignore[union-attr]
    assert names == ["requirements.txt", ENTRY]
    assert content == (code_folder / ENTRY).read_bytes()


def test_duplicate_name_is_refused(suite: SuiteUnderTest, code_folder: Path) -> None:
    create_example(suite, code_folder)

    with pytest.raises(AlreadyExistsError, match="entryStep"):
        create_example(suite, code_folder)


def test_failed_build_raises_with_the_log_and_can_be_replaced(
    suite: SuiteUnderTest, code_folder: Path
) -> None:
    with pytest.raises(StepBuildError) as raised:
        create_example(suite, code_folder, function_name="missingFunction")

    assert "missingFunction" in str(raised.value)
    step = suite.sdk.get_step("missingFunction")
    assert step is not None and step["creation_info"]["status"] == "Failed"

    (code_folder / "src" / "fixed.py").write_text("def missingFunction():\n    pass\n")
    replaced = create_example(
        suite,
        code_folder,
        function_path="src/fixed.py",
        function_name="missingFunction",
        inputs=[],
    )
    assert replaced["creation_info"]["status"] == "Ready"


def test_declared_input_that_is_not_a_parameter_fails_the_build(
    local_suite: SuiteUnderTest, code_folder: Path
) -> None:
    with pytest.raises(StepBuildError, match="not_a_parameter"):
        create_example(
            local_suite,
            code_folder,
            inputs=[
                Input(name="dataX_input", data_type="json"),
                Input(name="not_a_parameter", data_type="number"),
            ],
        )


def test_missing_system_dependency_fails_the_build_with_the_list(
    local_suite: SuiteUnderTest, code_folder: Path
) -> None:
    with pytest.raises(StepBuildError, match="no-such-package-stepforge"):
        create_example(
            local_suite,
            code_folder,
            container_config={
                "local_folder": str(code_folder),
                "system_dependencies": ["bash", "no-such-package-stepforge"],
            },
        )


def test_code_over_the_limit_is_refused_before_upload(
    suite: SuiteUnderTest, code_folder: Path
) -> None:
    (code_folder / "big.bin").write_bytes(b"\0" * 5_000_001)

    with pytest.raises(ResourceExhaustedError) as raised:
        create_example(suite, code_folder)

    message = str(raised.value)
    assert "big.bin" in message and "included_folders" in message
    assert suite.sdk.get_step("entryStep") is None
    assert stored_archives(suite) == []


def test_project_settings_are_the_fallback_and_null_clears_them(
    local_suite: SuiteUnderTest, code_folder: Path
) -> None:
    sdk = local_suite.sdk
    settings = local_suite.admin_sdk.update_project_settings(
        container_config={
            "requirements_path": "requirements.txt",
            "system_dependencies": ["bash"],
        }
    )
    assert settings["container_config"]["requirements_path"] == "requirements.txt"
    assert sdk.get_project_settings() == settings

    fallback = create_example(local_suite, code_folder, step_name="fallback")
    nulled = create_example(
        local_suite,
        code_folder,
        step_name="nulled",
        container_config={
            "local_folder": str(code_folder),
            "requirements_path": STEP_PARAMETER.NULL,
            "system_dependencies": STEP_PARAMETER.FALLBACK_PROJECT,
        },
    )

    assert fallback["container_config"]["requirements_path"] == "requirements.txt"
    assert fallback["container_config"]["system_dependencies"] == ["bash"]
    assert "requirements_path" not in nulled["container_config"]
    assert nulled["container_config"]["system_dependencies"] == ["bash"]

    cleared = local_suite.admin_sdk.update_project_settings(
        container_config={"requirements_path": STEP_PARAMETER.NULL}
    )
    assert "requirements_path" not in cleared["container_config"]


def test_an_unsupported_language_is_refused_naming_the_field(
    local_suite: SuiteUnderTest, code_folder: Path
) -> None:
    with pytest.raises(InvalidArgumentError) as raised:
        create_example(
            local_suite,
            code_folder,
            container_config={"local_folder": str(code_folder), "language": "ruby:3"},
        )
    assert "container_config.language" in str(raised.value)
    assert any(
        "language" in violation.field for violation in raised.value.field_violations
    )
    assert local_suite.sdk.get_step("entryStep") is None


def test_languages_include_the_documented_ones(local_suite: SuiteUnderTest) -> None:
    names = {language["name"] for language in local_suite.sdk.list_languages()}

    assert {
        "python:3.8-slim",
        "python:3.9-slim",
        "python:3.10-slim",
        "python-cuda:3.8-11.8",
        "python-cuda:3.10-12.1",
    } <= names


def test_the_documented_three_input_example_runs_unchanged(
    local_suite: SuiteUnderTest, tmp_path: Path
) -> None:
    folder = tmp_path / "my" / "path"
    (folder / "src").mkdir(parents=True)
    (folder / "src" / "my_reusable_funtion.py").write_text(
        "def my_function(input1, input2, input3):\n    return {}\n"
    )
    sdk = local_suite.sdk
    input1 = Input(
        name="input1",
        data_type="string",
        description="A parameter named input1, its type is a string",
        is_required=True,
    )
    input2 = Input(
        name="input2",
        data_type="file",
        description="A parameter named input2, its type is a file",
    )
    input3 = Input(name="input3", data_type=INPUT_OUTPUT_TYPES.NUMBER)
    prediction_output = Output(
        name="prediction",
        data_type="file",
        default_value="default,content,here",
    )

    step = sdk.create_step(
        function_path="src/my_reusable_funtion.py",
        function_name="my_function",
        description="Apply the model to the sea",
        container_config={
            "local_folder": str(folder),
        },
        inputs_list=[input1, input2, input3],
        outputs_list=[prediction_output],
    )

    assert step["parameters"]["step_name"] == "my_function"
    assert [i["data_type"] for i in step["parameters"]["inputs"]] == [
        "string",
        "file",
        "number",
    ]
    assert step["parameters"]["outputs"][0]["default_value"] == b"default,content,here"
    assert step["creation_info"]["status"] == "Ready"


def test_the_null_example_packs_the_current_folder(
    local_suite: SuiteUnderTest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "src" / "helloWorld.py").write_text("def helloWorld():\n    pass\n")
    monkeypatch.chdir(project)
    sdk = local_suite.sdk

    sdk.create_step(
        function_path="src/helloWorld.py",
        function_name="helloWorld",
        step_name="my_step_name",
        container_config={
            "requirements_path": STEP_PARAMETER.NULL,
        },
    )

    assert sdk.get_step("my_step_name")["creation_info"]["status"] == "Ready"  # type: ignore[index]


def test_create_step_checks_arguments_before_any_request(tmp_path: Path) -> None:
    from stepforge import StepforgeSdk

    # Nothing listens there: an argument error must come before any call.
    sdk = StepforgeSdk("127.0.0.1:9", "token")
    arguments = {"function_path": ENTRY, "function_name": "entryStep"}
    with pytest.raises(InvalidArgumentError, match="timeout_s"):
        sdk.create_step(timeout_s=60, **arguments)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="step_name"):
        sdk.create_step(step_name="bad name!", **arguments)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="step_name"):
        sdk.create_step(step_name="x" * 64, **arguments)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="step_name"):
        sdk.create_step(step_name="a", name="b", **arguments)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="inputs"):
        sdk.create_step(inputs=["dataX_input"], **arguments)  # type: ignore[arg-type, list-item]
    with pytest.raises(InvalidArgumentError, match="container_config"):
        sdk.create_step(container_config={"colour": "red"}, **arguments)  # type: ignore[arg-type]
    sdk.close()


def test_function_path_outside_the_included_folders_is_refused(
    local_suite: SuiteUnderTest, code_folder: Path
) -> None:
    with pytest.raises(InvalidArgumentError, match="function_path"):
        create_example(
            local_suite,
            code_folder,
            container_config={
                "local_folder": str(code_folder),
                "included_folders": ["notes.md"],
            },
        )


def test_build_log_is_kept_with_the_step(
    local_suite: SuiteUnderTest, code_folder: Path
) -> None:
    create_example(local_suite, code_folder)

    log = local_suite.sdk.get_step_build_log("entryStep")

    assert "code archive stored" in log
    assert io.StringIO(log).readline()[:4].isdigit()
