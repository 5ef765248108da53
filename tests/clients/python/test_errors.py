from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from concurrent import futures

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from stepforge.errors import (
    AlreadyExistsError,
    DeadlineExceededError,
    FailedPreconditionError,
    FieldViolation,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    StepBuildError,
    StepCreationTimeoutError,
    StepforgeError,
    UnauthenticatedError,
    UnavailableError,
    translate_rpc_error,
)

_Behaviour = Callable[[grpc.ServicerContext], None]
_DETAILS_KEY = "grpc-status-details-bin"


def _bad_request_status(
    message: str, violations: list[tuple[str, str]]
) -> status_pb2.Status:
    bad_request = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
            for f, d in violations
        ]
    )
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason="ignored", domain="test"))
    packed = any_pb2.Any()
    packed.Pack(bad_request)
    return status_pb2.Status(
        code=code_pb2.INVALID_ARGUMENT, message=message, details=[info, packed]
    )


_BAD_REQUEST = _bad_request_status(
    "inputs[0].name: must be an identifier; step.name: too long",
    [("inputs[0].name", "must be an identifier"), ("step.name", "too long")],
)


def _abort_with_bad_request(context: grpc.ServicerContext) -> None:
    context.abort_with_status(rpc_status.to_status(_BAD_REQUEST))


def _abort_with_garbage_details(context: grpc.ServicerContext) -> None:
    context.set_trailing_metadata(((_DETAILS_KEY, b"\x0b\xff\xff garbage"),))
    context.abort(grpc.StatusCode.NOT_FOUND, "step 'x' does not exist")


def _abort_with_code(code: grpc.StatusCode) -> _Behaviour:
    def abort(context: grpc.ServicerContext) -> None:
        context.abort(code, f"failed with {code.name}")

    return abort


_BEHAVIOURS: dict[str, _Behaviour] = {
    "bad_request": _abort_with_bad_request,
    "garbage": _abort_with_garbage_details,
    **{
        code.name: _abort_with_code(code)
        for code in grpc.StatusCode
        if code is not grpc.StatusCode.OK
    },
}


def _method_handler(behaviour: _Behaviour) -> grpc.RpcMethodHandler[bytes, bytes]:
    def handle(request: bytes, context: grpc.ServicerContext) -> bytes:
        behaviour(context)
        return b""

    return grpc.unary_unary_rpc_method_handler(handle)


@pytest.fixture(scope="module")
def channel() -> Iterator[grpc.Channel]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "test.Errors",
                {name: _method_handler(b) for name, b in _BEHAVIOURS.items()},
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as opened:
        yield opened
    server.stop(None)


def _fail(channel: grpc.Channel, name: str) -> grpc.RpcError:
    call = channel.unary_unary(
        f"/test.Errors/{name}", request_serializer=None, response_deserializer=None
    )
    with pytest.raises(grpc.RpcError) as raised:
        call(b"", timeout=10)
    return raised.value


def test_bad_request_details_become_field_violations(channel: grpc.Channel) -> None:
    error = translate_rpc_error(_fail(channel, "bad_request"))

    assert type(error) is InvalidArgumentError
    assert isinstance(error, ValueError)
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT
    assert error.message == _BAD_REQUEST.message
    assert str(error) == _BAD_REQUEST.message
    assert error.field_violations == [
        FieldViolation("inputs[0].name", "must be an identifier"),
        FieldViolation("step.name", "too long"),
    ]


def test_garbage_status_details_keep_code_and_message(channel: grpc.Channel) -> None:
    error = translate_rpc_error(_fail(channel, "garbage"))

    assert type(error) is NotFoundError
    assert error.code is grpc.StatusCode.NOT_FOUND
    assert error.message == "step 'x' does not exist"
    assert error.field_violations == []


@pytest.mark.parametrize(
    ("code", "error_class"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, InvalidArgumentError),
        (grpc.StatusCode.NOT_FOUND, NotFoundError),
        (grpc.StatusCode.ALREADY_EXISTS, AlreadyExistsError),
        (grpc.StatusCode.FAILED_PRECONDITION, FailedPreconditionError),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, ResourceExhaustedError),
        (grpc.StatusCode.UNAUTHENTICATED, UnauthenticatedError),
        (grpc.StatusCode.PERMISSION_DENIED, PermissionDeniedError),
        (grpc.StatusCode.UNAVAILABLE, UnavailableError),
        (grpc.StatusCode.DEADLINE_EXCEEDED, DeadlineExceededError),
        (grpc.StatusCode.INTERNAL, StepforgeError),
        (grpc.StatusCode.UNIMPLEMENTED, StepforgeError),
    ],
)
def test_each_status_code_gets_its_error_class(
    channel: grpc.Channel, code: grpc.StatusCode, error_class: type[StepforgeError]
) -> None:
    error = translate_rpc_error(_fail(channel, code.name))

    assert type(error) is error_class
    assert error.code is code
    assert error.message == f"failed with {code.name}"


