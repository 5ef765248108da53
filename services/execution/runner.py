"""Run one step's function inside the step's own environment.

The executor starts this file as a script with the step's interpreter,
``<venv>/bin/python -u runner.py SPEC_JSON``, from a working directory holding a
copy of the step's code. It holds its own process to the spec's limits, calls
the function the spec names, writes the outputs and a result file, and exits 0
(succeeded), 1 (the step failed) or 2 (the runner was misused). Steps choose
their Python, so this file imports only the standard library and must run on
Python 3.8 and later.
"""

from __future__ import annotations

import importlib.util
import io
import json
import math
import os
import sys

# Every millisecond of imports here is paid by every execution: modules that
# only some runs need are imported where they are used, and typing only for
# type checkers (which treat this name as true).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any, BinaryIO, Callable

PROTOCOL_VERSION = 1

EXIT_SUCCEEDED = 0
EXIT_FAILED = 1
EXIT_MISUSED = 2

CHUNK_SIZE = 1024 * 1024
# The largest value setrlimit takes from Python: a C long long.
_MAX_LIMIT = 2**63 - 1
# Spec key, resource name, and how far the hard limit sits above the soft one:
# CPU time gets a few seconds so the kernel's SIGXCPU comes before its SIGKILL.
_RLIMITS = (
    ("memory_bytes", "RLIMIT_AS", 0),
    ("cpu_seconds", "RLIMIT_CPU", 5),
    ("open_files", "RLIMIT_NOFILE", 0),
)
_REASON_LIMIT = 500
_FALLBACK_MODULE = "__stepforge_step__"
_SPEC_TYPES = {str: "a string", int: "an integer", dict: "an object", list: "an array"}
_JSON_RULES = {
    "json": "any JSON value",
    "string": "a string",
    "number": "a finite number (int or float, not a boolean)",
    "boolean": "a boolean",
    "array": "a list",
}


def main(argv: Sequence[str]) -> int:
    """Run the step described by the spec file ``argv[0]``; return the exit status.

    ``argv`` holds the arguments after the script's own name.
    """
    for stream in (sys.stdout, sys.stderr):
        _line_buffer(stream)
    result_path: str | None = None
    try:
        if len(argv) != 1:
            raise _SpecError("expected one argument, the path of the spec file")
        raw = _read_spec(argv[0])
        if isinstance(raw.get("result_path"), str):
            result_path = raw["result_path"]
        spec = _parse_spec(raw)
        kwargs, streams = _open_inputs(spec.inputs)
    except _SpecError as exc:
        _say(f"misused: {exc}")
        if result_path is not None:
            _finish(result_path, _failed(str(exc), "SpecError"), EXIT_MISUSED)
        return EXIT_MISUSED
    # Before the step's code is imported, so none of it runs unlimited.
    limits = _apply_limits(spec.limits) if spec.limits is not None else None
    try:
        outputs = _run(spec, kwargs)
    except _StepFailed as failure:
        result = _failed(_reason(failure, limits), failure.error_type)
        _say(f"the step failed: {result['reason']}")
        exit_status = EXIT_FAILED
    except KeyboardInterrupt:
        _release(streams, limits)
        interrupted = _failed("the step was interrupted", "KeyboardInterrupt")
        _finish(spec.result_path, interrupted, EXIT_FAILED)
        raise
    else:
        result = {"status": "succeeded", "outputs": outputs}
        exit_status = EXIT_SUCCEEDED
    finally:
        # After the outputs, not the call: a step may return an input as output.
        _release(streams, limits)
    return _finish(spec.result_path, result, exit_status)


class _SpecError(Exception):
    """The spec, or what it points at, is unusable: the runner was misused."""


