"""Random and malformed requests to every RPC the server reflects: each gets
a canonical answer, the server keeps serving, and nothing is half-written."""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.aimed_requests import (
    EXECUTIONS,
    PIPELINES,
    aimed_hints,
    create_aimed_resources,
    working_streams,
)
from support.message_strategies import (
    Hints,
    decodable_bytes,
    messages,
    parses,
    stream_mutants,
    streams,
    undecodable_bytes,
    weighted,
)
from support.reflected_rpcs import (
    ReflectedRpc,
    bearer,
    discover_rpcs,
    invoke_raw,
    status_of,
)
from support.suite import SuiteUnderTest, running_suite

from stepforge.services.config import load_service_token
from stepforge.services.core.object_store import open_object_store
from stepforge.v1 import (
    build_pb2,
    common_pb2,
    execution_pb2,
    registry_pb2,
)

Code = grpc.StatusCode
# Answers that mean the server failed, not the request.
SERVER_FAULTS = frozenset({Code.UNKNOWN, Code.INTERNAL})
# The RPCs the compiled protos declare; the server must reflect exactly these.
DECLARED = {
    f"{service.name}/{method.name}": method
    for module in (build_pb2, execution_pb2, registry_pb2)
    for service in module.DESCRIPTOR.services_by_name.values()
    for method in service.methods
}
RPC_NAMES = sorted(DECLARED)
STREAMED = [name for name in RPC_NAMES if DECLARED[name].client_streaming]
# Those that remove what the others aim at are fuzzed after them.
FUZZ_ORDER = sorted(
    RPC_NAMES,
    key=lambda name: (name.partition("/")[2].startswith(("Delete", "Cancel")), name),
)
FUZZ = settings(
    max_examples=40,
    deadline=None,
    # The same examples every run: an expected failure must fail every time.
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
# A stream has more to vary, and each try of one is cheap.
FUZZ_STREAMS = settings(FUZZ, max_examples=120)
FUZZ_BYTES = settings(FUZZ, max_examples=25)
# How long a step may stay pending, or an execution wait to start, once the
# requests have stopped.
SETTLE_S = 20.0
# Still running whenever a test looks at it, until it is cancelled.
SLOW_CODE = "import time\n\ndef slow():\n    time.sleep(120)\n    return {}\n"
# Long enough that an error message repeating it outgrows gRPC's trailers.
LONG_VALUE = "x" * 8_000


# A failing example may hold a megabyte of random content, which Hypothesis
# warns about as it reports it; the report is still what a reader needs.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Generating overly large repr:hypothesis.errors.HypothesisWarning"
)


@dataclass(repr=False)
class Fuzzed:
    """A suite with a ready step, its pipeline and one execution to aim at."""

    suite: SuiteUnderTest
    channel: grpc.Channel
    rpcs: dict[str, ReflectedRpc]
    service_token: str
    existing: dict[str, str]
    hints: dict[str, Hints] = field(default_factory=dict)
    # Archive digests that some answer reported; a step of one may since
    # have been deleted or replaced, which leaves it to garbage collection.
    reported_archives: set[str] = field(default_factory=set)

    def __repr__(self) -> str:
        # Hypothesis prints the fixture with every failing example.
        return f"Fuzzed(url={self.suite.url!r})"

    def metadata(self, rpc: ReflectedRpc) -> tuple[tuple[str, str]]:
        """The token that lets a request reach the RPC's own checks."""
        if rpc.is_internal:
            return bearer(self.service_token)
        if rpc.name == "RegistryService/UpdateProjectSettings":
            return bearer(self.suite.admin_token)
        return bearer(self.suite.token)

    def send(self, rpc: ReflectedRpc, requests: list[Message]) -> Code:
        return self.send_raw(rpc, [item.SerializeToString() for item in requests])

    def send_raw(self, rpc: ReflectedRpc, payloads: list[bytes]) -> Code:
        """Sends the payloads; returns the answer's code, once the server has
        shown it still serves."""
        answers: list[bytes] = []

        def call() -> None:
            answers.extend(
                invoke_raw(self.channel, rpc, payloads, self.metadata(rpc), 20.0)
            )

        code = status_of(call)
        for answer in answers:
            self.reported_archives |= _archive_digests(rpc.parse_response(answer))
        health = health_pb2_grpc.HealthStub(self.channel)
        serving = health.Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert serving.status == health_pb2.HealthCheckResponse.SERVING
        return code

    def reflected(self, rpc_name: str, request: Message) -> Message:
        """`request` as the reflected class of the RPC's requests."""
        data = request.SerializeToString()
        return type(self.rpcs[rpc_name].new_request()).FromString(data)


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    root = tmp_path_factory.mktemp("malformed")
    with running_suite(root / "data") as suite:
        existing = create_aimed_resources(suite, root / "code")
        with grpc.insecure_channel(suite.url) as channel:
            fuzz = Fuzzed(
                suite,
                channel,
                discover_rpcs(channel),
                load_service_token(suite.suite.data_dir),
                existing,
            )
            fuzz.hints = {
                name: aimed_hints(rpc, existing) for name, rpc in fuzz.rpcs.items()
            }
            fuzz.reported_archives |= {s.archive_sha256 for s in _all_steps(fuzz)}
            yield fuzz


