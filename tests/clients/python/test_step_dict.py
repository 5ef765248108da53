from __future__ import annotations

from datetime import datetime, timezone

from google.protobuf import timestamp_pb2

from stepforge._step_dict import (
    input_to_proto,
    output_to_proto,
    step_name_of,
    step_to_dict,
)
from stepforge.io import Input, Output
from stepforge.v1 import common_pb2


def _timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def _step() -> common_pb2.Step:
    config = common_pb2.ContainerConfig(
        language="python:3.10-slim",
        requirements_path="requirements.txt",
        repository_deploy_key="SECRET",
        has_repository_deploy_key=True,
    )
    config.included_folders.values.extend(["src"])
    return common_pb2.Step(
        name="steps/my-step",
        function_path="src/step.py",
        function_name="main",
        description="Apply the model",
        inputs=[
            input_to_proto(Input("text", "string", "some text", True, "hello")),
            input_to_proto(Input("data", "file")),
            input_to_proto(Input("table", "json", default_value={"k": [1, 2]})),
        ],
        outputs=[
            output_to_proto(Output("prediction", "file", default_value="a,b")),
            output_to_proto(Output("score", "number", "how sure")),
        ],
        container_config=config,
        status=common_pb2.STEP_STATUS_READY,
        origin=common_pb2.STEP_ORIGIN_LOCAL,
        create_time=_timestamp(datetime(2024, 5, 1, 12, 30, tzinfo=timezone.utc)),
        update_time=_timestamp(
            datetime(2024, 5, 1, 12, 32, 5, 250000, tzinfo=timezone.utc)
        ),
        build_log="ok",
        archive_sha256="ab" * 32,
        archive_size_bytes=123,
    )


def test_step_becomes_the_documented_dict() -> None:
    assert step_to_dict(_step()) == {
        "parameters": {
            "step_name": "my-step",
            "function_path": "src/step.py",
            "function_name": "main",
            "description": "Apply the model",
            "inputs": [
                {
                    "name": "text",
                    "data_type": "string",
                    "description": "some text",
                    "is_required": True,
                    "default_value": "hello",
                },
                {
                    "name": "data",
                    "data_type": "file",
                    "description": "",
                    "is_required": False,
                    "default_value": None,
                },
                {
                    "name": "table",
                    "data_type": "json",
                    "description": "",
                    "is_required": False,
                    "default_value": {"k": [1, 2]},
                },
            ],
            "outputs": [
                {
                    "name": "prediction",
                    "data_type": "file",
                    "description": "",
                    "default_value": b"a,b",
                },
                {
                    "name": "score",
                    "data_type": "number",
                    "description": "how sure",
                    "default_value": None,
                },
            ],
        },
        "container_config": {
            "language": "python:3.10-slim",
            "included_folders": ["src"],
            "requirements_path": "requirements.txt",
        },
        "creation_info": {
            "created_at": "2024-05-01T12:30:00+00:00",
            "updated_at": "2024-05-01T12:32:05.250000+00:00",
            "commit_id": None,
            "status": "Ready",
            "origin": "local",
        },
    }


def test_data_types_are_plain_strings() -> None:
    inputs = step_to_dict(_step())["parameters"]["inputs"]
    assert all(type(entry["data_type"]) is str for entry in inputs)


def test_times_parse_back_as_utc() -> None:
    info = step_to_dict(_step())["creation_info"]
    created = datetime.fromisoformat(info["created_at"])
    assert created == datetime(2024, 5, 1, 12, 30, tzinfo=timezone.utc)


def test_git_step_that_failed_shows_commit_status_and_origin() -> None:
    step = _step()
    step.status = common_pb2.STEP_STATUS_FAILED
    step.origin = common_pb2.STEP_ORIGIN_GIT_REPOSITORY
    step.commit_id = "0123abc"
    info = step_to_dict(step)["creation_info"]
    assert (info["status"], info["origin"], info["commit_id"]) == (
        "Failed",
        "git_repository",
        "0123abc",
    )
    step.status = common_pb2.STEP_STATUS_PENDING
    assert step_to_dict(step)["creation_info"]["status"] == "Pending"


def test_unset_fields_become_none() -> None:
    result = step_to_dict(
        common_pb2.Step(
            name="steps/s",
            inputs=[common_pb2.StepInput(name="x")],
        )
    )
    assert result["parameters"]["inputs"][0]["data_type"] is None
    assert result["container_config"] == {}
    assert result["creation_info"] == {
        "created_at": None,
        "updated_at": None,
        "commit_id": None,
        "status": None,
        "origin": None,
    }


def test_step_name_comes_from_the_resource_name() -> None:
    assert step_name_of("steps/abc_1") == "abc_1"
    assert step_name_of("abc") == "abc"
