"""`stepforge steps`: list, read, delete and download steps."""

from __future__ import annotations

import argparse
import json
from functools import partial
from pathlib import Path
from typing import Any

from stepforge.cli._connection import open_sdk
from stepforge.cli._output import (
    flatten,
    print_fields,
    print_json,
    print_table,
)
from stepforge.cli._progress import Progress
from stepforge.errors import NotFoundError

_COLUMNS = [
    ("NAME", "name"),
    ("STATUS", "status"),
    ("ORIGIN", "origin"),
    ("FUNCTION", "function"),
    ("UPDATED", "updated_at"),
]


def add_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """Adds `steps` and its actions to the command parser."""
    steps = commands.add_parser("steps", help="list, read, delete and download steps")
    actions = steps.add_subparsers(dest="action", required=True, metavar="ACTION")

    listing = actions.add_parser("list", parents=[common], help="every step")
    listing.set_defaults(handler=list_steps)

    get = actions.add_parser("get", parents=[common], help="one step")
    get.add_argument("name")
    get.set_defaults(handler=get_step)

    delete = actions.add_parser("delete", parents=[common], help="delete a step")
    delete.add_argument("name")
    delete.set_defaults(handler=delete_step)

    download = actions.add_parser(
        "download", parents=[common], help="write a step's code to <folder>/<name>.tgz"
    )
    download.add_argument("name")
    download.add_argument(
        "--folder", default=".", metavar="DIR", help="default: this folder"
    )
    download.set_defaults(handler=download_step)


def list_steps(args: argparse.Namespace) -> int:
    with open_sdk(args) as sdk:
        steps = sdk.list_steps()
    if args.json:
        print_json(steps)
    else:
        print_table([_summary(step) for step in steps], _COLUMNS, "no steps")
    return 0


def get_step(args: argparse.Namespace) -> int:
    with open_sdk(args) as sdk:
        step = sdk.get_step(args.name)
    if step is None:
        raise NotFoundError(f"step {args.name!r} does not exist")
    if args.json:
        print_json(step)
    else:
        print_fields(_fields(step))
    return 0


def delete_step(args: argparse.Namespace) -> int:
    with open_sdk(args) as sdk:
        sdk.delete_step(args.name)
    if args.json:
        print_json({"step_name": args.name, "deleted": True})
    else:
        print(f"deleted step {args.name}")
    return 0


def download_step(args: argparse.Namespace) -> int:
    folder = Path(args.folder)
    target = folder / f"{args.name}.tgz"
    # The SDK writes the archive itself, beside the target under a temporary
    # name; its growing size is the progress.
    watched = partial(_part_file_size, folder, target.name)
    with (
        open_sdk(args) as sdk,
        Progress(f"downloading {args.name}", measure=watched) as progress,
    ):
        sdk.download_step_local_folder(args.name, str(folder))
        progress.set_done(target.stat().st_size)
    if args.json:
        print_json({"step_name": args.name, "path": str(target)})
    else:
        print(f"wrote {target}")
    return 0


def _summary(step: dict[str, Any]) -> dict[str, Any]:
    parameters, info = step["parameters"], step["creation_info"]
    return {
        "name": parameters["step_name"],
        "status": info["status"],
        "origin": info["origin"],
        "function": f"{parameters['function_path']}:{parameters['function_name']}",
        "updated_at": info["updated_at"],
    }


def _fields(step: dict[str, Any]) -> list[tuple[str, Any]]:
    parameters, info = step["parameters"], step["creation_info"]
    summary = _summary(step)
    return [
        ("name", summary["name"]),
        ("status", summary["status"]),
        ("origin", summary["origin"]),
        ("function", summary["function"]),
        ("description", parameters["description"] or None),
        ("inputs", [_describe(item) for item in parameters["inputs"]]),
        ("outputs", [_describe(item) for item in parameters["outputs"]]),
        ("created_at", info["created_at"]),
        ("updated_at", info["updated_at"]),
        ("commit_id", info["commit_id"]),
        *flatten("container_config", step["container_config"]),
    ]


def _describe(declared: dict[str, Any]) -> str:
    """An input or output as `name (type, required, default 2)`."""
    notes = [declared["data_type"]]
    if declared.get("is_required"):
        notes.append("required")
    if declared["default_value"] is not None:
        notes.append(f"default {json.dumps(declared['default_value'])}")
    return f"{declared['name']} ({', '.join(notes)})"


def _part_file_size(folder: Path, name: str) -> int:
    for part in folder.glob(f".{name}.*.part"):
        try:
            return part.stat().st_size
        except OSError:
            continue
    return 0