def test_reflection_serves_exactly_the_declared_rpcs(fuzzed: Fuzzed) -> None:
    assert sorted(fuzzed.rpcs) == RPC_NAMES


# Examples first, while what they aim at still exists.


def test_run_pipeline_refuses_a_timeout_out_of_range(fuzzed: Fuzzed) -> None:
    header = execution_pb2.RunPipelineHeader(
        pipeline=fuzzed.existing[PIPELINES], json_inputs={"text": '"a"'}
    )
    header.timeout.seconds = 2**62
    request = execution_pb2.RunPipelineRequest(header=header)

    code = fuzzed.send(fuzzed.rpcs["ExecutionService/RunPipeline"], [request])

    assert code == Code.INVALID_ARGUMENT


def test_wait_execution_refuses_a_timeout_out_of_range(
    fuzzed: Fuzzed, tmp_path: Path
) -> None:
    sdk = fuzzed.suite.sdk
    (tmp_path / "main.py").write_text(SLOW_CODE)
    sdk.create_step(
        step_name="slow",
        function_path="main.py",
        function_name="slow",
        container_config={"local_folder": str(tmp_path)},
    )
    sdk.create_pipeline(pipeline_name="slow", step_name="slow")
    execution = f"{EXECUTIONS}/{sdk.run_pipeline('slow', wait=False)['execution_id']}"
    request = execution_pb2.WaitExecutionRequest(name=execution)
    request.timeout.seconds = 2**62

    try:
        code = fuzzed.send(fuzzed.rpcs["ExecutionService/WaitExecution"], [request])
    finally:
        sdk.cancel_pipeline_execution(execution.partition("/")[2])

    assert code == Code.INVALID_ARGUMENT


def test_list_executions_refuses_a_page_token_past_int64(fuzzed: Fuzzed) -> None:
    token = base64.urlsafe_b64encode(b"9" * 30).decode()
    request = execution_pb2.ListExecutionsRequest(page_token=token)

    code = fuzzed.send(fuzzed.rpcs["ExecutionService/ListExecutions"], [request])

    assert code == Code.INVALID_ARGUMENT


@pytest.mark.parametrize(
    ("rpc_name", "field_name"),
    [
        ("RegistryService/UpdateProjectSettings", "update_mask.paths[0]"),
        ("ExecutionService/ReadExecutionOutput", "output_name"),
    ],
)
def test_an_error_about_a_long_value_reaches_the_caller(
    fuzzed: Fuzzed, rpc_name: str, field_name: str
) -> None:
    request: Any = fuzzed.rpcs[rpc_name].new_request()
    if field_name == "output_name":
        request.name = fuzzed.existing[EXECUTIONS]
        request.output_name = LONG_VALUE
    else:
        request.update_mask.paths.append(LONG_VALUE)

    with pytest.raises(grpc.RpcError) as raised:
        list(
            invoke_raw(
                fuzzed.channel,
                fuzzed.rpcs[rpc_name],
                [request.SerializeToString()],
                fuzzed.metadata(fuzzed.rpcs[rpc_name]),
            )
        )

    assert raised.value.code() == Code.INVALID_ARGUMENT
    assert field_name in (raised.value.details() or "")


@FUZZ
@given(data=st.data())
def test_unparsable_bytes_are_invalid_argument(
    fuzzed: Fuzzed, data: st.DataObject
) -> None:
    rpc = fuzzed.rpcs[data.draw(st.sampled_from(RPC_NAMES), label="rpc")]
    payload = data.draw(undecodable_bytes(rpc.input_type), label="payload")
    assert not parses(rpc.input_type, payload)

    assert fuzzed.send_raw(rpc, [payload]) == Code.INVALID_ARGUMENT


