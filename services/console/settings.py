"""What a console serves, where, and which environment it reads."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 50080
DEFAULT_SESSION_IDLE_S = 3600.0
DEFAULT_SESSION_MAX_S = 12 * 3600.0


@dataclass(frozen=True)
class ConsoleSettings:
    """The console's settings; invalid ones raise ValueError naming the field.

    A console on an address other than loopback must not send tokens and
    session cookies in the clear: it needs `tls_cert` and `tls_key`, or
    `behind_tls_proxy` when a proxy in front terminates TLS.
    """

    # The suite the console reads: `host:port`, `grpc://host:port` or
    # `grpcs://host:port`, as the SDK takes it.
    environment_url: str
    host: str = DEFAULT_HOST
    # 0 picks a free port.
    port: int = DEFAULT_PORT
    # PEM authority that signed the suite's certificate, for grpcs:// URLs.
    ca_cert: Path | None = None
    # A client certificate, for a suite that requires one.
    client_cert: Path | None = None
    client_key: Path | None = None
    # Serve HTTPS with this PEM certificate and key.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # A TLS-terminating proxy in front: plain HTTP here, https:// for browsers.
    behind_tls_proxy: bool = False
    # A session ends after this long without a request, and after
    # `session_max_s` in any case.
    session_idle_s: float = DEFAULT_SESSION_IDLE_S
    session_max_s: float = DEFAULT_SESSION_MAX_S

    def __post_init__(self) -> None:
        if not self.environment_url:
            raise ValueError("environment_url: is required")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port: must be between 0 and 65535, not {self.port}")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("tls_cert: and tls_key go together")
        if bool(self.client_cert) != bool(self.client_key):
            raise ValueError("client_cert: and client_key go together")
        if self.serves_tls and self.behind_tls_proxy:
            raise ValueError(
                "behind_tls_proxy: excludes tls_cert, since the proxy serves TLS"
            )
        if self.session_idle_s <= 0 or self.session_max_s <= 0:
            raise ValueError("session_idle_s: and session_max_s must be positive")
        check_exposure(self.host, self.secure_for_browsers)

    @property
    def serves_tls(self) -> bool:
        """Whether the console itself serves HTTPS."""
        return self.tls_cert is not None

    @property
    def secure_for_browsers(self) -> bool:
        """Whether browsers reach the console over HTTPS, so cookies can be
        marked Secure."""
        return self.serves_tls or self.behind_tls_proxy


def check_exposure(host: str, secure_for_browsers: bool) -> None:
    """Raises ValueError when browsers would reach a console on a
    non-loopback `host` over plain HTTP, exposing tokens and sessions."""
    if not is_loopback(host) and not secure_for_browsers:
        raise ValueError(
            f"host: {host} is not a loopback address, so the console needs "
            "tls_cert and tls_key, or behind_tls_proxy when a proxy in front "
            "serves TLS; plain HTTP would expose tokens and sessions"
        )


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine only: `localhost` or a loopback IP."""
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
