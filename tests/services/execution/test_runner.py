from __future__ import annotations

import ast
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support.runner_steps import RUNNER, Outcome, StepDir, step_for_param

from stepforge.services.execution import runner


@pytest.fixture(params=["host", "python3.8"])
def step(request: pytest.FixtureRequest, tmp_path: Path) -> StepDir:
    return step_for_param(request, tmp_path, StepDir)


def _output(name: str, data_type: str, default: Any = None) -> dict[str, Any]:
    return {"name": name, "data_type": data_type, "default": default}


def _json(value: Any) -> dict[str, Any]:
    return {"kind": "json", "value": value}


def _file_input(path: Path | None) -> dict[str, Any]:
    return {"kind": "file", "path": None if path is None else str(path)}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_content(outcome: Outcome, name: str) -> bytes:
    described = outcome.outputs[name]
    content = Path(described["path"]).read_bytes()
    assert described["kind"] == "file"
    assert described["size"] == len(content)
    assert described["sha256"] == _sha256(content)
    return content


# Inputs, the call and JSON outputs.


def test_json_inputs_reach_the_function_and_json_outputs_come_back(
    step: StepDir,
) -> None:
    step.write(
        "step.py",
        """
        def run(x, scale, tags):
            return {"total": x * scale, "label": "n=%d" % x, "big": x > 1,
                    "tags": sorted(tags), "info": {"scale": scale, "none": None}}
        """,
    )
    outcome = step.run(
        inputs={"x": _json(3), "scale": _json(2.5), "tags": _json(["b", "a"])},
        outputs=[
            _output("total", "number"),
            _output("label", "string"),
            _output("big", "boolean"),
            _output("tags", "array"),
            _output("info", "json"),
        ],
    )

    assert outcome.returncode == 0, outcome.stderr
    assert sorted(path.name for path in step.root.iterdir()) == [
        "code",
        "out",
        "result.json",
        "spec.json",
    ]
    assert outcome.outputs == {
        "total": _json(7.5),
        "label": _json("n=3"),
        "big": _json(True),
        "tags": _json(["a", "b"]),
        "info": _json({"scale": 2.5, "none": None}),
    }


def test_file_input_is_a_readable_binary_stream_with_the_content(
    step: StepDir,
) -> None:
    data = step.root / "data.bin"
    data.write_bytes(b"\x00\x01hello")
    step.write(
        "step.py",
        """
        def run(data):
            content = data.read()
            return {"is_bytes": isinstance(content, bytes), "content": list(content)}
        """,
    )
    outcome = step.run(
        inputs={"data": _file_input(data)},
        outputs=[_output("is_bytes", "boolean"), _output("content", "array")],
    )

    assert outcome.outputs["is_bytes"] == _json(True)
    assert outcome.outputs["content"] == _json(list(b"\x00\x01hello"))


def test_absent_file_input_is_an_empty_stream(step: StepDir) -> None:
    step.write("step.py", "def run(data):\n    return {'content': list(data.read())}\n")
    outcome = step.run(
        inputs={"data": _file_input(None)}, outputs=[_output("content", "array")]
    )

    assert outcome.outputs["content"] == _json([])


def test_file_inputs_are_closed_once_the_step_is_done(step: StepDir) -> None:
    data = step.root / "data.bin"
    data.write_bytes(b"abc")
    # atexit runs after the runner finished, so it sees the stream's final state.
    step.write(
        "step.py",
        """
        import atexit
        kept = []

        @atexit.register
        def report():
            with open("closed.txt", "w") as handle:
                handle.write(repr([stream.closed for stream in kept]))

        def run(data, empty):
            kept.extend([data, empty])
        """,
    )
    outcome = step.run(inputs={"data": _file_input(data), "empty": _file_input(None)})

    assert outcome.returncode == 0, outcome.stderr
    assert (step.code / "closed.txt").read_text() == "[True, True]"


def test_stdout_and_stderr_are_line_buffered_for_the_step(step: StepDir) -> None:
    step.write(
        "step.py",
        """
        import sys

        def run():
            print("hello from the step")
            return {"streams": [sys.stdout.line_buffering, sys.stderr.line_buffering]}
        """,
    )
    outcome = step.run(outputs=[_output("streams", "array")])

    assert outcome.outputs["streams"] == _json([True, True])
    assert outcome.stdout == "hello from the step\n"


# File outputs.