@pytest.mark.parametrize(
    "rpc_name",
    STREAMED,
)
@FUZZ_STREAMS
@given(data=st.data())
def test_random_request_streams_get_a_canonical_answer(
    fuzzed: Fuzzed, rpc_name: str, data: st.DataObject
) -> None:
    rpc = fuzzed.rpcs[rpc_name]
    hints = fuzzed.hints[rpc_name]
    random = streams(rpc.input_type, hints)
    working = working_streams(rpc_name, fuzzed.existing)
    if working is not None:
        bases = working.map(
            lambda base: [fuzzed.reflected(rpc_name, item) for item in base]
        )
        random = weighted((1, random), (2, stream_mutants(bases, hints)))

    code = fuzzed.send(rpc, data.draw(random, label="requests"))

    assert code not in SERVER_FAULTS


@pytest.mark.parametrize(
    "rpc_name",
    [name for name in FUZZ_ORDER if name not in STREAMED],
)
@FUZZ
@given(data=st.data())
def test_random_field_values_get_a_canonical_answer(
    fuzzed: Fuzzed, rpc_name: str, data: st.DataObject
) -> None:
    rpc = fuzzed.rpcs[rpc_name]
    request = data.draw(messages(rpc.input_type, fuzzed.hints[rpc_name]))

    assert fuzzed.send(rpc, [request]) not in SERVER_FAULTS


@pytest.mark.parametrize("rpc_name", FUZZ_ORDER)
@FUZZ_BYTES
@given(data=st.data())
def test_parsable_random_bytes_get_a_canonical_answer(
    fuzzed: Fuzzed, rpc_name: str, data: st.DataObject
) -> None:
    rpc = fuzzed.rpcs[rpc_name]
    payload = decodable_bytes(rpc.input_type, fuzzed.hints[rpc_name])
    count = data.draw(st.integers(0, 4)) if rpc.client_streaming else 1
    payloads = [data.draw(payload, label=f"payload {index}") for index in range(count)]
    assert all(parses(rpc.input_type, item) for item in payloads)

    assert fuzzed.send_raw(rpc, payloads) not in SERVER_FAULTS


def test_nothing_is_left_half_written(fuzzed: Fuzzed) -> None:
    """Runs last: what every request above left must be whole."""
    deadline = time.monotonic() + SETTLE_S
    while True:
        steps = _all_steps(fuzzed)
        executions = _all_executions(fuzzed)
        pending = [s.name for s in steps if s.status == common_pb2.STEP_STATUS_PENDING]
        waiting = [
            e.name
            for e in executions
            if e.status == execution_pb2.EXECUTION_STATUS_PENDING
        ]
        if not (pending or waiting) or time.monotonic() > deadline:
            break
        time.sleep(0.2)

    assert pending == []
    assert waiting == []
    store = open_object_store(fuzzed.suite.object_store_url)
    known = {s.archive_sha256 for s in steps} | fuzzed.reported_archives
    unexplained = {
        info.key
        for info in store.list("archives/")
        if _digest_of_key(info.key) not in known
    }
    assert unexplained == set()
    listed = {execution.name.partition("/")[2] for execution in executions}
    orphaned_files = {
        info.key
        for info in store.list("executions/")
        if info.key.split("/")[1] not in listed
    }
    assert orphaned_files == set()
    assert list(fuzzed.suite.suite.data_dir.rglob("*.part")) == []


def _archive_digests(message: Message) -> set[str]:
    """Every `archive_sha256` anywhere in `message`."""
    found: set[str] = set()
    for item, value in message.ListFields():
        if item.name == "archive_sha256":
            found |= {value} if isinstance(value, str) else set(value)
        elif item.message_type is not None:
            nested = value if item.is_repeated else [value]
            if item.message_type.GetOptions().map_entry:
                nested = list(value.values())
            for part in nested:
                if isinstance(part, Message):
                    found |= _archive_digests(part)
    return found


def _all_steps(fuzzed: Fuzzed) -> list[Any]:
    return _pages(fuzzed, "RegistryService/ListSteps", "steps")


def _all_executions(fuzzed: Fuzzed) -> list[Any]:
    return _pages(fuzzed, "ExecutionService/ListExecutions", "executions")


def _pages(fuzzed: Fuzzed, rpc_name: str, items: str) -> list[Any]:
    rpc = fuzzed.rpcs[rpc_name]
    request: Any = rpc.new_request()
    request.page_size = 1000
    found: list[Any] = []
    while True:
        (answer,) = invoke_raw(
            fuzzed.channel, rpc, [request.SerializeToString()], fuzzed.metadata(rpc)
        )
        page: Any = rpc.parse_response(answer)
        found += list(getattr(page, items))
        if not page.next_page_token:
            return found
        request.page_token = page.next_page_token


_ARCHIVE_KEY = re.compile(r"archives/sha256/([0-9a-f]{64})\.tar\.gz")


def _digest_of_key(key: str) -> str:
    matched = _ARCHIVE_KEY.fullmatch(key)
    return matched.group(1) if matched else key
