"""The console on the command line: `stepforge console`, and the console
that `stepforge up` serves beside the suite."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from stepforge.services.console.server import RunningConsole, start_console
from stepforge.services.console.settings import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    ConsoleSettings,
    check_exposure,
)

logger = logging.getLogger(__name__)

_ENVIRONMENT_URL = "STEPFORGE_ENVIRONMENT_URL"
_CA_CERT = "STEPFORGE_CA_CERT"
_CLIENT_CERT = "STEPFORGE_CLIENT_CERT"
_CLIENT_KEY = "STEPFORGE_CLIENT_KEY"
_PROXY_HELP = (
    "a proxy in front serves HTTPS and forwards plain HTTP here: allows a "
    "non-loopback address without a certificate, and marks cookies Secure"
)


def add_console_command(commands: Any) -> None:
    """`stepforge console`: the console alone, for an environment elsewhere."""
    parser = commands.add_parser(
        "console",
        help="serve the web console of an environment",
        description="Serve the web console of the environment at "
        "--environment-url. Users sign in with their environment token; the "
        "console holds none of its own.",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to listen on")
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"port to listen on (default {DEFAULT_PORT}; 0: any free)",
    )
    parser.add_argument(
        "--environment-url",
        default=os.environ.get(_ENVIRONMENT_URL),
        help="grpcs://host:port (or host:port in plaintext) of the suite "
        f"(default: ${_ENVIRONMENT_URL})",
    )
    parser.add_argument(
        "--ca-cert",
        default=os.environ.get(_CA_CERT),
        help=f"PEM authority of the suite's certificate (default: ${_CA_CERT})",
    )
    parser.add_argument(
        "--client-cert",
        default=os.environ.get(_CLIENT_CERT),
        help="PEM client certificate, for a suite that requires one",
    )
    parser.add_argument(
        "--client-key",
        default=os.environ.get(_CLIENT_KEY),
        help="PEM key of --client-cert",
    )
    parser.add_argument("--tls-cert", help="serve HTTPS with this PEM certificate")
    parser.add_argument("--tls-key", help="PEM private key of --tls-cert")
    parser.add_argument("--behind-tls-proxy", action="store_true", help=_PROXY_HELP)


def add_up_console_options(parser: argparse.ArgumentParser) -> None:
    """The flags of the console that `stepforge up` serves."""
    parser.add_argument(
        "--console-port",
        type=int,
        help=f"port of the web console (default {DEFAULT_PORT}; 0: any free)",
    )
    parser.add_argument(
        "--console-host",
        default=DEFAULT_HOST,
        help="address the web console listens on (default: 127.0.0.1)",
    )
    parser.add_argument(
        "--no-console", action="store_true", help="do not serve the web console"
    )
    parser.add_argument(
        "--console-tls-cert", help="serve the console over HTTPS with this PEM file"
    )
    parser.add_argument("--console-tls-key", help="PEM key of --console-tls-cert")
    parser.add_argument(
        "--console-behind-tls-proxy", action="store_true", help=_PROXY_HELP
    )


def check_up_console_options(args: argparse.Namespace) -> None:
    """Raises ValueError for console flags of `up` that cannot work, before
    the suite starts."""
    if args.no_console:
        return
    _check_flags(
        args.console_host,
        args.console_tls_cert,
        args.console_tls_key,
        args.console_behind_tls_proxy,
        prefix="--console-",
    )
    if args.console_port is not None and not 0 <= args.console_port <= 65535:
        raise ValueError("--console-port must be between 0 and 65535")


def standalone_settings(args: argparse.Namespace) -> ConsoleSettings:
    """The settings `stepforge console` was given; ValueError when invalid."""
    if not args.environment_url:
        raise ValueError(f"--environment-url: is required (or set {_ENVIRONMENT_URL})")
    _check_flags(
        args.host, args.tls_cert, args.tls_key, args.behind_tls_proxy, prefix="--"
    )
    return ConsoleSettings(
        environment_url=args.environment_url,
        host=args.host,
        port=args.port,
        ca_cert=_path(args.ca_cert),
        client_cert=_path(args.client_cert),
        client_key=_path(args.client_key),
        tls_cert=_path(args.tls_cert),
        tls_key=_path(args.tls_key),
        behind_tls_proxy=args.behind_tls_proxy,
    )


def suite_settings(
    args: argparse.Namespace, environment: dict[str, str]
) -> ConsoleSettings | None:
    """The settings of the console `stepforge up` serves, reading the suite
    as the env file says (its URL, authority and client certificate, never
    its tokens); None with --no-console. ValueError when invalid."""
    if args.no_console:
        return None
    port = DEFAULT_PORT if args.console_port is None else args.console_port
    return ConsoleSettings(
        environment_url=environment[_ENVIRONMENT_URL],
        host=args.console_host,
        port=port,
        ca_cert=_path(environment.get(_CA_CERT)),
        client_cert=_path(environment.get(_CLIENT_CERT)),
        client_key=_path(environment.get(_CLIENT_KEY)),
        tls_cert=_path(args.console_tls_cert),
        tls_key=_path(args.console_tls_key),
        behind_tls_proxy=args.console_behind_tls_proxy,
    )


def start_suite_console(
    args: argparse.Namespace, settings: ConsoleSettings
) -> RunningConsole | None:
    """Starts the console of `stepforge up`. When the default port is taken
    (another suite's console, say) the suite runs on without one and says
    so; a port asked for explicitly must be free. OSError otherwise."""
    try:
        return start_console(settings)
    except OSError as error:
        if args.console_port is not None:
            raise OSError(
                f"--console-port: cannot listen on {settings.host}:{settings.port}: "
                f"{error.strerror or error}"
            ) from None
        logger.warning("the console did not start: %s", error)
        print(
            f"stepforge: the web console did not start, since it cannot listen "
            f"on {settings.host}:{settings.port} ({error.strerror or error}); "
            "pass --console-port (0: any free)",
            file=sys.stderr,
            flush=True,
        )
        return None


def _check_flags(
    host: str,
    tls_cert: str | None,
    tls_key: str | None,
    behind_tls_proxy: bool,
    *,
    prefix: str,
) -> None:
    """The settings' own checks, worded with the flags' names."""
    if bool(tls_cert) != bool(tls_key):
        raise ValueError(f"{prefix}tls-cert and {prefix}tls-key go together")
    if tls_cert and behind_tls_proxy:
        raise ValueError(
            f"{prefix}behind-tls-proxy excludes {prefix}tls-cert, since the proxy "
            "serves TLS"
        )
    try:
        check_exposure(host, bool(tls_cert) or behind_tls_proxy)
    except ValueError:
        raise ValueError(
            f"{prefix}host {host} is not a loopback address: give {prefix}tls-cert "
            f"and {prefix}tls-key, or {prefix}behind-tls-proxy when a proxy in "
            "front serves HTTPS; plain HTTP would expose tokens and sessions"
        ) from None


def _path(value: str | None) -> Path | None:
    return Path(value).expanduser() if value else None
