"""Opening the one channel the SDK talks to every service through."""

from __future__ import annotations

import grpc

from stepforge._rules import CHUNK_BYTES
from stepforge.errors import InvalidArgumentError

_PLAINTEXT_SCHEMES = ("grpc://", "http://")
_TLS_SCHEMES = ("grpcs://", "https://")
# Room for one archive chunk and its envelope, both ways.
_MAX_MESSAGE_BYTES = 4 * CHUNK_BYTES


def open_channel(environment_url: str) -> grpc.Channel:
    """Opens a channel to `environment_url`: `host:port` or `grpc://host:port`
    in plaintext, `grpcs://host:port` over TLS with the system's roots."""
    target, secure = _parse(environment_url)
    options = [
        ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
    ]
    if secure:
        return grpc.secure_channel(target, grpc.ssl_channel_credentials(), options)
    return grpc.insecure_channel(target, options)


def _parse(url: str) -> tuple[str, bool]:
    secure = url.startswith(_TLS_SCHEMES)
    for scheme in _PLAINTEXT_SCHEMES + _TLS_SCHEMES:
        if url.startswith(scheme):
            url = url[len(scheme) :]
            break
    target = url.rstrip("/")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit() or "/" in target:
        raise InvalidArgumentError.for_field(
            "environment_url",
            "must be host:port, grpc://host:port or grpcs://host:port",
        )
    return target, secure