@pytest.mark.parametrize(
    "expression",
    [
        "b'payload'",
        "bytearray(b'payload')",
        "memoryview(b'payload')",
        "io.BytesIO(b'payload')",
        "open(write('made.bin'), 'rb')",
        "write('made.bin')",
        "pathlib.Path(write('made.bin')).resolve()",
    ],
)
def test_each_file_output_kind_is_written_with_size_and_sha256(
    step: StepDir, expression: str
) -> None:
    step.write(
        "step.py",
        f"""
        import io, pathlib

        def write(name):
            with open(name, "wb") as handle:
                handle.write(b"payload")
            return name

        def run():
            return {{"model": {expression}}}
        """,
    )
    outcome = step.run(outputs=[_output("model", "file")])

    assert _file_content(outcome, "model") == b"payload"
    assert outcome.outputs["model"]["path"] == str(step.output_dir / "model")


def test_file_input_returned_as_an_output_is_copied(step: StepDir) -> None:
    data = step.root / "data.bin"
    data.write_bytes(b"passed through")
    step.write("step.py", "def run(data):\n    return {'copy': data}\n")
    outcome = step.run(
        inputs={"data": _file_input(data)}, outputs=[_output("copy", "file")]
    )

    assert _file_content(outcome, "copy") == b"passed through"


