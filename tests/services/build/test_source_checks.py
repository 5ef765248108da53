from __future__ import annotations

from pathlib import Path

import pytest

from stepforge.services.build.source_checks import check_entry_function


def _code(tmp_path: Path, source: str, name: str = "step.py") -> Path:
    root = tmp_path / "code"
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)
    return root


def test_function_taking_every_input_passes(tmp_path: Path) -> None:
    root = _code(
        tmp_path,
        "import os\n\n"
        "def train(data, *, epochs, rate=0.1, seed=None):\n"
        "    return data\n",
    )

    assert check_entry_function(root, "step.py", "train", ["data", "epochs"]) == []


def test_function_in_a_subfolder_is_found(tmp_path: Path) -> None:
    root = _code(tmp_path, "def run(x):\n    return x\n", name="pkg/steps/run.py")

    assert check_entry_function(root, "pkg/steps/run.py", "run", ["x"]) == []


def test_kwargs_accepts_any_declared_input(tmp_path: Path) -> None:
    root = _code(tmp_path, "def run(a, **rest):\n    return rest\n")

    assert check_entry_function(root, "step.py", "run", ["a", "b", "c"]) == []


@pytest.mark.parametrize(
    ("function_path", "problem"),
    [
        ("", "function_path must not be empty"),
        ("/etc/step.py", "must be relative"),
        ("../step.py", "must not contain '..'"),
        ("step.txt", "must name a .py file"),
        ("missing.py", "'missing.py' is not a file"),
        ("folder.py", "'folder.py' is not a file"),
    ],
)
def test_bad_function_path_is_reported(
    tmp_path: Path, function_path: str, problem: str
) -> None:
    root = _code(tmp_path, "def run():\n    pass\n")
    (root / "step.txt").write_text("def run(): pass\n")
    (root / "folder.py").mkdir()

    problems = check_entry_function(root, function_path, "run", [])

    assert len(problems) == 1
    assert problem in problems[0]


def test_function_path_through_a_link_out_of_the_code_is_reported(
    tmp_path: Path,
) -> None:
    root = _code(tmp_path, "def run():\n    pass\n")
    outside = tmp_path / "outside.py"
    outside.write_text("def run():\n    pass\n")
    (root / "linked.py").symlink_to(outside)

    problems = check_entry_function(root, "linked.py", "run", [])

    assert problems == ["function_path 'linked.py' leads outside the step's code"]


def test_syntax_error_names_the_line(tmp_path: Path) -> None:
    root = _code(tmp_path, "import os\n\ndef run(:\n    pass\n")

    problems = check_entry_function(root, "step.py", "run", [])

    assert len(problems) == 1
    assert problems[0].startswith("step.py line 3: syntax error")


def test_user_code_is_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    root = _code(
        tmp_path,
        f"open({str(marker)!r}, 'w').close()\n\ndef run():\n    pass\n",
    )

    assert check_entry_function(root, "step.py", "run", []) == []
    assert not marker.exists()


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("def other():\n    pass\n", "has no top-level 'def run'"),
        (
            "class Holder:\n    def run(self):\n        pass\n",
            "has no top-level 'def run'",
        ),
        (
            "if True:\n    def run():\n        pass\n",
            "has no top-level 'def run'",
        ),
        ("async def run():\n    pass\n", "is an async def (line 1)"),
        ("class run:\n    pass\n", "is a class (line 1)"),
        ("run = print\n", "is assigned (line 1)"),
        ("def run():\n    pass\n\nrun = None\n", "is assigned (line 4)"),
        ("from os import getcwd as run\n", "is imported (line 1)"),
    ],
    ids=[
        "absent",
        "method",
        "nested-in-if",
        "async",
        "class",
        "assigned",
        "rebound",
        "imported",
    ],
)
def test_entry_that_is_not_a_plain_top_level_def_is_reported(
    tmp_path: Path, source: str, problem: str
) -> None:
    root = _code(tmp_path, source)

    problems = check_entry_function(root, "step.py", "run", [])

    assert len(problems) == 1
    assert problem in problems[0]
    assert "step.py" in problems[0]


def test_positional_only_input_is_reported(tmp_path: Path) -> None:
    root = _code(tmp_path, "def run(data, /, rate=1):\n    pass\n")

    problems = check_entry_function(root, "step.py", "run", ["data"])

    assert problems == [
        "function 'run' in step.py: parameter 'data' is positional-only, "
        "but inputs are passed by keyword"
    ]


def test_declared_input_without_parameter_is_reported(tmp_path: Path) -> None:
    root = _code(tmp_path, "def run(data, *args):\n    pass\n")

    problems = check_entry_function(root, "step.py", "run", ["data", "args", "lr"])

    assert problems == [
        "function 'run' in step.py: has no parameter for declared input 'args'",
        "function 'run' in step.py: has no parameter for declared input 'lr'",
    ]


def test_required_parameter_that_is_not_an_input_is_reported(
    tmp_path: Path,
) -> None:
    root = _code(
        tmp_path,
        "def run(data, model, opt=1, *args, key, flag=False, **kwargs):\n    pass\n",
    )

    problems = check_entry_function(root, "step.py", "run", ["data"])

    assert problems == [
        "function 'run' in step.py: parameter 'model' has no default and is not "
        "a declared input, so the step could never be called",
        "function 'run' in step.py: parameter 'key' has no default and is not "
        "a declared input, so the step could never be called",
    ]


def test_required_positional_only_parameter_is_reported(tmp_path: Path) -> None:
    root = _code(tmp_path, "def run(handle, /, data):\n    pass\n")

    problems = check_entry_function(root, "step.py", "run", ["data"])

    assert len(problems) == 1
    assert "parameter 'handle' has no default" in problems[0]
