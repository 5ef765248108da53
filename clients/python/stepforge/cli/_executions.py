"""`stepforge executions`: list, read, follow and cancel executions, and fetch
their outputs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from stepforge import ExecutionOutputFile
from stepforge.cli._connection import open_sdk
from stepforge.cli._output import (
    flatten,
    format_value,
    print_fields,
    print_json,
    print_json_line,
    print_table,
)
from stepforge.cli._progress import format_size
from stepforge.cli._save import save_output_file
from stepforge.errors import InvalidArgumentError

_COLUMNS = [
    ("ID", "execution_id"),
    ("STATUS", "status"),
    ("CREATED", "created_at"),
    ("ENDED", "ended_at"),
    ("FAILURE", "failure_reason"),
]


def add_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """Adds `executions` and its actions to the command parser."""
    executions = commands.add_parser(
        "executions", help="list, read, follow and cancel executions"
    )
    actions = executions.add_subparsers(dest="action", required=True, metavar="ACTION")

    listing = actions.add_parser(
        "list", parents=[common], help="the executions of a pipeline, newest first"
    )
    listing.add_argument("pipeline")
    listing.set_defaults(handler=list_executions)

    get = actions.add_parser("get", parents=[common], help="one execution")
    get.add_argument("id")
    get.set_defaults(handler=get_execution)

    logs = actions.add_parser("logs", parents=[common], help="an execution's log")
    logs.add_argument("id")
    logs.add_argument(
        "--follow",
        action="store_true",
        help="go on printing lines as they come, until the execution ends "
        "(with --json: one JSON object a line)",
    )
    logs.set_defaults(handler=show_logs)

    cancel = actions.add_parser(
        "cancel", parents=[common], help="cancel an execution that has not ended"
    )
    cancel.add_argument("id")
    cancel.set_defaults(handler=cancel_execution)

    output = actions.add_parser(
        "output",
        parents=[common],
        help="print a JSON output, or write a file output with --to",
    )
    output.add_argument("id")
    output.add_argument("name", help="the output's name")
    output.add_argument(
        "--to",
        metavar="PATH",
        help="the file to write a FILE output to (a folder: the output's name in it)",
    )
    output.set_defaults(handler=get_output)


def list_executions(args: argparse.Namespace) -> int:
    with open_sdk(args) as sdk:
        executions = sdk.list_pipeline_executions(args.pipeline)
    if args.json:
        print_json(executions)
    else:
        print_table(executions, _COLUMNS, "no executions")
    return 0


def get_execution(args: argparse.Namespace) -> int:
    with open_sdk(args) as sdk:
        execution = sdk.get_pipeline_execution(args.id)
    _print_execution(args, execution)
    return 0


def show_logs(args: argparse.Namespace) -> int:
    with open_sdk(args) as sdk:
        if args.follow:
            for line in sdk.get_pipeline_execution_logs(args.id, follow=True):
                if args.json:
                    print_json_line(line)
                else:
                    print(_log_text(line), flush=True)
            return 0
        lines = sdk.get_pipeline_execution_logs(args.id)
    if args.json:
        print_json(lines)
    else:
        for line in lines:
            print(_log_text(line))
    return 0


def cancel_execution(args: argparse.Namespace) -> int:
    with open_sdk(args) as sdk:
        execution = sdk.cancel_pipeline_execution(args.id)
    _print_execution(args, execution)
    return 0


def get_output(args: argparse.Namespace) -> int:
    target = None if args.to is None else _target(Path(args.to), args.name)
    with open_sdk(args) as sdk:
        value = sdk.get_pipeline_execution_output(args.id, args.name)
        if not isinstance(value, ExecutionOutputFile):
            if target is not None:
                raise InvalidArgumentError.for_field(
                    "--to", f"applies to FILE outputs only, and {args.name!r} is JSON"
                )
            print_json(value)
            return 0
        if target is None:
            value.close()
            raise InvalidArgumentError.for_field(
                "--to",
                f"is required: {args.name!r} is a FILE output, which is never "
                "printed; give the path to write it to",
            )
        recorded = sdk.get_pipeline_execution(args.id)["outputs"].get(args.name)
        size = recorded.get("size_bytes") if isinstance(recorded, dict) else None
        written = save_output_file(value, target, args.name, size)
    if args.json:
        print_json(
            {
                "execution_id": args.id,
                "output_name": args.name,
                "path": str(target),
                "size_bytes": written,
            }
        )
    else:
        print(f"wrote {target} ({format_size(written)})")
    return 0


def _print_execution(args: argparse.Namespace, execution: dict[str, Any]) -> None:
    if args.json:
        print_json(execution)
        return
    print_fields(
        [
            (key, execution[key])
            for key in (
                "execution_id",
                "pipeline_name",
                "step_name",
                "status",
                "created_at",
                "started_at",
                "ended_at",
                "failure_reason",
            )
        ]
        + flatten("inputs", execution["inputs"])
        + flatten("outputs", execution["outputs"])
        + [("gpu_devices", execution["gpu_devices"])]
    )


def _log_text(line: dict[str, Any]) -> str:
    stream = format_value(line["stream"])
    return f"{format_value(line['timestamp'])} {stream:<6} {line['message']}"


def _target(path: Path, output_name: str) -> Path:
    """Where --to writes: the path, or the output's name in it when it is a
    folder; the folder must exist."""
    target = path / output_name if path.is_dir() else path
    if not target.parent.is_dir():
        raise InvalidArgumentError.for_field(
            "--to", f"its folder {str(target.parent)!r} does not exist"
        )
    return target
