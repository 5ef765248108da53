"""The errors the SDK raises.

    Exception
    └── StepforgeError                code, message, field_violations
        ├── InvalidArgumentError      also a ValueError
        ├── NotFoundError
        ├── AlreadyExistsError
        ├── FailedPreconditionError
        ├── ResourceExhaustedError
        ├── UnauthenticatedError
        ├── PermissionDeniedError
        ├── UnavailableError
        ├── DeadlineExceededError     also a TimeoutError
        ├── StepBuildError            step_name, build_log
        ├── StepCreationTimeoutError  also a TimeoutError; step_name, status
        └── ExecutionFailedError      execution_id, status, reason

`code` is the gRPC status code of the call that failed, or None when the SDK
found the problem itself, before sending anything. A status code with no class
of its own gives a plain StepforgeError. `translate_rpc_error` is the only place
a `grpc.RpcError` becomes one of these.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple, TypeVar

import grpc

__all__ = [
    "AlreadyExistsError",
    "DeadlineExceededError",
    "ExecutionFailedError",
    "FailedPreconditionError",
    "FieldViolation",
    "InvalidArgumentError",
    "NotFoundError",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "StepBuildError",
    "StepCreationTimeoutError",
    "StepforgeError",
    "UnauthenticatedError",
    "UnavailableError",
    "translate_rpc_error",
]

# Lines of build log a StepBuildError message carries; the end says why.
BUILD_LOG_TAIL_LINES = 40

_E = TypeVar("_E", bound="StepforgeError")


class FieldViolation(NamedTuple):
    """One broken rule: `field` is a dotted path such as `inputs[0].name`."""

    field: str
    description: str


class StepforgeError(Exception):
    """The root of every error the SDK raises."""

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode | None = None,
        field_violations: Iterable[FieldViolation] = (),
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field_violations = list(field_violations)

    @classmethod
    def for_field(cls: type[_E], field: str, rule: str) -> _E:
        """A client-side error for one field that breaks `rule`."""
        return cls(f"{field}: {rule}", field_violations=[FieldViolation(field, rule)])

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        code = self.code.name if self.code is not None else None
        return f"{type(self).__name__}(code={code}, message={self.message!r})"


class InvalidArgumentError(StepforgeError, ValueError):
    """A value breaks a rule; `field_violations` says which and why."""


class NotFoundError(StepforgeError):
    """The named resource does not exist."""


class AlreadyExistsError(StepforgeError):
    """A resource of that name exists already."""


class FailedPreconditionError(StepforgeError):
    """The resource is not in a state that allows the call."""


class ResourceExhaustedError(StepforgeError):
    """A size or quota limit was passed."""


class UnauthenticatedError(StepforgeError):
    """The token is missing or unknown."""


class PermissionDeniedError(StepforgeError):
    """The token does not grant the call."""


class UnavailableError(StepforgeError):
    """The service cannot be reached now; the call may succeed later."""


class DeadlineExceededError(StepforgeError, TimeoutError):
    """The call did not finish in the time it was given."""


class StepBuildError(StepforgeError):
    """The build of a step failed; the message ends with the end of its log."""

    def __init__(
        self,
        step_name: str,
        build_log: str,
        *,
        code: grpc.StatusCode | None = None,
    ) -> None:
        lines = build_log.rstrip("\n").splitlines()
        tail = lines[-BUILD_LOG_TAIL_LINES:]
        if tail:
            shown = "last line" if len(tail) == 1 else f"last {len(tail)} lines"
            detail = f"; {shown} of the build log:\n" + "\n".join(tail)
        else:
            detail = "; the build log is empty"
        super().__init__(f"step {step_name!r} failed to build{detail}", code=code)
        self.step_name = step_name
        self.build_log = build_log


class StepCreationTimeoutError(StepforgeError, TimeoutError):
    """A step was not ready within the wait the caller asked for."""

    def __init__(
        self,
        step_name: str,
        status: str,
        timeout_s: float | None = None,
    ) -> None:
        waited = f" after {timeout_s:g} s" if timeout_s is not None else ""
        super().__init__(
            f"step {step_name!r} is still {status}{waited}; its build goes on, "
            "so look at the step again later"
        )
        self.step_name = step_name
        self.status = status
        self.timeout_s = timeout_s


class ExecutionFailedError(StepforgeError):
    """An execution ended without succeeding: `status` is "Failed" or
    "Cancelled", and `reason` is what the service said, possibly empty."""

    def __init__(self, execution_id: str, status: str, reason: str) -> None:
        detail = reason or f"it is {status} and no reason was given"
        super().__init__(f"execution {execution_id} failed: {detail}")
        self.execution_id = execution_id
        self.status = status
        self.reason = reason


_CLASS_BY_CODE: dict[grpc.StatusCode, type[StepforgeError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
}

_STATUS_DETAILS_KEY = "grpc-status-details-bin"
_BAD_REQUEST_TYPE = "google.rpc.BadRequest"


def translate_rpc_error(error: grpc.RpcError) -> StepforgeError:
    """The SDK error for a failed call: its code, message and field violations.

    Never raises: details it cannot read are left out.
    """
    code = _call(error, "code")
    status_code = code if isinstance(code, grpc.StatusCode) else None
    status_message, violations = _read_status_details(_status_details_blob(error))
    details = _call(error, "details")
    if isinstance(details, str) and details:
        message = details
    elif status_message:
        message = status_message
    elif status_code is not None:
        message = f"the call failed with status {status_code.name}"
    else:
        message = "the call failed with no status"
    error_class = StepforgeError
    if status_code is not None:
        error_class = _CLASS_BY_CODE.get(status_code, StepforgeError)
    return error_class(message, code=status_code, field_violations=violations)


def _call(error: object, method_name: str) -> object:
    method = getattr(error, method_name, None)
    if not callable(method):
        return None
    try:
        return method()
    # An RpcError that is not a finished call may raise anything here; the
    # translation must still produce an error to raise.
    except Exception:
        return None


def _status_details_blob(error: grpc.RpcError) -> bytes | None:
    metadata = _call(error, "trailing_metadata")
    if not isinstance(metadata, Iterable):
        return None
    for item in metadata:
        key = getattr(item, "key", None)
        value = getattr(item, "value", None)
        if key is None and isinstance(item, tuple) and len(item) == 2:
            key, value = item
        if key == _STATUS_DETAILS_KEY and isinstance(value, bytes):
            return value
    return None


# The messages read below, by field number (google/rpc/status.proto,
# google/protobuf/any.proto, google/rpc/error_details.proto):
#   Status         {1: int32 code, 2: string message, 3: repeated Any details}
#   Any            {1: string type_url, 2: bytes value}
#   BadRequest     {1: repeated FieldViolation field_violations}
#   FieldViolation {1: string field, 2: string description}
# Reading them by hand keeps googleapis-common-protos out of the SDK.

_VARINT = 0
_FIXED64 = 1
_LENGTH_DELIMITED = 2
_FIXED32 = 5


class _MalformedMessage(Exception):
    """The bytes are not a valid protobuf message."""


def _read_status_details(blob: bytes | None) -> tuple[str, list[FieldViolation]]:
    """The message and BadRequest violations in a serialized google.rpc.Status."""
    if not blob:
        return "", []
    try:
        message = ""
        violations: list[FieldViolation] = []
        for number, value in _length_delimited_fields(blob):
            if number == 2:
                message = _text(value)
            elif number == 3:
                violations.extend(_read_any_bad_request(value))
        return message, violations
    except _MalformedMessage:
        return "", []


def _read_any_bad_request(any_blob: bytes) -> list[FieldViolation]:
    type_url = ""
    value = b""
    for number, field_value in _length_delimited_fields(any_blob):
        if number == 1:
            type_url = _text(field_value)
        elif number == 2:
            value = field_value
    if type_url.rpartition("/")[2] != _BAD_REQUEST_TYPE:
        return []
    return [
        _read_field_violation(violation)
        for number, violation in _length_delimited_fields(value)
        if number == 1
    ]


def _read_field_violation(blob: bytes) -> FieldViolation:
    field = ""
    description = ""
    for number, value in _length_delimited_fields(blob):
        if number == 1:
            field = _text(value)
        elif number == 2:
            description = _text(value)
    return FieldViolation(field, description)


def _text(value: bytes) -> str:
    return value.decode("utf-8", errors="replace")


def _length_delimited_fields(blob: bytes) -> list[tuple[int, bytes]]:
    """Reads a whole message; returns its length-delimited fields in order.

    Fields of other wire types are checked and skipped.
    """
    fields = []
    position = 0
    while position < len(blob):
        key, position = _read_varint(blob, position)
        number, wire_type = key >> 3, key & 0x7
        if number == 0:
            raise _MalformedMessage
        if wire_type == _VARINT:
            _, position = _read_varint(blob, position)
        elif wire_type == _LENGTH_DELIMITED:
            length, position = _read_varint(blob, position)
            end = _checked_end(blob, position, length)
            fields.append((number, blob[position:end]))
            position = end
        elif wire_type == _FIXED64:
            position = _checked_end(blob, position, 8)
        elif wire_type == _FIXED32:
            position = _checked_end(blob, position, 4)
        else:
            # Groups are deprecated and never appear in these messages.
            raise _MalformedMessage
    return fields


def _read_varint(blob: bytes, position: int) -> tuple[int, int]:
    result = 0
    for shift in range(0, 70, 7):
        if position >= len(blob):
            raise _MalformedMessage
        byte = blob[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
    raise _MalformedMessage


def _checked_end(blob: bytes, position: int, length: int) -> int:
    end = position + length
    if end > len(blob):
        raise _MalformedMessage
    return end
