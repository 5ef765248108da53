"""The options every command takes, and the SDK they sign in with."""

from __future__ import annotations

import argparse
import os

from stepforge._sdk import ENVIRONMENT_URL_VARIABLE, SDK_TOKEN_VARIABLE, StepforgeSdk
from stepforge.errors import InvalidArgumentError


def common_options() -> argparse.ArgumentParser:
    """A parent parser with --url, --token and --json."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument(
        "--url",
        help=f"the environment's address (default: ${ENVIRONMENT_URL_VARIABLE})",
    )
    options.add_argument(
        "--token", help=f"the environment's token (default: ${SDK_TOKEN_VARIABLE})"
    )
    options.add_argument(
        "--json", action="store_true", help="print JSON for scripts instead of text"
    )
    return options


def open_sdk(args: argparse.Namespace) -> StepforgeSdk:
    """The SDK for --url and --token, each falling back on its environment
    variable as StepforgeSdk() does, as do the TLS settings."""
    _require(args.url, "--url", ENVIRONMENT_URL_VARIABLE)
    _require(args.token, "--token", SDK_TOKEN_VARIABLE)
    return StepforgeSdk(args.url, args.token)


def _require(value: str | None, option: str, variable: str) -> None:
    if value is None and not os.environ.get(variable):
        raise InvalidArgumentError.for_field(
            option, f"is required: give it or set the {variable} environment variable"
        )
