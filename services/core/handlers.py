"""Wrapping gRPC method handlers, whatever their streaming kind.

A server interceptor in grpc runs before the handler's thread is chosen, so
per-call work (authentication, error translation) must wrap the handler's
behaviour instead, where it runs in the thread that serves the call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import grpc

# Opens the scope one call runs in; for streamed responses the scope stays open
# until the last response is sent, so it sees errors raised while streaming.
CallScope = Callable[[grpc.ServicerContext], AbstractContextManager[None]]


# grpc's classes are generic only in their type stubs.
if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]
    ServerInterceptor = grpc.ServerInterceptor[Any, Any]
else:
    Handler = grpc.RpcMethodHandler
    ServerInterceptor = grpc.ServerInterceptor


class HandlerInterceptor(ServerInterceptor):
    """An interceptor that wraps the handler of each method it serves."""

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Handler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        return self.wrap(handler, handler_call_details.method)

    def wrap(self, handler: Handler, method: str) -> Handler:
        """Returns the handler to serve `method` (`/package.Service/Method`)."""
        raise NotImplementedError


def wrap_handler(handler: Handler, scope: CallScope) -> Handler:
    """Returns `handler` with every behaviour run inside `scope`."""
    kinds = (
        (handler.unary_unary, grpc.unary_unary_rpc_method_handler, _unary),
        (handler.stream_unary, grpc.stream_unary_rpc_method_handler, _unary),
        (handler.unary_stream, grpc.unary_stream_rpc_method_handler, _streaming),
        (handler.stream_stream, grpc.stream_stream_rpc_method_handler, _streaming),
    )
    for behaviour, make_handler, wrap in kinds:
        if behaviour is not None:
            return make_handler(
                wrap(behaviour, scope),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
    raise ValueError("the method handler has no behaviour")


def _unary(behaviour: Callable[..., Any], scope: CallScope) -> Callable[..., Any]:
    def run(request: Any, context: grpc.ServicerContext) -> Any:
        with scope(context):
            return behaviour(request, context)

    return run


def _streaming(behaviour: Callable[..., Any], scope: CallScope) -> Callable[..., Any]:
    def run(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        with scope(context):
            yield from behaviour(request, context)

    return run
