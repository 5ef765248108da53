"""The inputs and outputs of the runner's spec, as both backends describe them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stepforge.services.core.object_store import LocalObjectStore
from stepforge.services.execution.object_keys import input_key
from stepforge.services.execution.runner_spec import (
    data_type_name,
    runner_inputs,
    runner_outputs,
)
from stepforge.services.execution.store import StoredExecution
from stepforge.v1 import common_pb2, execution_pb2

FILE = common_pb2.DATA_TYPE_FILE
NAME = "executions/0123456789abcdef0123456789abcdef"


def stored(inputs: dict[str, execution_pb2.ExecutionValue]) -> StoredExecution:
    step = common_pb2.Step(
        name="steps/demo",
        inputs=[
            common_pb2.StepInput(name="n", data_type=common_pb2.DATA_TYPE_NUMBER),
            common_pb2.StepInput(name="given", data_type=FILE),
            common_pb2.StepInput(
                name="defaulted", data_type=FILE, default_file_content=b"default"
            ),
            common_pb2.StepInput(name="absent", data_type=FILE),
        ],
        outputs=[
            common_pb2.StepOutput(
                name="score",
                data_type=common_pb2.DATA_TYPE_NUMBER,
                default_json="0.5",
            ),
            common_pb2.StepOutput(
                name="report", data_type=FILE, default_file_content=b"empty"
            ),
            common_pb2.StepOutput(name="plain", data_type=common_pb2.DATA_TYPE_STRING),
        ],
    )
    execution = execution_pb2.Execution(name=NAME, inputs=inputs)
    return StoredExecution("environments/e", execution, step)


def test_each_file_input_comes_from_its_stored_content_its_default_or_nowhere(
    tmp_path: Path,
) -> None:
    objects = LocalObjectStore(tmp_path / "objects")
    given = tmp_path / "given"
    given.write_bytes(b"stored")
    objects.put_file(input_key(NAME, "given"), given)
    file_value = execution_pb2.ExecutionValue(file=execution_pb2.StoredFile())
    run = stored(
        {
            "n": execution_pb2.ExecutionValue(json="3"),
            "given": file_value,
            "defaulted": file_value,
        }
    )
    placed: list[tuple[str, Any]] = []

    def place(name: str, source: str | bytes | None) -> dict[str, Any]:
        placed.append((name, source))
        return {"kind": "file", "from": source}

    inputs = runner_inputs(run, objects, place)

    assert inputs["n"] == {"kind": "json", "value": 3}
    assert placed == [
        ("given", input_key(NAME, "given")),
        ("defaulted", b"default"),
        ("absent", None),
    ]


def test_outputs_keep_their_order_types_and_defaults() -> None:
    outputs = runner_outputs(
        stored({}), lambda name, content: {"kind": "file", "bytes": content}
    )

    assert outputs == [
        {
            "name": "score",
            "data_type": "number",
            "default": {"kind": "json", "value": 0.5},
        },
        {
            "name": "report",
            "data_type": "file",
            "default": {"kind": "file", "bytes": b"empty"},
        },
        {"name": "plain", "data_type": "string", "default": None},
    ]


def test_data_types_are_named_as_the_runner_names_them() -> None:
    assert data_type_name(common_pb2.DATA_TYPE_BOOLEAN) == "boolean"
    assert data_type_name(common_pb2.DATA_TYPE_JSON) == "json"