class _FakeRpcError(grpc.RpcError):
    def __init__(
        self,
        code: object = grpc.StatusCode.INVALID_ARGUMENT,
        details: object = "bad",
        metadata: object = (),
    ) -> None:
        super().__init__()
        self._code = code
        self._details = details
        self._metadata = metadata

    # The overrides return what a broken call object might: anything.
    def code(self) -> object:  # type: ignore[override]
        return self._code

    def details(self) -> object:  # type: ignore[override]
        return self._details

    def trailing_metadata(self) -> object:  # type: ignore[override]
        if isinstance(self._metadata, Exception):
            raise self._metadata
        return self._metadata


def _with_details(blob: bytes, details: object = "bad") -> _FakeRpcError:
    return _FakeRpcError(details=details, metadata=((_DETAILS_KEY, blob),))


def test_status_message_is_used_when_details_are_empty() -> None:
    status = _bad_request_status("from the status", [("a", "b")])
    error = translate_rpc_error(_with_details(status.SerializeToString(), ""))
    assert error.message == "from the status"
    assert error.field_violations == [FieldViolation("a", "b")]


def test_bare_rpc_error_translates_without_status() -> None:
    error = translate_rpc_error(grpc.RpcError())
    assert type(error) is StepforgeError
    assert error.code is None
    assert error.message == "the call failed with no status"


def test_code_without_message_names_the_code() -> None:
    error = translate_rpc_error(_FakeRpcError(grpc.StatusCode.UNAVAILABLE, None))
    assert type(error) is UnavailableError
    assert error.message == "the call failed with status UNAVAILABLE"


@pytest.mark.parametrize(
    "metadata",
    [
        None,
        RuntimeError("no metadata yet"),
        42,
        (1, ("a",), ("k", "v", "extra")),
        ((_DETAILS_KEY, "text, not bytes"),),
    ],
)
def test_odd_trailing_metadata_is_ignored(metadata: object) -> None:
    error = translate_rpc_error(_FakeRpcError(metadata=metadata))
    assert type(error) is InvalidArgumentError
    assert error.message == "bad"
    assert error.field_violations == []


def test_odd_code_and_details_do_not_crash() -> None:
    error = translate_rpc_error(_FakeRpcError(code="INVALID_ARGUMENT", details=b"x"))
    assert type(error) is StepforgeError
    assert error.code is None


@pytest.mark.parametrize(
    "blob",
    [
        b"\xff" * 12,  # a varint that never ends
        b"\x1a\x10short",  # a length past the end
        b"\x0b\x0c",  # a group, never used by these messages
        b"\x02\x00",  # field number zero
        b"\x1a\x03\x0a\x01",  # an Any cut short
    ],
)
def test_malformed_status_details_give_no_violations(blob: bytes) -> None:
    error = translate_rpc_error(_with_details(blob))
    assert error.message == "bad"
    assert error.field_violations == []


def test_details_of_other_types_are_ignored() -> None:
    packed = any_pb2.Any()
    packed.Pack(error_details_pb2.ErrorInfo(reason="quota"))
    status = status_pb2.Status(code=3, message="m", details=[packed])
    error = translate_rpc_error(_with_details(status.SerializeToString()))
    assert error.field_violations == []


def test_fixed_width_and_varint_fields_are_skipped() -> None:
    # Unknown fixed64 (field 9) and fixed32 (field 10) before a real detail.
    status = _bad_request_status("m", [("f", "d")])
    blob = b"\x49" + bytes(8) + b"\x55" + bytes(4) + status.SerializeToString()
    error = translate_rpc_error(_with_details(blob))
    assert error.field_violations == [FieldViolation("f", "d")]


def test_random_and_truncated_details_never_raise() -> None:
    generator = random.Random(7)
    valid = _bad_request_status("message", [("a.b", "rule")]).SerializeToString()
    blobs = [valid[:cut] for cut in range(len(valid))]
    blobs += [generator.randbytes(generator.randrange(1, 64)) for _ in range(500)]
    for blob in blobs:
        error = translate_rpc_error(_with_details(blob))
        assert type(error) is InvalidArgumentError
        assert all(isinstance(v, FieldViolation) for v in error.field_violations)


def test_client_side_errors_have_no_code_and_name_the_field() -> None:
    error = InvalidArgumentError.for_field("container_config.language", "unknown")
    assert error.code is None
    assert str(error) == "container_config.language: unknown"
    assert error.field_violations == [
        FieldViolation("container_config.language", "unknown")
    ]


def test_timeouts_are_timeout_errors() -> None:
    error = StepCreationTimeoutError("my-step", "Pending", 180)
    assert isinstance(error, TimeoutError)
    assert isinstance(error, StepforgeError)
    assert (error.step_name, error.status) == ("my-step", "Pending")
    assert "my-step" in str(error) and "Pending" in str(error)
    assert isinstance(DeadlineExceededError("late"), TimeoutError)


def test_build_error_message_carries_the_end_of_the_log() -> None:
    log = "\n".join(f"line {index}" for index in range(100)) + "\n"
    error = StepBuildError("my-step", log)
    assert error.step_name == "my-step"
    assert error.build_log == log
    assert str(error).endswith("line 99")
    assert "line 60" in str(error)
    assert "line 59\n" not in str(error)


def test_build_error_with_empty_log_says_so() -> None:
    assert "build log is empty" in str(StepBuildError("s", ""))
