"""TLS for every server and every call between services.

By default a suite makes its own certificate authority on first start and
signs a server certificate for the names it answers to, plus client
certificates for the services and for the default user, which matter when
client certificates are required. Operators can bring their own files.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=825)


@dataclass(frozen=True)
class TlsFiles:
    """PEM files: what the server presents, and what clients trust."""

    server_cert: Path
    server_key: Path
    ca_cert: Path
    # The services' own client certificate, for calls between them.
    service_cert: Path | None = None
    service_key: Path | None = None
    # Set when the default user's client certificate was made too.
    user_cert: Path | None = None
    user_key: Path | None = None


@dataclass(frozen=True)
class TlsSettings:
    files: TlsFiles
    # Refuse clients without a certificate signed by `files.ca_cert`.
    require_client_certs: bool = False


def ensure_self_signed(folder: Path, extra_hosts: Sequence[str] = ()) -> TlsFiles:
    """The suite's own authority and certificates in `folder`, made once."""
    paths = {
        name: folder / file
        for name, file in (
            ("server_cert", "server.pem"),
            ("server_key", "server-key.pem"),
            ("ca_cert", "ca.pem"),
            ("service_cert", "service.pem"),
            ("service_key", "service-key.pem"),
            ("user_cert", "user.pem"),
            ("user_key", "user-key.pem"),
        )
    }
    files = TlsFiles(**paths)
    if all(path.exists() for path in paths.values()):
        return files
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Stepforge suite CA")])
    ca = (
        _builder(ca_name, ca_name, ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    issue = partial(_issue, ca=ca, ca_key=ca_key)
    issue(
        paths["server_cert"],
        paths["server_key"],
        "stepforge",
        _server_names(extra_hosts),
    )
    issue(paths["service_cert"], paths["service_key"], "stepforge-service", [])
    issue(paths["user_cert"], paths["user_key"], "stepforge-user", [])
    _write(paths["ca_cert"], ca.public_bytes(serialization.Encoding.PEM), private=False)
    return files


def server_credentials(settings: TlsSettings) -> grpc.ServerCredentials:
    files = settings.files
    return grpc.ssl_server_credentials(
        [(files.server_key.read_bytes(), files.server_cert.read_bytes())],
        root_certificates=(
            files.ca_cert.read_bytes() if settings.require_client_certs else None
        ),
        require_client_auth=settings.require_client_certs,
    )


def service_channel_credentials(settings: TlsSettings) -> grpc.ChannelCredentials:
    """What one service presents to another: the suite's CA to trust, and the
    services' client certificate when there is one."""
    files = settings.files
    key = files.service_key.read_bytes() if files.service_key else None
    cert = files.service_cert.read_bytes() if files.service_cert else None
    return grpc.ssl_channel_credentials(
        root_certificates=files.ca_cert.read_bytes(),
        private_key=key,
        certificate_chain=cert,
    )


def _server_names(extra_hosts: Sequence[str]) -> list[x509.GeneralName]:
    hosts = {"localhost", socket.gethostname(), "127.0.0.1", "::1", *extra_hosts}
    hosts -= {"", "0.0.0.0", "::", "[::]"}
    names: list[x509.GeneralName] = []
    for host in sorted(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host.strip("[]"))))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def _issue(
    cert_path: Path,
    key_path: Path,
    common_name: str,
    names: list[x509.GeneralName],
    *,
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
) -> None:
    """Signs a certificate for a server when it has names, else for a client."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    usage = (
        ExtendedKeyUsageOID.SERVER_AUTH if names else ExtendedKeyUsageOID.CLIENT_AUTH
    )
    builder = (
        _builder(subject, ca.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(names), critical=False
        )
    certificate = builder.sign(ca_key, hashes.SHA256())
    _write(
        key_path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        private=True,
    )
    _write(
        cert_path, certificate.public_bytes(serialization.Encoding.PEM), private=False
    )


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
    )


def _write(path: Path, content: bytes, *, private: bool) -> None:
    descriptor = os.open(
        path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644
    )
    with os.fdopen(descriptor, "wb") as file:
        file.write(content)
