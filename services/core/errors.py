"""Domain errors of the services and their one translation into gRPC statuses.

Service code raises these; `abort_with` is the only place that turns them into a
status with `google.rpc` details, so every answer names the field and the rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status


@dataclass(frozen=True)
class FieldViolation:
    """One broken rule: `field` is a dotted path into the request."""

    field: str
    description: str


class ServiceError(Exception):
    """The root of the errors a service answers with; carries the gRPC code."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.violations: list[FieldViolation] = []


class InvalidArgument(ServiceError):
    """A request field breaks a rule."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, field_path: str, rule: str) -> None:
        super().__init__(f"{field_path}: {rule}")
        self.violations = [FieldViolation(field_path, rule)]

    @classmethod
    def many(cls, violations: list[FieldViolation]) -> InvalidArgument:
        first = violations[0]
        error = cls(first.field, first.description)
        error.violations = list(violations)
        error.message = "; ".join(f"{v.field}: {v.description}" for v in violations)
        error.args = (error.message,)
        return error


class NotFound(ServiceError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(ServiceError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(ServiceError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(ServiceError):
    """A limit was passed; `field` names what carried the excess."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, field_path: str, rule: str) -> None:
        super().__init__(f"{field_path}: {rule}")
        self.violations = [FieldViolation(field_path, rule)]


class Unauthenticated(ServiceError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(ServiceError):
    code = grpc.StatusCode.PERMISSION_DENIED


class Unavailable(ServiceError):
    """A dependency (object store, peer service) cannot be reached."""

    code = grpc.StatusCode.UNAVAILABLE


# A status travels in trailers, which gRPC caps at 16 KiB: messages and
# details that echo a caller's values are cut to fit, whatever those values.
MAX_MESSAGE_CHARS = 1000
MAX_VIOLATIONS = 20
MAX_FIELD_CHARS = 200
MAX_DESCRIPTION_CHARS = 300


def to_status(error: ServiceError) -> grpc.Status:
    """Builds the status for `error`, with BadRequest details when it has violations."""
    details = []
    violations = error.violations[:MAX_VIOLATIONS]
    if violations:
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=_cut(v.field, MAX_FIELD_CHARS),
                    description=_cut(v.description, MAX_DESCRIPTION_CHARS),
                )
                for v in violations
            ]
        )
        packed = any_pb2.Any()
        packed.Pack(bad_request)
        details.append(packed)
    status = status_pb2.Status(
        code=getattr(code_pb2, error.code.name),
        message=_cut(error.message, MAX_MESSAGE_CHARS),
        details=details,
    )
    return rpc_status.to_status(status)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def abort_with(context: grpc.ServicerContext, error: ServiceError) -> None:
    """Ends the call with `error`; raises, as `context.abort_with_status` does."""
    context.abort_with_status(to_status(error))
