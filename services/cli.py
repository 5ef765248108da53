"""The `stepforge` command: run the suite, or one of its services."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from stepforge.services.admin import add_admin_commands, run_admin
from stepforge.services.config import DEFAULT_DATA_DIR, DEFAULT_PORT, ServerConfig
from stepforge.services.console import RunningConsole, start_console
from stepforge.services.console.command import (
    add_console_command,
    add_up_console_options,
    check_up_console_options,
    standalone_settings,
    start_suite_console,
    suite_settings,
)
from stepforge.services.core.tls import TlsFiles, TlsSettings, ensure_self_signed
from stepforge.services.kubernetes.options import (
    add_backend_options,
    kubernetes_settings,
)
from stepforge.services.suite import (
    ADMIN_TOKEN,
    ENVIRONMENT_URL,
    SDK_TOKEN,
    SERVICES,
    RunningSuite,
    read_env_file,
    start,
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command == "admin":
        return run_admin(args)
    if args.command == "demo":
        from stepforge.services.demo import run_demo

        data_dir = Path(args.data_dir).expanduser() if args.data_dir else None
        return run_demo(data_dir, args.port)
    if args.command == "console":
        return _run_console(args)
    data_dir = Path(args.data_dir).expanduser()
    try:
        config = ServerConfig(
            data_dir=data_dir,
            tls=_tls_settings(args, data_dir),
            host=args.host,
            port=args.port,
            object_store_url=args.object_store,
            registry_url=getattr(args, "registry_url", None),
            strict_python_version=args.strict_python_version,
            build_workers=args.build_workers,
            build_url=getattr(args, "build_url", None),
            system_site_packages=args.system_site_packages,
            max_executions=args.max_executions,
            gpu_fallback_to_cpu=args.gpu_fallback_to_cpu,
            build_backend=args.build_backend,
            execution_backend=args.execution_backend,
            kubernetes=kubernetes_settings(args),
        )
        if args.command == "up":
            check_up_console_options(args)
    except ValueError as error:
        print(f"stepforge: {error}", file=sys.stderr)
        return 2
    services = SERVICES if args.command == "up" else (args.service,)
    # Installed before anything starts, so a stop asked for at any moment
    # shuts down cleanly instead of killing the process mid-write.
    stop_requested = _stop_requested_by_signals()
    try:
        suite = start(config, services)
    except (OSError, ValueError) as error:
        print(f"stepforge: {error}", file=sys.stderr)
        return 2
    _announce(suite)
    try:
        console = _start_console(args, suite)
    except (OSError, ValueError) as error:
        print(f"stepforge: {error}", file=sys.stderr)
        suite.stop()
        return 2
    stop_requested.wait()
    if console is not None:
        console.stop()
    suite.stop()
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stepforge", description=__doc__)
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="serve every service on one port")
    _add_server_options(up)
    add_up_console_options(up)

    serve = commands.add_parser("serve", help="serve one service")
    serve.add_argument("service", choices=SERVICES)
    _add_server_options(serve)
    serve.add_argument(
        "--registry-url",
        help="host:port of the registry, for a service that runs apart from it",
    )
    serve.add_argument(
        "--build-url",
        help="host:port of the build service, for the execution service apart from it",
    )

    add_admin_commands(commands)
    add_console_command(commands)

    demo = commands.add_parser(
        "demo", help="start the suite and create the example step of the docs"
    )
    demo.add_argument(
        "--data-dir",
        help="where the demo suite keeps its data (default: a temporary one)",
    )
    demo.add_argument("--port", type=int, default=0)
    return parser


def _add_server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        default=os.environ.get("STEPFORGE_DATA_DIR") or str(DEFAULT_DATA_DIR),
        help="where metadata, archives and environments live (default: "
        "~/.stepforge) [STEPFORGE_DATA_DIR]",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="port to listen on (0: any free)"
    )
    parser.add_argument(
        "--object-store",
        default=os.environ.get("STEPFORGE_OBJECT_STORE") or None,
        help="file:///path, or s3://KEY:SECRET@host:port/bucket for MinIO or any "
        "S3-compatible store (default: <data-dir>/objects) [STEPFORGE_OBJECT_STORE]",
    )
    parser.add_argument(
        "--strict-python-version",
        action="store_true",
        help="fail a build whose Python version is not installed, instead of "
        "building it with this interpreter",
    )
    parser.add_argument("--build-workers", type=int, default=2)
    parser.add_argument(
        "--plaintext",
        action="store_true",
        help="serve without TLS (by default the suite makes its own certificate "
        "authority in <data-dir>/tls and serves TLS)",
    )
    parser.add_argument("--tls-cert", help="PEM server certificate to present")
    parser.add_argument("--tls-key", help="PEM private key of --tls-cert")
    parser.add_argument(
        "--tls-ca", help="PEM certificate of the authority that signed --tls-cert"
    )
    parser.add_argument(
        "--require-client-certs",
        action="store_true",
        help="refuse clients without a certificate signed by the suite's own "
        "authority (which writes one for the default user in <data-dir>/tls)",
    )
    parser.add_argument(
        "--system-site-packages",
        action="store_true",
        help="let step environments see this interpreter's site-packages, such as "
        "a GPU host's preinstalled CUDA libraries",
    )
    parser.add_argument(
        "--max-executions",
        type=int,
        default=os.cpu_count() or 1,
        help="executions that run at once; the others wait in order (default: cores)",
    )
    parser.add_argument(
        "--gpu-fallback-to-cpu",
        action="store_true",
        help="run python-cuda steps on the CPU, with a warning in their logs, "
        "when this host has no GPU (default: they fail at once)",
    )
    add_backend_options(parser)


def _tls_settings(args: argparse.Namespace, data_dir: Path) -> TlsSettings | None:
    own = (args.tls_cert, args.tls_key, args.tls_ca)
    if args.plaintext:
        if any(own) or args.require_client_certs:
            raise ValueError("--plaintext excludes the --tls-* and client-cert options")
        return None
    if any(own):
        if not all(own):
            raise ValueError("--tls-cert, --tls-key and --tls-ca go together")
        if args.require_client_certs:
            raise ValueError(
                "--require-client-certs works with the suite's own authority only"
            )
        paths = [Path(path).expanduser() for path in own]
        for path in paths:
            if not path.is_file():
                raise ValueError(f"{path} is not a readable file")
        return TlsSettings(TlsFiles(*paths))
    files = ensure_self_signed(data_dir / "tls", extra_hosts=[args.host])
    return TlsSettings(files, require_client_certs=args.require_client_certs)


def _announce(suite: RunningSuite) -> None:
    if suite.env_file is None:
        print(f"stepforge serving on {suite.url}", flush=True)
        return
    print(f"stepforge serving on {suite.url}; environment in {suite.env_file}:")
    values = read_env_file(suite.env_file)
    print(f"{ENVIRONMENT_URL}={values[ENVIRONMENT_URL]}")
    # A person at a terminal gets the token to paste; a service's output ends
    # up in logs (a pod's, a journal's) that more people read than should.
    if sys.stdout.isatty():
        print(f"{SDK_TOKEN}={values[SDK_TOKEN]}")
    else:
        print(f"the environment's token is {SDK_TOKEN} in {suite.env_file}")
    # Kept out of logs: it changes what every environment of the project does.
    print(f"the project admin token is {ADMIN_TOKEN} in {suite.env_file}")
    sys.stdout.flush()


def _run_console(args: argparse.Namespace) -> int:
    """`stepforge console`: serves until SIGINT or SIGTERM."""
    stop_requested = _stop_requested_by_signals()
    try:
        console = start_console(standalone_settings(args))
    except (OSError, ValueError) as error:
        print(f"stepforge: {error}", file=sys.stderr)
        return 2
    print(f"stepforge console serving on {console.url}", flush=True)
    stop_requested.wait()
    console.stop()
    return 0


def _start_console(
    args: argparse.Namespace, suite: RunningSuite
) -> RunningConsole | None:
    """The console of `up`, reading the suite as its env file says."""
    if args.command != "up" or suite.env_file is None:
        return None
    settings = suite_settings(args, read_env_file(suite.env_file))
    if settings is None:
        return None
    console = start_suite_console(args, settings)
    if console is not None:
        print(f"web console on {console.url}", flush=True)
    return console


def _stop_requested_by_signals() -> threading.Event:
    requested = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        requested.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    return requested


if __name__ == "__main__":
    sys.exit(main())
