"""Parsing requests inside the call, so that bytes that are no valid message
get INVALID_ARGUMENT like any other bad input, not gRPC's own INTERNAL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc

from stepforge.services.core.errors import InvalidArgument
from stepforge.services.core.handlers import Handler, HandlerInterceptor


class RequestParsingInterceptor(HandlerInterceptor):
    """Registered last, so the checks of the other interceptors (the token
    first of all) come before the request is even read."""

    def wrap(self, handler: Handler, method: str) -> Handler:
        if handler.request_deserializer is None:
            return handler
        parse = handler.request_deserializer
        kinds = (
            (handler.unary_unary, grpc.unary_unary_rpc_method_handler, False),
            (handler.unary_stream, grpc.unary_stream_rpc_method_handler, False),
            (handler.stream_unary, grpc.stream_unary_rpc_method_handler, True),
            (handler.stream_stream, grpc.stream_stream_rpc_method_handler, True),
        )
        for behaviour, make_handler, streamed in kinds:
            if behaviour is not None:
                return make_handler(
                    _parsing(behaviour, parse, streamed),
                    request_deserializer=None,
                    response_serializer=handler.response_serializer,
                )
        return handler


def _parsing(
    behaviour: Callable[..., Any], parse: Callable[[bytes], Any], streamed: bool
) -> Callable[..., Any]:
    def run(request: Any, context: grpc.ServicerContext) -> Any:
        if streamed:
            return behaviour(_parsed_each(request, parse), context)
        return behaviour(_parsed(request, parse, "request"), context)

    return run


def _parsed_each(raw: Iterator[bytes], parse: Callable[[bytes], Any]) -> Iterator[Any]:
    for index, message in enumerate(raw):
        yield _parsed(message, parse, f"requests[{index}]")


def _parsed(raw: bytes, parse: Callable[[bytes], Any], field: str) -> Any:
    try:
        return parse(raw)
    except Exception:
        raise InvalidArgument(
            field, "is not a valid serialized message of this method's request type"
        ) from None
