"""The `stepforge` command: the steps, pipelines and executions of an
environment, through the SDK.

The commands that run the suite itself (up, serve, admin, demo) belong to the
services, which are imported only when one of them is used, so that the others
need nothing beyond the SDK's own dependencies.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from stepforge.cli import _executions, _pipelines, _run, _steps
from stepforge.cli._connection import common_options
from stepforge.cli._output import print_error
from stepforge.errors import StepforgeError

__all__ = ["SERVER_COMMANDS", "build_parser", "main"]

SERVER_COMMANDS = {
    "up": "serve every service on one port",
    "serve": "serve one service",
    "admin": "manage projects, environments and tokens on the registry's host",
    "demo": "start the suite and create the example step of the docs",
    "console": "serve the web console of an environment",
}
# The option the server commands take before their name.
_SERVER_GLOBAL_OPTION = "--log-level"
# What a shell reports for a command stopped with Ctrl-C.
_INTERRUPTED = 130


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one command; returns its exit status: 0, 1 on an error, 2 on a
    usage error."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if _server_command(arguments) is not None:
        return _run_server_command(arguments)
    parser = build_parser()
    try:
        args = parser.parse_args(arguments)
    except SystemExit as stop:
        return _exit_status(stop.code)
    try:
        status: int = args.handler(args)
    except StepforgeError as error:
        print_error(error.message)
        return 1
    except OSError as error:
        print_error(str(error))
        return 1
    except KeyboardInterrupt:
        return _INTERRUPTED
    return status


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command; the server commands are only listed."""
    parser = argparse.ArgumentParser(
        prog="stepforge",
        description="Run and inspect the steps and pipelines of a Stepforge "
        "environment, given by STEPFORGE_ENVIRONMENT_URL, STEPFORGE_SDK_TOKEN "
        "and STEPFORGE_CA_CERT, or by --url and --token. up, serve, admin and "
        "demo run the suite itself and need stepforge[server].",
        formatter_class=_wide_help,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = common_options()
    _steps.add_commands(commands, common)
    _pipelines.add_commands(commands, common)
    _run.add_command(commands, common)
    _executions.add_commands(commands, common)
    for name, summary in SERVER_COMMANDS.items():
        commands.add_parser(name, help=summary, add_help=False)
    return parser


def _server_command(arguments: Sequence[str]) -> str | None:
    """The server command the arguments name, if any, skipping the options
    that may come before it."""
    index = 0
    while index < len(arguments):
        word = arguments[index]
        if word == _SERVER_GLOBAL_OPTION:
            index += 2
            continue
        if word.startswith(_SERVER_GLOBAL_OPTION + "="):
            index += 1
            continue
        return word if word in SERVER_COMMANDS else None
    return None


def _run_server_command(arguments: list[str]) -> int:
    try:
        from stepforge.services.cli import main as services_main
    except ModuleNotFoundError as error:
        print_error(
            f"{_server_command(arguments)} needs the server's dependencies "
            f"(pip install 'stepforge[server]'): {error}"
        )
        return 1
    try:
        return services_main(arguments)
    except SystemExit as stop:
        return _exit_status(stop.code)


def _wide_help(prog: str) -> argparse.HelpFormatter:
    return argparse.HelpFormatter(prog, max_help_position=28)


def _exit_status(code: object) -> int:
    if code is None:
        return 0
    return code if isinstance(code, int) else 1
