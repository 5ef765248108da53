"""The services' gRPC contract, called with the raw stubs as any client would."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status
from support.archives import code_archive
from support.suite import SuiteUnderTest

from stepforge.services.config import load_service_token
from stepforge.services.core.object_store import open_object_store
from stepforge.v1 import (
    build_pb2,
    build_pb2_grpc,
    common_pb2,
    registry_pb2,
    registry_pb2_grpc,
)

MiB = 1024 * 1024


@pytest.fixture
def channel(suite: SuiteUnderTest) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(suite.url) as opened:
        yield opened


def auth(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def header(
    name: str = "raw", function_path: str = "main.py"
) -> build_pb2.CreateStepRequest:
    step = common_pb2.Step(
        name=f"steps/{name}", function_path=function_path, function_name="main"
    )
    return build_pb2.CreateStepRequest(
        header=build_pb2.CreateStepHeader(
            step=step, origin=common_pb2.STEP_ORIGIN_LOCAL
        )
    )


def chunk(data: bytes) -> build_pb2.CreateStepRequest:
    return build_pb2.CreateStepRequest(archive_chunk=data)


def violations(error: grpc.RpcError) -> list[str]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    fields = []
    for detail in status.details:
        bad_request = error_details_pb2.BadRequest()
        assert detail.Unpack(bad_request)
        fields += [violation.field for violation in bad_request.field_violations]
    return fields


def test_duplicate_name_is_answered_before_any_chunk_is_read(
    suite: SuiteUnderTest, channel: grpc.Channel
) -> None:
    stub = build_pb2_grpc.BuildServiceStub(channel)
    stub.CreateStep(iter([header(), chunk(code_archive())]), metadata=auth(suite.token))
    never_sent = threading.Event()

    def requests() -> Iterator[build_pb2.CreateStepRequest]:
        yield header()
        # Holds the chunk back: only an answer that needs no chunk can come.
        never_sent.wait(10)
        yield chunk(code_archive())

    with pytest.raises(grpc.RpcError) as raised:
        stub.CreateStep(requests(), metadata=auth(suite.token), timeout=8)
    never_sent.set()
    assert raised.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "raw" in raised.value.details()


def test_archive_over_the_limit_stops_early_and_leaves_nothing(
    suite: SuiteUnderTest, channel: grpc.Channel
) -> None:
    stub = build_pb2_grpc.BuildServiceStub(channel)
    pulled = []

    def requests() -> Iterator[build_pb2.CreateStepRequest]:
        yield header()
        for index in range(64):
            pulled.append(index)
            yield chunk(b"\1" * MiB)

    with pytest.raises(grpc.RpcError) as raised:
        stub.CreateStep(requests(), metadata=auth(suite.token), timeout=30)

    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "5,000,000" in raised.value.details()
    assert len(pulled) < 64
    registry = registry_pb2_grpc.RegistryServiceStub(channel)
    listed = registry.ListSteps(
        registry_pb2.ListStepsRequest(), metadata=auth(suite.token)
    )
    assert list(listed.steps) == []
    store = open_object_store(suite.object_store_url)
    assert list(store.list("archives/")) == []


def test_chunk_over_one_mebibyte_is_refused(
    suite: SuiteUnderTest, channel: grpc.Channel
) -> None:
    stub = build_pb2_grpc.BuildServiceStub(channel)

    with pytest.raises(grpc.RpcError) as raised:
        stub.CreateStep(
            iter([header(), chunk(b"\1" * (MiB + 1))]), metadata=auth(suite.token)
        )

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "archive_chunk" in raised.value.details()


def test_first_message_must_be_the_header(
    suite: SuiteUnderTest, channel: grpc.Channel
) -> None:
    stub = build_pb2_grpc.BuildServiceStub(channel)

    with pytest.raises(grpc.RpcError) as raised:
        stub.CreateStep(iter([chunk(b"x")]), metadata=auth(suite.token))

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(raised.value) == ["header"]


def test_every_bad_header_field_is_named(
    suite: SuiteUnderTest, channel: grpc.Channel
) -> None:
    stub = build_pb2_grpc.BuildServiceStub(channel)
    bad = header(name="bad name", function_path="../outside.py")
    bad.header.step.function_name = "not a name"
    bad.header.step.inputs.add(
        name="x", data_type=common_pb2.DATA_TYPE_NUMBER, default_json="true"
    )
    bad.header.step.container_config.language = "python:2.7-slim"
    bad.header.container_config_mask.paths.append("colour")

    with pytest.raises(grpc.RpcError) as raised:
        stub.CreateStep(iter([bad]), metadata=auth(suite.token))

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(raised.value) == [
        "header.step.name",
        "header.step.function_path",
        "header.step.function_name",
        "header.step.inputs[0].default_value",
        "container_config_mask.paths[0]",
        "header.step.container_config.language",
    ]


def test_list_steps_pages_through_every_step(
    suite: SuiteUnderTest, channel: grpc.Channel
) -> None:
    build = build_pb2_grpc.BuildServiceStub(channel)
    for index in range(5):
        build.CreateStep(
            iter([header(name=f"s{index}"), chunk(code_archive())]),
            metadata=auth(suite.token),
        )
    registry = registry_pb2_grpc.RegistryServiceStub(channel)
    names = []
    request = registry_pb2.ListStepsRequest(page_size=2)
    pages = 0
    while True:
        page = registry.ListSteps(request, metadata=auth(suite.token))
        names += [step.name for step in page.steps]
        pages += 1
        if not page.next_page_token:
            break
        request.page_token = page.next_page_token

    assert names == [f"steps/s{index}" for index in range(5)]
    assert pages == 3


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(
            lambda ch, md: registry_pb2_grpc.RegistryServiceStub(ch).GetProjectSettings(
                registry_pb2.GetProjectSettingsRequest(), metadata=md
            ),
            id="registry.GetProjectSettings",
        ),
        pytest.param(
            lambda ch, md: registry_pb2_grpc.RegistryServiceStub(ch).ListSteps(
                registry_pb2.ListStepsRequest(), metadata=md
            ),
            id="registry.ListSteps",
        ),
        pytest.param(
            lambda ch, md: build_pb2_grpc.BuildServiceStub(ch).ListLanguages(
                build_pb2.ListLanguagesRequest(), metadata=md
            ),
            id="build.ListLanguages",
        ),
        pytest.param(
            lambda ch, md: build_pb2_grpc.BuildServiceStub(ch).CreateStep(
                iter([header()]), metadata=md
            ),
            id="build.CreateStep",
        ),
    ],
)
@pytest.mark.parametrize("token", [None, "sf_not-a-real-token"], ids=["none", "wrong"])
def test_calls_without_a_valid_token_are_unauthenticated(
    suite: SuiteUnderTest, channel: grpc.Channel, call: object, token: str | None
) -> None:
    metadata = auth(token) if token else ()

    with pytest.raises(grpc.RpcError) as raised:
        call(channel, metadata)  # type: ignore[operator]

    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_internal_service_accepts_only_the_service_credential(
    suite: SuiteUnderTest, channel: grpc.Channel
) -> None:
    internal = registry_pb2_grpc.RegistryInternalServiceStub(channel)
    request = registry_pb2.AuthenticateTokenRequest(token=suite.token)

    with pytest.raises(grpc.RpcError) as raised:
        internal.AuthenticateToken(request, metadata=auth(suite.token))
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED

    service_token = load_service_token(suite.suite.data_dir)
    principal = internal.AuthenticateToken(request, metadata=auth(service_token))
    assert principal.project == "default"

    public = registry_pb2_grpc.RegistryServiceStub(channel)
    with pytest.raises(grpc.RpcError) as raised:
        public.ListSteps(registry_pb2.ListStepsRequest(), metadata=auth(service_token))
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_health_and_reflection_answer_without_a_token(
    suite: SuiteUnderTest, channel: grpc.Channel
) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ["", "stepforge.v1.RegistryService", "stepforge.v1.BuildService"]:
        answer = health.Check(health_pb2.HealthCheckRequest(service=service))
        assert answer.status == health_pb2.HealthCheckResponse.SERVING

    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    answer = next(reflection.ServerReflectionInfo(iter([request])))
    listed = {service.name for service in answer.list_services_response.service}
    assert {"stepforge.v1.RegistryService", "stepforge.v1.BuildService"} <= listed


def test_download_of_a_missing_step_is_not_found(
    suite: SuiteUnderTest, channel: grpc.Channel, tmp_path: Path
) -> None:
    stub = build_pb2_grpc.BuildServiceStub(channel)

    with pytest.raises(grpc.RpcError) as raised:
        list(
            stub.DownloadStepArchive(
                build_pb2.DownloadStepArchiveRequest(name="steps/absent"),
                metadata=auth(suite.token),
            )
        )

    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


def test_wait_step_build_answers_when_the_build_ends(
    suite: SuiteUnderTest, channel: grpc.Channel
) -> None:
    build = build_pb2_grpc.BuildServiceStub(channel)
    created = build.CreateStep(
        iter([header(name="waited"), chunk(code_archive())]),
        metadata=auth(suite.token),
    )
    request = build_pb2.WaitStepBuildRequest(name="steps/waited")
    request.timeout.FromSeconds(30)

    finished = build.WaitStepBuild(request, metadata=auth(suite.token), timeout=40)

    assert created.status == common_pb2.STEP_STATUS_PENDING
    assert finished.status == common_pb2.STEP_STATUS_READY
    with pytest.raises(grpc.RpcError) as raised:
        build.WaitStepBuild(
            build_pb2.WaitStepBuildRequest(name="steps/absent"),
            metadata=auth(suite.token),
        )
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
