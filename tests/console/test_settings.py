"""Which consoles may be served, and where."""

from __future__ import annotations

from pathlib import Path

import pytest

from stepforge.services.console import ConsoleSettings
from stepforge.services.console.settings import is_loopback

URL = "127.0.0.1:50051"


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.5.6.7", "localhost", "::1", "[::1]"]
)
def test_loopback_hosts_are_recognised(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.4", "console.example", ""])
def test_other_hosts_are_not_loopback(host: str) -> None:
    assert not is_loopback(host)


def test_plain_http_on_loopback_is_the_default() -> None:
    settings = ConsoleSettings(environment_url=URL)

    assert settings.host == "127.0.0.1"
    assert settings.port == 50080
    assert not settings.secure_for_browsers


def test_plain_http_on_a_public_address_is_refused() -> None:
    with pytest.raises(ValueError, match=r"host: 0\.0\.0\.0 is not a loopback"):
        ConsoleSettings(environment_url=URL, host="0.0.0.0")


def test_a_public_address_is_allowed_with_a_certificate(tmp_path: Path) -> None:
    settings = ConsoleSettings(
        environment_url=URL,
        host="0.0.0.0",
        tls_cert=tmp_path / "cert.pem",
        tls_key=tmp_path / "key.pem",
    )

    assert settings.serves_tls
    assert settings.secure_for_browsers


def test_a_public_address_is_allowed_behind_a_tls_proxy() -> None:
    settings = ConsoleSettings(
        environment_url=URL, host="0.0.0.0", behind_tls_proxy=True
    )

    assert not settings.serves_tls
    assert settings.secure_for_browsers


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"environment_url": ""}, "environment_url: is required"),
        ({"port": 70000}, "port: must be between 0 and 65535"),
        ({"tls_cert": Path("c.pem")}, "tls_cert: and tls_key go together"),
        ({"client_key": Path("k.pem")}, "client_cert: and client_key go together"),
        ({"session_idle_s": 0}, "session_idle_s: and session_max_s must be positive"),
        (
            {"tls_cert": Path("c"), "tls_key": Path("k"), "behind_tls_proxy": True},
            "behind_tls_proxy: excludes tls_cert",
        ),
    ],
)
def test_invalid_settings_name_the_field(
    changes: dict[str, object], message: str
) -> None:
    fields: dict[str, object] = {"environment_url": URL, **changes}

    with pytest.raises(ValueError, match=message):
        ConsoleSettings(**fields)  # type: ignore[arg-type]
