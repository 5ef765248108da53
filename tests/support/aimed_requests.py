"""What random requests to Stepforge are made of, so that they get past the
first checks of each RPC: field values aimed at one existing step, pipeline
and execution, and streams that work, for mutating."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from pathlib import Path

from google.protobuf.message import Message
from hypothesis import strategies as st

from stepforge import Input, Output
from stepforge.services.core.languages import SUPPORTED_LANGUAGES
from stepforge.v1 import execution_pb2
from support.archives import code_archive, create_step_requests
from support.message_strategies import Hints, texts, weighted
from support.reflected_rpcs import ReflectedRpc
from support.suite import SuiteUnderTest

STEPS, PIPELINES, EXECUTIONS = "steps", "pipelines", "executions"
AIMED = "fuzz"
AIMED_CODE = """\
def fuzz(text, count=1, blob=None):
    return {"echoed": str(text)[:20], "copy": b"copied"}
"""
INPUT_NAMES = ("text", "count", "blob")
OUTPUT_NAMES = ("echoed", "copy")
# Repository URLs a clone may be asked for: none leaves this machine.
LOCAL_REPOSITORY_URLS = (
    "file:///nonexistent/repository.git",
    "ssh://127.0.0.1:1/repository.git",
    "http://127.0.0.1:1/repository.git",
    "git://127.0.0.1:1/repository.git",
    "git@127.0.0.1:repository.git",
    "-uhostile",
)
_VALID_ID = r"[A-Za-z0-9_-]{1,63}"


def create_aimed_resources(suite: SuiteUnderTest, folder: Path) -> dict[str, str]:
    """Creates the step, pipeline and execution requests aim at; returns
    their names by collection."""
    folder.mkdir()
    (folder / "main.py").write_text(AIMED_CODE)
    suite.sdk.create_step(
        step_name=AIMED,
        function_path="main.py",
        function_name="fuzz",
        container_config={"local_folder": str(folder)},
        inputs=[
            Input("text", "string", is_required=True),
            Input("count", "number", default_value=1),
            Input("blob", "file"),
        ],
        outputs=[Output("echoed", "string"), Output("copy", "file")],
    )
    suite.sdk.create_pipeline(pipeline_name=AIMED, step_name=AIMED)
    run = suite.sdk.run_pipeline(AIMED, inputs={"text": "a"})
    return {
        STEPS: f"{STEPS}/{AIMED}",
        PIPELINES: f"{PIPELINES}/{AIMED}",
        EXECUTIONS: f"{EXECUTIONS}/{run['execution_id']}",
    }


def aimed_hints(rpc: ReflectedRpc, existing: dict[str, str]) -> Hints:
    """Hints for `message_strategies.messages` for the requests of `rpc`;
    `existing` maps each collection to the name of a resource in it."""
    valid = st.from_regex(_VALID_ID, fullmatch=True)

    def names(collection: str) -> st.SearchStrategy[str]:
        junk = st.one_of(texts().map(lambda stem: f"{collection}/{stem}"), texts())
        built = valid.map(lambda stem: f"{collection}/{stem}")
        # Mostly names that parse, so requests get past the name check.
        return weighted((2, st.just(existing[collection])), (4, built), (3, junk))

    identifiers = st.one_of(
        st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True), texts()
    )
    inputs = st.one_of(st.sampled_from(INPUT_NAMES), identifiers)
    outputs = st.one_of(st.sampled_from(OUTPUT_NAMES), identifiers)
    json_values = st.one_of(
        st.sampled_from(['"a"', "1", "true", "[1]", '{"a": 1}', "null", "1e999"]),
        texts().map(json.dumps),
        texts(),
    )
    return {
        "name": names(_collection_of(rpc)),
        "Step.name": names(STEPS),
        "Pipeline.name": names(PIPELINES),
        "step": names(STEPS),
        "pipeline": names(PIPELINES),
        "execution": names(EXECUTIONS),
        "StepInput.name": inputs,
        "StepOutput.name": outputs,
        "default_json": json_values,
        "function_path": weighted(
            (3, st.just("main.py")),
            (1, st.sampled_from(["../main.py", "/main.py", "a/../main.py"])),
            (1, texts()),
        ),
        "function_name": weighted((3, st.just("main")), (1, identifiers)),
        "language": st.one_of(
            st.sampled_from([language.name for language in SUPPORTED_LANGUAGES]),
            texts(),
        ),
        "repository_url": st.one_of(
            st.sampled_from(LOCAL_REPOSITORY_URLS),
            texts().map(lambda text: text.replace(":", "")),
        ),
        # Never the archive's main.py, which pip would be asked to read.
        "requirements_path": st.one_of(
            st.sampled_from(["requirements.txt", "../requirements.txt"]),
            texts().map(lambda text: "" if text == "main.py" else text),
        ),
        "archive_chunk": st.one_of(st.just(code_archive()), st.binary(max_size=300)),
        "input_name": inputs,
        "file_inputs": inputs,
        "key": inputs,
        "value": json_values,
        "output_name": outputs,
        "page_token": st.one_of(
            st.integers().map(str).map(_base64),
            st.sampled_from(sorted(existing.values())).map(_base64),
            texts().map(_base64),
            texts(),
        ),
        # Durations past what Python's timedelta holds, and nanos out of range.
        "seconds": weighted(
            (1, st.integers(-10, 100)),
            (2, st.sampled_from([2**62, 2**63 - 1, -(2**63), 315_576_000_001])),
            (1, st.integers(-(2**63), 2**63 - 1)),
        ),
        "nanos": st.one_of(
            st.sampled_from([0, -1, 999_999_999, 10**9, -(2**31)]),
            st.integers(-(2**31), 2**31 - 1),
        ),
        "paths": st.one_of(
            st.sampled_from(
                [
                    "known_hosts",
                    "language",
                    "requirements_path",
                    "included_folders",
                    "container_config.language",
                    "container_config.included_folders",
                    "colour",
                ]
            ),
            texts(),
        ),
    }


def working_streams(
    rpc_name: str, existing: dict[str, str]
) -> st.SearchStrategy[Sequence[Message]] | None:
    """Request streams the client-streaming RPC accepts, or None when this
    module knows none."""
    if rpc_name == "BuildService/CreateStep":
        return st.from_regex(_VALID_ID, fullmatch=True).map(create_step_requests)
    if rpc_name == "ExecutionService/RunPipeline":
        return st.just(_run_pipeline_stream(existing[PIPELINES]))
    return None


def _run_pipeline_stream(pipeline: str) -> list[Message]:
    header = execution_pb2.RunPipelineHeader(
        pipeline=pipeline, json_inputs={"text": '"a"'}, file_inputs=["blob"]
    )
    chunk = execution_pb2.FileChunk(input_name="blob", data=b"content")
    return [
        execution_pb2.RunPipelineRequest(header=header),
        execution_pb2.RunPipelineRequest(file_chunk=chunk),
    ]


def _collection_of(rpc: ReflectedRpc) -> str:
    """What a request's `name` names, read from the RPC's name."""
    for word, collection in (
        ("Execution", EXECUTIONS),
        ("Pipeline", PIPELINES),
        ("Step", STEPS),
    ):
        if word in rpc.method.name:
            return collection
    return STEPS


def _base64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()
