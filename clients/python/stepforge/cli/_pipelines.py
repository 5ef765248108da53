"""`stepforge pipelines`: list, read, create and delete pipelines."""

from __future__ import annotations

import argparse
from typing import Any

from stepforge.cli._connection import open_sdk
from stepforge.cli._output import print_fields, print_json, print_table
from stepforge.errors import NotFoundError

_COLUMNS = [("NAME", "pipeline_name"), ("STEP", "step_name"), ("CREATED", "created_at")]


def add_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """Adds `pipelines` and its actions to the command parser."""
    pipelines = commands.add_parser(
        "pipelines", help="list, read, create and delete pipelines"
    )
    actions = pipelines.add_subparsers(dest="action", required=True, metavar="ACTION")

    listing = actions.add_parser("list", parents=[common], help="every pipeline")
    listing.set_defaults(handler=list_pipelines)

    get = actions.add_parser("get", parents=[common], help="one pipeline")
    get.add_argument("name")
    get.set_defaults(handler=get_pipeline)

    create = actions.add_parser(
        "create", parents=[common], help="a pipeline that runs a step"
    )
    create.add_argument("name")
    create.add_argument("--step", required=True, help="the step it runs")
    create.set_defaults(handler=create_pipeline)

    delete = actions.add_parser("delete", parents=[common], help="delete a pipeline")
    delete.add_argument("name")
    delete.set_defaults(handler=delete_pipeline)


def list_pipelines(args: argparse.Namespace) -> int:
    with open_sdk(args) as sdk:
        pipelines = sdk.list_pipelines()
    if args.json:
        print_json(pipelines)
    else:
        print_table(pipelines, _COLUMNS, "no pipelines")
    return 0


def get_pipeline(args: argparse.Namespace) -> int:
    with open_sdk(args) as sdk:
        pipeline = sdk.get_pipeline(args.name)
    if pipeline is None:
        raise NotFoundError(f"pipeline {args.name!r} does not exist")
    _print_pipeline(args, pipeline)
    return 0


def create_pipeline(args: argparse.Namespace) -> int:
    with open_sdk(args) as sdk:
        pipeline = sdk.create_pipeline(args.name, args.step)
    _print_pipeline(args, pipeline)
    return 0


def delete_pipeline(args: argparse.Namespace) -> int:
    with open_sdk(args) as sdk:
        sdk.delete_pipeline(args.name)
    if args.json:
        print_json({"pipeline_name": args.name, "deleted": True})
    else:
        print(f"deleted pipeline {args.name}")
    return 0


def _print_pipeline(args: argparse.Namespace, pipeline: dict[str, Any]) -> None:
    if args.json:
        print_json(pipeline)
    else:
        print_fields(
            [
                ("name", pipeline["pipeline_name"]),
                ("step", pipeline["step_name"]),
                ("created_at", pipeline["created_at"]),
            ]
        )
