"""Opening the one channel the SDK talks to every service through."""

from __future__ import annotations

import grpc

from stepforge._rules import CHUNK_BYTES
from stepforge.errors import InvalidArgumentError

_PLAINTEXT_SCHEMES = ("grpc://", "http://")
_TLS_SCHEMES = ("grpcs://", "https://")
# Room for one archive chunk and its envelope, both ways.
_MAX_MESSAGE_BYTES = 4 * CHUNK_BYTES


def open_channel(
    environment_url: str,
    ca_cert: str | None = None,
    client_cert: str | None = None,
    client_key: str | None = None,
) -> grpc.Channel:
    """Opens a channel to `environment_url`: `host:port` or `grpc://host:port`
    in plaintext, `grpcs://host:port` over TLS, trusting the PEM file
    `ca_cert` (else the system's roots) and presenting the client certificate
    when one is given."""
    target, secure = _parse(environment_url)
    options = [
        ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
    ]
    files = {"ca_cert": ca_cert, "client_cert": client_cert, "client_key": client_key}
    if not secure:
        given = [name for name, path in files.items() if path]
        if given:
            raise InvalidArgumentError.for_field(
                given[0], "applies to grpcs:// URLs only; the URL is plaintext"
            )
        return grpc.insecure_channel(target, options)
    if bool(client_cert) != bool(client_key):
        raise InvalidArgumentError.for_field(
            "client_cert", "and client_key go together"
        )
    contents = {name: _read(name, path) for name, path in files.items()}
    credentials = grpc.ssl_channel_credentials(
        root_certificates=contents["ca_cert"],
        private_key=contents["client_key"],
        certificate_chain=contents["client_cert"],
    )
    return grpc.secure_channel(target, credentials, options)


def _read(field: str, path: str | None) -> bytes | None:
    if not path:
        return None
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as error:
        raise InvalidArgumentError.for_field(
            field, f"cannot read {path}: {error.strerror}"
        ) from None


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
