"""Every RPC a server offers, found through server reflection, and calling any
of them generically: with messages built from the reflected descriptors, or
with raw bytes."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, MethodDescriptor
from google.protobuf.message import Message
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

# They answer without a token by design, so they are no part of the contract
# the callers of these helpers check.
SKIPPED_SERVICES = frozenset(
    {
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
    }
)

Metadata = Sequence[tuple[str, str]]


@dataclass(frozen=True)
class ReflectedRpc:
    """One method of a reflected service."""

    service: str
    method: MethodDescriptor

    @property
    def name(self) -> str:
        """`Service/Method`, short enough for test ids."""
        return f"{self.service.rpartition('.')[2]}/{self.method.name}"

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.method.name}"

    @property
    def input_type(self) -> Descriptor:
        return self.method.input_type

    @property
    def client_streaming(self) -> bool:
        return bool(self.method.client_streaming)

    @property
    def server_streaming(self) -> bool:
        return bool(self.method.server_streaming)

    @property
    def is_internal(self) -> bool:
        return self.service.endswith("InternalService")

    def new_request(self) -> Message:
        return message_class(self.input_type)()

    def parse_response(self, data: bytes) -> Message:
        return message_class(self.method.output_type).FromString(data)


def discover_rpcs(channel: grpc.Channel) -> dict[str, ReflectedRpc]:
    """Every method of every service the server lists, but the open ones, by
    `ReflectedRpc.name`."""
    pool = descriptor_pool.DescriptorPool()
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    services = [
        service.name
        for service in _ask(stub, list_services="").list_services_response.service
        if service.name not in SKIPPED_SERVICES
    ]
    files: dict[str, descriptor_pb2.FileDescriptorProto] = {}
    for service in services:
        answer = _ask(stub, file_containing_symbol=service)
        for data in answer.file_descriptor_response.file_descriptor_proto:
            proto = descriptor_pb2.FileDescriptorProto.FromString(data)
            files[proto.name] = proto
    _add_in_dependency_order(pool, files)
    rpcs = {}
    for service in services:
        for method in pool.FindServiceByName(service).methods:
            rpc = ReflectedRpc(service, method)
            rpcs[rpc.name] = rpc
    return rpcs


def message_class(descriptor: Descriptor) -> type[Message]:
    return message_factory.GetMessageClass(descriptor)


def invoke(
    channel: grpc.Channel,
    rpc: ReflectedRpc,
    requests: Sequence[Message],
    metadata: Metadata = (),
    timeout: float = 10.0,
) -> list[Message]:
    """Calls `rpc` with `requests` (exactly one unless it streams requests);
    returns every response. Raises grpc.RpcError as a stub would."""
    answers = invoke_raw(
        channel,
        rpc,
        [request.SerializeToString() for request in requests],
        metadata,
        timeout,
    )
    return [rpc.parse_response(answer) for answer in answers]


def invoke_raw(
    channel: grpc.Channel,
    rpc: ReflectedRpc,
    payloads: Sequence[bytes],
    metadata: Metadata = (),
    timeout: float = 10.0,
) -> list[bytes]:
    """Calls `rpc` with serialized requests, sent as they are; returns the
    serialized responses."""
    if not rpc.client_streaming and len(payloads) != 1:
        raise ValueError(f"{rpc.name} takes exactly one request")
    # Without serializers grpc moves the bytes untouched, so a request the
    # client could never build still reaches the server.
    options: dict[str, Any] = {
        "request_serializer": None,
        "response_deserializer": None,
    }
    call: Callable[..., Any]
    if rpc.client_streaming and rpc.server_streaming:
        call = channel.stream_stream(rpc.path, **options)
    elif rpc.client_streaming:
        call = channel.stream_unary(rpc.path, **options)
    elif rpc.server_streaming:
        call = channel.unary_stream(rpc.path, **options)
    else:
        call = channel.unary_unary(rpc.path, **options)
    request: Any = iter(payloads) if rpc.client_streaming else payloads[0]
    answer = call(request, metadata=tuple(metadata), timeout=timeout)
    if rpc.server_streaming:
        return [bytes(item) for item in answer]
    return [bytes(answer)]


def status_of(call: Callable[[], object]) -> grpc.StatusCode:
    """The code `call` ends with: OK, or that of the RpcError it raises."""
    try:
        call()
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


def _ask(
    stub: reflection_pb2_grpc.ServerReflectionStub, **request: str
) -> reflection_pb2.ServerReflectionResponse:
    answers: Iterator[reflection_pb2.ServerReflectionResponse] = (
        stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(**request)]), timeout=10
        )
    )
    answer = next(answers)
    if answer.HasField("error_response"):
        raise LookupError(
            f"reflection could not answer {request}: "
            f"{answer.error_response.error_message}"
        )
    return answer


def _add_in_dependency_order(
    pool: descriptor_pool.DescriptorPool,
    files: dict[str, descriptor_pb2.FileDescriptorProto],
) -> None:
    added: set[str] = set()

    def add(name: str) -> None:
        if name in added:
            return
        proto = files[name]
        for dependency in proto.dependency:
            add(dependency)
        pool.Add(proto)
        added.add(name)

    for name in sorted(files):
        add(name)