class _StepFailed(Exception):
    def __init__(self, reason: str, error_type: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.error_type = error_type


class _OutputError(_StepFailed):
    def __init__(self, reason: str) -> None:
        super().__init__(reason, "OutputError")


class _Limits:
    """The limits this process runs under, and a descriptor held back so the
    runner can still write the result after the step used up its own."""

    def __init__(self, applied: dict[str, int], spare: int | None) -> None:
        self.applied = applied
        self._spare = spare

    def release_spare(self) -> None:
        if self._spare is not None:
            os.close(self._spare)
            self._spare = None


class _Output:
    __slots__ = ("name", "data_type", "default")

    def __init__(
        self, name: str, data_type: str, default: dict[str, Any] | None
    ) -> None:
        self.name = name
        self.data_type = data_type
        self.default = default


class _Spec:
    __slots__ = (
        "function_path",
        "function_name",
        "inputs",
        "outputs",
        "output_dir",
        "result_path",
        "max_json_bytes",
        "limits",
    )

    def __init__(
        self,
        function_path: str,
        function_name: str,
        inputs: dict[str, dict[str, Any]],
        outputs: list[_Output],
        output_dir: str,
        result_path: str,
        max_json_bytes: int,
        limits: dict[str, int] | None,
    ) -> None:
        self.function_path = function_path
        self.function_name = function_name
        self.inputs = inputs
        self.outputs = outputs
        self.output_dir = output_dir
        self.result_path = result_path
        self.max_json_bytes = max_json_bytes
        self.limits = limits


def _read_spec(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            raw = json.load(handle)
    except OSError as exc:
        raise _SpecError(f"cannot read the spec file {path}: {exc}") from None
    except ValueError as exc:
        raise _SpecError(f"the spec file {path} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise _SpecError(f"the spec file {path} must hold a JSON object")
    return raw


def _parse_spec(raw: dict[str, Any]) -> _Spec:
    protocol = raw.get("protocol", PROTOCOL_VERSION)
    if type(protocol) is not int or protocol != PROTOCOL_VERSION:
        raise _SpecError(
            f"spec 'protocol' must be {PROTOCOL_VERSION}, not {protocol!r}"
        )
    function_path = _field(raw, "function_path", str, "spec")
    if not function_path or os.path.isabs(function_path):
        raise _SpecError("spec 'function_path' must be a path relative to the code")
    inputs = _field(raw, "inputs", dict, "spec")
    for name, ref in inputs.items():
        _check_ref(ref, f"spec input {name!r}", None)
    declared = _field(raw, "outputs", list, "spec")
    outputs = [_parse_output(item, index) for index, item in enumerate(declared)]
    names = [output.name for output in outputs]
    if len(set(names)) != len(names):
        raise _SpecError("spec 'outputs' must not declare a name twice")
    # Absolute, so a step that changes directory cannot move them.
    output_dir = os.path.abspath(_field(raw, "output_dir", str, "spec"))
    if not os.path.isdir(output_dir):
        raise _SpecError(
            f"spec 'output_dir' {output_dir!r} must be an existing directory"
        )
    limit = _field(raw, "max_json_bytes", int, "spec")
    if limit < 0:
        raise _SpecError("spec 'max_json_bytes' must not be negative")
    return _Spec(
        function_path=function_path,
        function_name=_field(raw, "function_name", str, "spec"),
        inputs=inputs,
        outputs=outputs,
        output_dir=output_dir,
        result_path=os.path.abspath(_field(raw, "result_path", str, "spec")),
        max_json_bytes=limit,
        limits=_parse_limits(raw["limits"]) if "limits" in raw else None,
    )


def _parse_limits(raw: Any) -> dict[str, int]:
    if not isinstance(raw, dict):
        raise _SpecError("spec field 'limits' must be an object")
    known = [key for key, _, _ in _RLIMITS]
    for key, value in raw.items():
        if key not in known:
            raise _SpecError(
                f"spec 'limits' has no field {key!r}; known: {', '.join(known)}"
            )
        if type(value) is not int or not 0 < value <= _MAX_LIMIT:
            raise _SpecError(
                f"spec 'limits' field {key!r} must be an integer from 1 to "
                f"{_MAX_LIMIT}, not {value!r}"
            )
    return dict(raw)


def _apply_limits(limits: dict[str, int]) -> _Limits:
    """Lowers soft and hard limits together, so the step cannot raise them
    again; a hard limit already below the request is kept."""
    import resource

    # Taken before the limit, which may already be below what is open.
    spare = os.open(os.devnull, os.O_RDONLY) if "open_files" in limits else None
    applied: dict[str, int] = {}
    for key, name, grace in _RLIMITS:
        if key not in limits:
            continue
        which = getattr(resource, name)
        hard_now = resource.getrlimit(which)[1]
        soft, hard = limits[key], min(limits[key] + grace, _MAX_LIMIT)
        if hard_now != resource.RLIM_INFINITY and hard_now < hard:
            soft, hard = min(soft, hard_now), hard_now
        if soft < limits[key]:
            _say(f"limit {key} is {soft}, not {limits[key]}: the host allows no more")
        resource.setrlimit(which, (soft, hard))
        applied[key] = soft
    return _Limits(applied, spare)


def _reason(failure: _StepFailed, limits: _Limits | None) -> str:
    memory = limits.applied.get("memory_bytes") if limits else None
    if failure.error_type != "MemoryError" or memory is None:
        return failure.reason
    return f"MemoryError: the step used more than its memory limit of {memory} bytes"


def _release(streams: list[BinaryIO], limits: _Limits | None) -> None:
    for stream in streams:
        stream.close()
    if limits is not None:
        limits.release_spare()


def _parse_output(item: Any, index: int) -> _Output:
    where = f"spec output #{index}"
    if not isinstance(item, dict):
        raise _SpecError(f"{where} must be an object")
    name = _field(item, "name", str, where)
    if name in ("", ".", "..") or "/" in name or os.sep in name or "\0" in name:
        raise _SpecError(f"{where} name {name!r} must be a plain file name")
    data_type = _field(item, "data_type", str, where)
    if data_type != "file" and data_type not in _JSON_RULES:
        raise _SpecError(f"{where} 'data_type' {data_type!r} is not a known type")
    default = item.get("default")
    if default is not None:
        kind = "file" if data_type == "file" else "json"
        _check_ref(default, f"the default of output {name!r}", kind)
    return _Output(name=name, data_type=data_type, default=default)


def _field(raw: dict[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in raw:
        raise _SpecError(f"{where} is missing the field {key!r}")
    value = raw[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise _SpecError(f"{where} field {key!r} must be {_SPEC_TYPES[kind]}")
    return value


def _check_ref(ref: Any, where: str, kind: str | None) -> None:
    if not isinstance(ref, dict) or ref.get("kind") not in ("json", "file"):
        raise _SpecError(f"{where} must be an object whose 'kind' is 'json' or 'file'")
    if kind is not None and ref["kind"] != kind:
        raise _SpecError(f"{where} must have kind {kind!r}")
    path = ref.get("path")
    if ref["kind"] == "file" and path is not None and not isinstance(path, str):
        raise _SpecError(f"{where} 'path' must be a string or null")


def _open_inputs(
    inputs: dict[str, dict[str, Any]],
) -> tuple[dict[str, Any], list[BinaryIO]]:
    kwargs: dict[str, Any] = {}
    streams: list[BinaryIO] = []
    for name, ref in inputs.items():
        if ref["kind"] == "json":
            kwargs[name] = ref.get("value")
            continue
        path = ref.get("path")
        try:
            stream: BinaryIO = io.BytesIO(b"") if path is None else open(path, "rb")
        except OSError as exc:
            for opened in streams:
                opened.close()
            raise _SpecError(f"input {name!r}: cannot open {path}: {exc}") from None
        streams.append(stream)
        kwargs[name] = stream
    return kwargs, streams


def _run(spec: _Spec, kwargs: dict[str, Any]) -> dict[str, Any]:
    code_root = os.getcwd()
    _put_first_on_path(code_root)
    function = _load_function(spec, code_root)
    try:
        returned = function(**kwargs)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        raise _step_raised(exc) from None
    return _collect_outputs(returned, spec)


def _put_first_on_path(code_root: str) -> None:
    # Drop the runner's own directory so the step sees only its code and venv.
    here = os.path.dirname(os.path.abspath(__file__))
    kept = [
        entry
        for entry in sys.path
        if os.path.abspath(entry or os.curdir) not in (here, code_root)
    ]
    sys.path[:] = [code_root, *kept]


def _load_function(spec: _Spec, code_root: str) -> Callable[..., Any]:
    path = os.path.join(code_root, spec.function_path)
    if not os.path.isfile(path):
        reason = f"the step's code has no file {spec.function_path!r}"
        raise _StepFailed(reason, "FileNotFoundError")
    name = _module_name(spec.function_path)
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        reason = f"{spec.function_path!r} cannot be loaded as a Python module"
        raise _StepFailed(reason, "ImportError")
    module = importlib.util.module_from_spec(module_spec)
    # Registered before running so dataclasses and pickle can find the module.
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        sys.modules.pop(name, None)
        raise _step_raised(exc) from None
    if not hasattr(module, spec.function_name):
        reason = f"{spec.function_path!r} defines no {spec.function_name!r}"
        raise _StepFailed(reason, "AttributeError")
    function: Callable[..., Any] = getattr(module, spec.function_name)
    if not callable(function):
        kind = type(function).__name__
        reason = f"{spec.function_name!r} in {spec.function_path!r} is a {kind}, "
        raise _StepFailed(reason + "not a function", "TypeError")
    return function


def _module_name(function_path: str) -> str:
    """The dotted import name of the step's file, unless that name is unusable."""
    parts = os.path.normpath(function_path).replace(os.sep, "/").split("/")
    if parts[-1].endswith(".py"):
        parts[-1] = parts[-1][: -len(".py")]
    # A name the runner already imported (json, os, ...) must not be replaced.
    if all(part.isidentifier() for part in parts) and parts[0] not in sys.modules:
        return ".".join(parts)
    return _FALLBACK_MODULE


def _step_raised(exc: BaseException, context: str = "") -> _StepFailed:
    """Log what the step's code raised and turn it into a failure."""
    if isinstance(exc, SystemExit):
        failure = _StepFailed(
            f"{context}the step called exit({exc.code!r})", "SystemExit"
        )
    else:
        try:
            message = str(exc)
        except Exception:
            message = "<unprintable message>"
        name = type(exc).__name__
        reason = f"{name}: {message}" if message else name
        failure = _StepFailed(context + reason, name)
    # A step that ran into its memory or open-files limit still holds what it
    # took through its frames; printing the traceback needs some of it back.
    _clear_frames(exc.__traceback__)
    try:
        import traceback

        traceback.print_exception(type(exc), exc, exc.__traceback__)
    except (MemoryError, OSError) as error:
        _say(f"cannot print the step's traceback: {type(error).__name__}")
    return failure


def _clear_frames(tb: Any) -> None:
    while tb is not None:
        try:
            tb.tb_frame.clear()
        except RuntimeError:
            # A frame still running: the runner's own.
            pass
        tb = tb.tb_next


def _collect_outputs(returned: Any, spec: _Spec) -> dict[str, Any]:
    if returned is None:
        returned = {}
    if not isinstance(returned, dict):
        kind = type(returned).__name__
        raise _OutputError(
            f"the step must return a dict of outputs or None, not {kind}"
        )
    declared = [output.name for output in spec.outputs]
    undeclared = [key for key in returned if key not in declared]
    if undeclared:
        raise _OutputError(
            "the step returned undeclared outputs "
            + ", ".join(repr(key) for key in undeclared)
            + "; declared: "
            + (", ".join(repr(name) for name in declared) or "none")
        )
    results: dict[str, Any] = {}
    for output in spec.outputs:
        try:
            if output.name in returned:
                value = returned[output.name]
            else:
                value = _default(output)
            results[output.name] = _produce(output, value, spec)
        except _StepFailed:
            raise
        except Exception as exc:
            # Reading a returned object runs the step's code, or touches disk.
            raise _step_raised(exc, f"output {output.name!r}: ") from None
    return results


def _produce(output: _Output, value: Any, spec: _Spec) -> dict[str, Any]:
    if output.data_type != "file":
        _check_json(output, value, spec.max_json_bytes)
        return {"kind": "json", "value": value}
    name = output.name
    if isinstance(value, (bytes, bytearray, memoryview)):
        with _FileOutput(spec.output_dir, name) as out:
            out.write(value)
        return out.describe()
    if isinstance(value, (str, os.PathLike)):
        path = os.path.abspath(os.fspath(value))
        if not os.path.isfile(path):
            shown = os.fspath(value)
            reason = f"output {name!r}: {shown!r} is not an existing regular file"
            raise _OutputError(reason)
        with open(path, "rb") as source, _FileOutput(spec.output_dir, name) as out:
            _copy(source, out)
        return out.describe()
    if callable(getattr(value, "read", None)):
        try:
            with _FileOutput(spec.output_dir, name) as out:
                _copy(value, out)
        finally:
            close = getattr(value, "close", None)
            if callable(close):
                close()
        return out.describe()
    raise _OutputError(
        f"output {name!r} must be bytes, a readable binary file object or the "
        f"path of a file, not {type(value).__name__}"
    )


def _default(output: _Output) -> Any:
    """What a missing output becomes: its default, else None or an empty file."""
    default = output.default or {}
    if output.data_type != "file":
        return default.get("value")
    path = default.get("path")
    return b"" if path is None else path


def _check_json(output: _Output, value: Any, limit: int) -> None:
    name = output.name
    if value is not None and not _has_type(output.data_type, value):
        rule = _JSON_RULES[output.data_type]
        kind = type(value).__name__
        raise _OutputError(f"output {name!r} must be {rule} or None, not {kind}")
    try:
        text = json.dumps(
            value, allow_nan=False, ensure_ascii=False, separators=(",", ":")
        )
        size = len(text.encode("utf-8"))
    except (TypeError, ValueError, RecursionError) as exc:
        raise _OutputError(f"output {name!r} is not JSON-serializable: {exc}") from None
    if size > limit:
        reason = f"output {name!r} is {size} bytes as JSON, over the limit of {limit}"
        raise _OutputError(reason)


def _has_type(data_type: str, value: Any) -> bool:
    if data_type == "string":
        return isinstance(value, str)
    if data_type == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        return isinstance(value, int) or math.isfinite(value)
    if data_type == "boolean":
        return isinstance(value, bool)
    if data_type == "array":
        return isinstance(value, list)
    return True


def _copy(source: Any, out: _FileOutput) -> None:
    """Copies in chunks, so memory does not grow with the file."""
    while True:
        chunk = source.read(CHUNK_SIZE)
        if not chunk:
            return
        out.write(chunk)


class _FileOutput:
    """An output file being written, its size and SHA-256 kept as it grows."""

    def __init__(self, output_dir: str, name: str) -> None:
        self.name = name
        self.path = os.path.join(output_dir, name)
        self.size = 0
        import hashlib

        self._digest = hashlib.sha256()
        self._file = open(self.path, "wb")

    def __enter__(self) -> _FileOutput:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._file.close()

    def write(self, data: object) -> int:
        if isinstance(data, memoryview):
            data = data.tobytes()
        if not isinstance(data, (bytes, bytearray)):
            kind = type(data).__name__
            raise _OutputError(
                f"output {self.name!r}: the returned file object read {kind}, "
                "not bytes; open it in binary mode"
            )
        self._file.write(data)
        self._digest.update(data)
        self.size += len(data)
        return len(data)

    def describe(self) -> dict[str, Any]:
        digest = self._digest.hexdigest()
        return {"kind": "file", "path": self.path, "size": self.size, "sha256": digest}


def _failed(reason: str, error_type: str) -> dict[str, Any]:
    lines = reason.strip().splitlines()
    line = lines[0] if lines else "unknown failure"
    if len(line) > _REASON_LIMIT:
        line = line[: _REASON_LIMIT - 3] + "..."
    return {"status": "failed", "reason": line, "error_type": error_type}


def _finish(result_path: str, result: dict[str, Any], exit_status: int) -> int:
    try:
        _write_atomically(result_path, result)
    except (OSError, ValueError) as exc:
        _say(f"cannot write the result to {result_path}: {exc}")
        return EXIT_MISUSED
    return exit_status


def _write_atomically(path: str, result: dict[str, Any]) -> None:
    # Renamed into place so the executor never reads half a result. Not synced:
    # it is read as soon as this process exits, and an execution a crash
    # interrupts fails whatever this file holds.
    temporary = path + ".part"
    try:
        with open(temporary, "w", encoding="utf-8") as stream:
            json.dump(result, stream, allow_nan=False)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def _line_buffer(stream: Any) -> None:
    try:
        stream.reconfigure(line_buffering=True)
    except (AttributeError, ValueError, OSError):
        # A replaced, closed or detached stream keeps its buffering.
        pass


def _say(message: str) -> None:
    print(f"[stepforge] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