def test_large_file_output_is_streamed_in_bounded_memory(step: StepDir) -> None:
    size = 50 * 1024 * 1024
    step.write(
        "step.py",
        f"""
        class Repeating:
            def __init__(self):
                self.left = {size}

            def read(self, n=-1):
                n = self.left if n < 0 else min(n, self.left)
                self.left -= n
                return b"x" * n

        def run():
            return {{"big": Repeating()}}
        """,
    )
    step.spec_path.write_text(json.dumps(step.spec(outputs=[_output("big", "file")])))
    # A fresh parent whose only child is the runner, so the peak is the runner's.
    probe = (
        "import resource, subprocess, sys\n"
        "code = subprocess.call(sys.argv[1:])\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        "sys.exit(code)\n"
    )
    command = [step.python, "-u", str(RUNNER), str(step.spec_path)]
    completed = subprocess.run(
        [sys.executable, "-c", probe, *command],
        cwd=step.code,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert completed.returncode == 0, completed.stderr
    peak_kib = int(completed.stdout.split()[-1])
    # Below the output's own 50 MiB: holding the output in memory cannot pass.
    assert peak_kib < 40 * 1024
    described = json.loads(step.result_path.read_text())["outputs"]["big"]
    assert described["size"] == size
    expected = hashlib.sha256()
    for _ in range(50):
        expected.update(b"x" * (1024 * 1024))
    assert described["sha256"] == expected.hexdigest()
    assert (step.output_dir / "big").stat().st_size == size


def test_text_file_object_output_fails_naming_the_output(step: StepDir) -> None:
    step.write("step.py", "import io\ndef run():\n    return {'m': io.StringIO('t')}\n")
    outcome = step.run(outputs=[_output("m", "file")])

    assert outcome.reason.startswith("output 'm': ")
    assert "binary mode" in outcome.reason
    assert outcome.result["error_type"] == "OutputError"


def test_path_output_must_name_an_existing_file(step: StepDir) -> None:
    step.write("step.py", "def run():\n    return {'model': 'nowhere.bin'}\n")
    outcome = step.run(outputs=[_output("model", "file")])

    assert "'model'" in outcome.reason
    assert "'nowhere.bin' is not an existing regular file" in outcome.reason


def test_unsupported_file_output_value_fails_listing_accepted_kinds(
    step: StepDir,
) -> None:
    step.write("step.py", "def run():\n    return {'model': 42}\n")
    outcome = step.run(outputs=[_output("model", "file")])

    assert outcome.reason == (
        "output 'model' must be bytes, a readable binary file object or the "
        "path of a file, not int"
    )


# Missing outputs.


def test_missing_outputs_take_their_defaults(step: StepDir) -> None:
    default_file = step.root / "default.bin"
    default_file.write_bytes(b"default content")
    step.write("step.py", "def run():\n    return {}\n")
    outcome = step.run(
        outputs=[
            _output("score", "number", _json(0.5)),
            _output("model", "file", _file_input(default_file)),
        ]
    )

    assert outcome.outputs["score"] == _json(0.5)
    assert _file_content(outcome, "model") == b"default content"


def test_missing_outputs_without_default_are_null_or_an_empty_file(
    step: StepDir,
) -> None:
    step.write("step.py", "def run():\n    return {}\n")
    outcome = step.run(outputs=[_output("score", "number"), _output("model", "file")])

    assert outcome.outputs["score"] == _json(None)
    assert _file_content(outcome, "model") == b""


def test_none_returned_with_no_outputs_succeeds(step: StepDir) -> None:
    step.write("step.py", "def run():\n    pass\n")
    outcome = step.run()

    assert outcome.returncode == 0, outcome.stderr
    assert outcome.result == {"status": "succeeded", "outputs": {}}


# Output rules.


def test_non_dict_return_fails(step: StepDir) -> None:
    step.write("step.py", "def run():\n    return [1]\n")
    outcome = step.run()

    assert outcome.reason == "the step must return a dict of outputs or None, not list"


def test_undeclared_outputs_fail_naming_each(step: StepDir) -> None:
    step.write("step.py", "def run():\n    return {'a': 1, 'kept': 2, 'b': 3}\n")
    outcome = step.run(outputs=[_output("kept", "number")])

    assert outcome.reason == (
        "the step returned undeclared outputs 'a', 'b'; declared: 'kept'"
    )
    assert outcome.result["error_type"] == "OutputError"


@pytest.mark.parametrize(
    ("data_type", "expression", "rule"),
    [
        ("number", "True", "must be a finite number"),
        ("number", "float('nan')", "must be a finite number"),
        ("number", "'3'", "must be a finite number"),
        ("string", "3", "must be a string"),
        ("boolean", "1", "must be a boolean"),
        ("array", "(1, 2)", "must be a list"),
        ("json", "{1, 2}", "is not JSON-serializable"),
        ("array", "[object()]", "is not JSON-serializable"),
        ("json", "float('inf')", "is not JSON-serializable"),
    ],
)
def test_bad_json_output_fails_naming_the_output_and_rule(
    step: StepDir, data_type: str, expression: str, rule: str
) -> None:
    step.write("step.py", f"def run():\n    return {{'result': {expression}}}\n")
    outcome = step.run(outputs=[_output("result", data_type)])

    assert outcome.reason.startswith(f"output 'result' {rule}")
    assert outcome.result["error_type"] == "OutputError"


@pytest.mark.parametrize(("length", "succeeds"), [(59998, True), (59999, False)])
def test_json_output_is_limited_to_max_json_bytes(
    step: StepDir, length: int, succeeds: bool
) -> None:
    # A string of n characters serializes to n + 2 bytes, the quotes included.
    step.write("step.py", f"def run():\n    return {{'text': 'x' * {length}}}\n")
    outcome = step.run(outputs=[_output("text", "string")])

    if succeeds:
        assert outcome.outputs["text"] == _json("x" * length)
    else:
        assert outcome.reason == (
            "output 'text' is 60001 bytes as JSON, over the limit of 60000"
        )


# The step's own failures.


def test_exception_in_the_step_fails_with_its_traceback(step: StepDir) -> None:
    step.write("step.py", "def run():\n    raise ValueError('boom\\nsecond line')\n")
    outcome = step.run()

    assert outcome.reason == "ValueError: boom"
    assert outcome.result["error_type"] == "ValueError"
    assert "Traceback (most recent call last)" in outcome.stderr
    assert 'step.py", line 2, in run' in outcome.stderr
    assert "[stepforge] the step failed: ValueError: boom" in outcome.stderr


def test_long_failure_reason_is_truncated(step: StepDir) -> None:
    step.write("step.py", "def run():\n    raise RuntimeError('y' * 2000)\n")
    outcome = step.run()

    assert outcome.reason.startswith("RuntimeError: yyy")
    assert len(outcome.reason) == 500


def test_exit_called_by_the_step_is_a_failure(step: StepDir) -> None:
    step.write("step.py", "import sys\ndef run():\n    sys.exit(3)\n")
    outcome = step.run()

    assert outcome.reason == "the step called exit(3)"
    assert outcome.result["error_type"] == "SystemExit"


def test_interrupt_is_recorded_then_raised(step: StepDir) -> None:
    step.write("step.py", "def run():\n    raise KeyboardInterrupt\n")
    outcome = step.run()

    assert outcome.returncode != 0
    assert outcome.result == {
        "status": "failed",
        "reason": "the step was interrupted",
        "error_type": "KeyboardInterrupt",
    }


def test_error_reading_a_returned_file_object_fails_naming_the_output(
    step: StepDir,
) -> None:
    step.write(
        "step.py",
        """
        class Broken:
            def read(self, n=-1):
                raise OSError("disk gone")

        def run():
            return {"model": Broken()}
        """,
    )
    outcome = step.run(outputs=[_output("model", "file")])

    assert outcome.reason == "output 'model': OSError: disk gone"
    assert "Traceback" in outcome.stderr


# Loading the step's code.


def test_step_imports_modules_from_its_code_root(step: StepDir) -> None:
    step.write("helpers.py", "def double(x):\n    return 2 * x\n")
    step.write("pkg/__init__.py", "")
    step.write("pkg/tools.py", "OFFSET = 1\n")
    step.write(
        "pkg/step.py",
        """
        from helpers import double
        from .tools import OFFSET

        def run(x):
            return {"y": double(x) + OFFSET}
        """,
    )
    outcome = step.run(
        function_path="pkg/step.py",
        inputs={"x": _json(4)},
        outputs=[_output("y", "number")],
    )

    assert outcome.outputs["y"] == _json(9)


def test_classes_in_the_step_module_pickle(step: StepDir) -> None:
    step.write(
        "src/step.py",
        """
        import dataclasses, pickle

        @dataclasses.dataclass
        class Point:
            x: int

        def run():
            return {"x": pickle.loads(pickle.dumps(Point(5))).x}
        """,
    )
    outcome = step.run(function_path="src/step.py", outputs=[_output("x", "number")])

    assert outcome.outputs["x"] == _json(5)


def test_step_file_named_like_a_stdlib_module_still_loads(step: StepDir) -> None:
    step.write("json.py", "def run():\n    return {'ok': True}\n")
    outcome = step.run(function_path="json.py", outputs=[_output("ok", "boolean")])

    assert outcome.outputs["ok"] == _json(True)


def test_syntax_error_in_the_step_file_fails_with_the_reason(step: StepDir) -> None:
    step.write("step.py", "def run(:\n    pass\n")
    outcome = step.run()

    assert outcome.reason.startswith("SyntaxError: ")
    assert "step.py, line 1" in outcome.reason
    assert outcome.result["error_type"] == "SyntaxError"


def test_missing_function_fails_naming_it(step: StepDir) -> None:
    step.write("step.py", "def other():\n    pass\n")
    outcome = step.run()

    assert outcome.reason == "'step.py' defines no 'run'"


def test_function_that_is_not_callable_fails(step: StepDir) -> None:
    step.write("step.py", "run = 3\n")
    outcome = step.run()

    assert outcome.reason == "'run' in 'step.py' is a int, not a function"


# Misuse.


def test_missing_spec_file_exits_2(step: StepDir) -> None:
    completed = subprocess.run(
        [step.python, str(RUNNER), str(step.root / "absent.json")],
        cwd=step.code,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert completed.returncode == 2
    assert "[stepforge] misused: cannot read the spec file" in completed.stderr


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("function_name", None, "spec is missing the field 'function_name'"),
        ("inputs", [], "spec field 'inputs' must be an object"),
        ("max_json_bytes", True, "spec field 'max_json_bytes' must be an integer"),
        ("function_path", "/abs/step.py", "spec 'function_path' must be a path"),
        ("inputs", {"x": {"kind": "csv"}}, "spec input 'x' must be an object whose"),
        (
            "inputs",
            {"x": {"kind": "file", "path": "/no/such/file"}},
            "input 'x': cannot open /no/such/file",
        ),
    ],
)
def test_bad_spec_exits_2_with_a_failed_result_naming_the_field(
    step: StepDir, field: str, value: Any, reason: str
) -> None:
    step.write("step.py", "def run(x=None):\n    pass\n")
    spec = step.spec()
    if value is None:
        del spec[field]
    else:
        spec[field] = value
    outcome = step.run(spec)

    assert outcome.returncode == 2
    assert outcome.result["status"] == "failed"
    assert outcome.result["reason"].startswith(reason)
    assert outcome.result["error_type"] == "SpecError"


def test_unknown_protocol_exits_2(step: StepDir) -> None:
    step.write("step.py", "def run():\n    pass\n")
    outcome = step.run(protocol=runner.PROTOCOL_VERSION + 1)

    assert outcome.returncode == 2
    assert outcome.result["reason"] == "spec 'protocol' must be 1, not 2"


def test_output_name_with_a_path_separator_exits_2(step: StepDir) -> None:
    step.write("step.py", "def run():\n    pass\n")
    outcome = step.run(outputs=[_output("../escape", "file")])

    assert outcome.returncode == 2
    assert "'../escape' must be a plain file name" in outcome.result["reason"]


# The runner itself.


def test_runner_imports_only_the_standard_library() -> None:
    tree = ast.parse(RUNNER.read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0 and node.module is not None
            imported.add(node.module.split(".")[0])

    assert imported
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}
