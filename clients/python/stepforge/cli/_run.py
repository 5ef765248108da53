"""`stepforge run`: run a pipeline with inputs given on the command line."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any

from stepforge import ExecutionOutputFile, StepforgeSdk
from stepforge.cli._connection import open_sdk
from stepforge.cli._output import flatten, print_fields, print_json
from stepforge.cli._progress import Progress, format_size
from stepforge.cli._save import save_output_file
from stepforge.errors import InvalidArgumentError, StepforgeError


class LocalFile:
    """The path of an --input-file, read when the run starts."""

    def __init__(self, path: str) -> None:
        self.path = path


def add_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """Adds `run` to the command parser."""
    run = commands.add_parser(
        "run",
        parents=[common],
        help="run a pipeline, write its file outputs and print the others",
    )
    run.add_argument("pipeline")
    run.add_argument(
        "--input",
        dest="inputs",
        action=_JsonInput,
        metavar="NAME=VALUE",
        help="an input, read as JSON when it parses as JSON and as text otherwise "
        "(n=3 is a number, s='\"3\"' a string); repeatable",
    )
    run.add_argument(
        "--input-file",
        dest="inputs",
        action=_FileInput,
        metavar="NAME=PATH",
        help="a local file for a FILE input; repeatable",
    )
    run.add_argument(
        "--no-wait",
        action="store_true",
        help="print the execution id at once instead of waiting for the outputs",
    )
    run.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="bound the run once started (default: one hour)",
    )
    run.add_argument(
        "--output-dir",
        default=".",
        metavar="DIR",
        help="where file outputs are written, each under its output's name "
        "(default: this folder)",
    )
    run.set_defaults(handler=run_pipeline, inputs=None)


def run_pipeline(args: argparse.Namespace) -> int:
    output_dir = Path(args.output_dir)
    # Made before the run, so that a folder that cannot be made fails first.
    output_dir.mkdir(parents=True, exist_ok=True)
    with open_sdk(args) as sdk:
        with ExitStack() as uploads:
            inputs = _inputs(args.inputs or {}, uploads)
            result = sdk.run_pipeline(
                args.pipeline, inputs, wait=not args.no_wait, timeout_s=args.timeout
            )
        outputs, files = _save_file_outputs(sdk, result, output_dir)
    if args.json:
        print_json({"execution_id": result["execution_id"], "outputs": outputs})
        return 0
    readable = {
        name: _describe_file(value) if name in files else value
        for name, value in outputs.items()
    }
    print_fields(
        [("execution_id", result["execution_id"]), *flatten("outputs", readable)]
    )
    return 0


def parse_value(text: str) -> Any:
    """`text` as JSON when it parses as JSON, else the text itself."""
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except ValueError:
        return text


class _JsonInput(argparse.Action):
    """--input NAME=VALUE, gathered with --input-file into one mapping."""

    kind = "VALUE"

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        name, separator, text = str(values).partition("=")
        if not separator or not name:
            parser.error(f"{option_string} {values!r}: give NAME={self.kind}")
        given = dict(getattr(namespace, self.dest, None) or {})
        if name in given:
            parser.error(f"{option_string} {values!r}: input {name!r} is given twice")
        given[name] = self.convert(parser, option_string, text)
        setattr(namespace, self.dest, given)

    def convert(
        self, parser: argparse.ArgumentParser, option_string: str | None, text: str
    ) -> Any:
        return parse_value(text)


class _FileInput(_JsonInput):
    """--input-file NAME=PATH."""

    kind = "PATH"

    def convert(
        self, parser: argparse.ArgumentParser, option_string: str | None, text: str
    ) -> Any:
        if not text:
            parser.error(f"{option_string}: the path after '=' is empty")
        return LocalFile(text)


def _inputs(given: Mapping[str, Any], uploads: ExitStack) -> dict[str, Any]:
    """The inputs for the SDK: --input-file ones opened, their reads counted
    by one progress bar for all of them."""
    files = {
        name: uploads.enter_context(_open_input(name, value.path))
        for name, value in given.items()
        if isinstance(value, LocalFile)
    }
    if not files:
        return dict(given)
    total = sum(os.fstat(handle.fileno()).st_size for handle in files.values())
    progress = uploads.enter_context(Progress("uploading", total))
    return {
        name: progress.reader(files[name]) if name in files else value
        for name, value in given.items()
    }


def _open_input(name: str, path: str) -> IO[bytes]:
    try:
        return open(path, "rb")
    except OSError as error:
        raise InvalidArgumentError.for_field(
            f"--input-file {name}", f"cannot read {path!r}: {error.strerror}"
        ) from None


def _save_file_outputs(
    sdk: StepforgeSdk, result: dict[str, Any], output_dir: Path
) -> tuple[dict[str, Any], set[str]]:
    """The outputs, each FILE one written to `output_dir` and given as its
    `path` and `size_bytes`, and the names of the FILE ones."""
    outputs: dict[str, Any] = result["outputs"]
    files = {n for n, v in outputs.items() if isinstance(v, ExecutionOutputFile)}
    if not files:
        return outputs, files
    recorded = sdk.get_pipeline_execution(result["execution_id"])["outputs"]
    saved: dict[str, Any] = {}
    for name, value in outputs.items():
        if not isinstance(value, ExecutionOutputFile):
            saved[name] = value
            continue
        if not name.isidentifier():
            value.close()
            raise StepforgeError(f"output {name!r} is not a usable file name")
        target = output_dir / name
        size = recorded.get(name, {}).get("size_bytes")
        written = save_output_file(value, target, name, size)
        saved[name] = {"path": str(target), "size_bytes": written}
    return saved, files


def _describe_file(saved: dict[str, Any]) -> str:
    return f"{saved['path']} ({format_size(saved['size_bytes'])})"


def _refuse_constant(constant: str) -> Any:
    # NaN and Infinity are not JSON; such a value is taken as text.
    raise ValueError(constant)
