"""A console that serves HTTPS itself, or sits behind a proxy that does."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

from console.console_client import ConsoleClient

from stepforge.services.console import ConsoleSettings, start_console
from stepforge.services.core.tls import ensure_self_signed

NOWHERE = "127.0.0.1:9"


def test_a_console_serves_https_with_secure_host_only_cookies(tmp_path: Path) -> None:
    files = ensure_self_signed(tmp_path / "tls")
    console = start_console(
        ConsoleSettings(
            environment_url=NOWHERE,
            port=0,
            tls_cert=files.server_cert,
            tls_key=files.server_key,
        )
    )
    trusted = ssl.create_default_context(cafile=str(files.ca_cert))
    try:
        assert console.url.startswith("https://127.0.0.1:")
        reply = ConsoleClient(console.url, trusted).get("/sign-in")
    finally:
        console.stop()

    assert reply.status == 200
    cookie = reply.headers["Set-Cookie"]
    assert cookie.startswith("__Host-stepforge_session=")
    assert "; Secure" in cookie
    assert "Path=/" in cookie


def test_plain_http_to_the_https_port_does_not_stop_the_console(tmp_path: Path) -> None:
    files = ensure_self_signed(tmp_path / "tls")
    console = start_console(
        ConsoleSettings(
            environment_url=NOWHERE,
            port=0,
            tls_cert=files.server_cert,
            tls_key=files.server_key,
        )
    )
    trusted = ssl.create_default_context(cafile=str(files.ca_cert))
    try:
        with socket.create_connection(("127.0.0.1", console.port), timeout=5) as plain:
            plain.sendall(b"GET /sign-in HTTP/1.1\r\nHost: x\r\n\r\n")
            plain.recv(100)
        reply = ConsoleClient(console.url, trusted).get("/healthz")
    finally:
        console.stop()

    assert reply.body == b"ok\n"


def test_behind_a_tls_proxy_cookies_are_secure(tmp_path: Path) -> None:
    console = start_console(
        ConsoleSettings(environment_url=NOWHERE, port=0, behind_tls_proxy=True)
    )
    try:
        assert console.url.startswith("http://")
        reply = ConsoleClient(console.url).get("/sign-in")
    finally:
        console.stop()

    cookie = reply.headers["Set-Cookie"]
    assert cookie.startswith("__Host-stepforge_session=")
    assert "; Secure" in cookie
