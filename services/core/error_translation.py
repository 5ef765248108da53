"""Turns what a handler raises into a canonical gRPC status, in one place."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from stepforge.services.core.errors import (
    FieldViolation,
    ServiceError,
    Unavailable,
    abort_with,
)
from stepforge.services.core.handlers import Handler, HandlerInterceptor, wrap_handler
from stepforge.services.core.object_store import ObjectStoreUnavailableError

logger = logging.getLogger(__name__)


class ErrorTranslationInterceptor(HandlerInterceptor):
    """Answers ServiceError with its code and details, and anything else with
    INTERNAL, logging the traceback but never sending it to the caller.

    Registered first, so it also translates what the auth interceptor raises.
    """

    def wrap(self, handler: Handler, method: str) -> Handler:

        @contextmanager
        def translated(context: grpc.ServicerContext) -> Iterator[None]:
            try:
                yield
            except ServiceError as error:
                abort_with(context, error)
            except ObjectStoreUnavailableError as error:
                abort_with(context, Unavailable(f"object store unavailable: {error}"))
            except grpc.RpcError as error:
                abort_with(context, from_peer_error(error))
            except Exception:
                if _aborted(context):
                    raise  # the handler aborted the call itself
                logger.exception("unexpected error in %s", method)
                context.abort(
                    grpc.StatusCode.INTERNAL, "internal error; see server log"
                )

        return wrap_handler(handler, translated)


def from_peer_error(error: grpc.RpcError) -> ServiceError:
    """A failed call to a peer service keeps its code, message and violations."""
    code = getattr(error, "code", lambda: grpc.StatusCode.UNKNOWN)()
    message = getattr(error, "details", lambda: "")() or code.name
    translated = ServiceError(message)
    translated.code = code
    status = rpc_status.from_call(error) if isinstance(error, grpc.Call) else None
    violations: list[FieldViolation] = []
    details: list[any_pb2.Any] = list(status.details) if status is not None else []
    for detail in details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            violations.extend(
                FieldViolation(v.field, v.description)
                for v in bad_request.field_violations
            )
    translated.violations = violations
    return translated


def _aborted(context: grpc.ServicerContext) -> bool:
    """Whether the handler ended the call itself with context.abort."""
    code = context.code()  # type: ignore[attr-defined]
    return code not in (None, grpc.StatusCode.OK)
