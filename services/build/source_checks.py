"""Static checks of a step's entry function, read with `ast` and never imported."""

from __future__ import annotations

import ast
from collections.abc import Sequence
from pathlib import Path, PurePosixPath


def check_entry_function(
    code_root: Path,
    function_path: str,
    function_name: str,
    input_names: Sequence[str],
) -> list[str]:
    """Lists what stops `function_name` in `function_path` from being called
    with the declared inputs as keyword arguments; empty when nothing does."""
    problem = _path_problem(code_root, function_path)
    if problem:
        return [problem]
    source = (code_root / function_path).read_bytes()
    try:
        module = ast.parse(source, filename=function_path)
    except SyntaxError as exc:
        return [f"{function_path} line {exc.lineno}: syntax error: {exc.msg}"]
    except ValueError as exc:
        return [f"{function_path} cannot be parsed: {exc}"]
    where = f"function {function_name!r} in {function_path}"
    binding = _last_top_level_binding(module, function_name)
    if binding is None:
        return [
            f"{function_path} has no top-level 'def {function_name}'; the entry "
            "function must be defined by a plain def at module level"
        ]
    if not isinstance(binding, ast.FunctionDef):
        return [f"{where}: {_describe_binding(binding)}"]
    return _signature_problems(binding.args, where, input_names)


def _path_problem(code_root: Path, function_path: str) -> str | None:
    if not function_path:
        return "function_path must not be empty"
    pure = PurePosixPath(function_path)
    if pure.is_absolute():
        return f"function_path {function_path!r} must be relative to the code root"
    if ".." in pure.parts:
        return f"function_path {function_path!r} must not contain '..'"
    if pure.suffix != ".py":
        return f"function_path {function_path!r} must name a .py file"
    root = code_root.resolve()
    path = (code_root / function_path).resolve()
    if not path.is_relative_to(root):
        return f"function_path {function_path!r} leads outside the step's code"
    if not path.is_file():
        return f"function_path {function_path!r} is not a file in the step's code"
    return None


def _last_top_level_binding(module: ast.Module, name: str) -> ast.stmt | None:
    """The last plain module-level statement that binds `name`: the one that
    decides what the name is once the module has run."""
    found: ast.stmt | None = None
    for statement in module.body:
        if name in _bound_names(statement):
            found = statement
    return found


def _bound_names(statement: ast.stmt) -> set[str]:
    if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {statement.name}
    if isinstance(statement, (ast.Import, ast.ImportFrom)):
        return {(alias.asname or alias.name).split(".")[0] for alias in statement.names}
    targets: list[ast.expr] = []
    if isinstance(statement, ast.Assign):
        targets = list(statement.targets)
    elif isinstance(statement, (ast.AnnAssign, ast.AugAssign)):
        targets = [statement.target]
    return {
        node.id
        for target in targets
        for node in ast.walk(target)
        if isinstance(node, ast.Name)
    }


def _describe_binding(binding: ast.stmt) -> str:
    line = binding.lineno
    if isinstance(binding, ast.AsyncFunctionDef):
        return f"is an async def (line {line}); the entry function must be a plain def"
    if isinstance(binding, ast.ClassDef):
        return f"is a class (line {line}), not a function"
    if isinstance(binding, (ast.Import, ast.ImportFrom)):
        return (
            f"is imported (line {line}); the entry function must be defined "
            "with def in this file"
        )
    return f"is assigned (line {line}), not defined with def"


def _signature_problems(
    args: ast.arguments, where: str, input_names: Sequence[str]
) -> list[str]:
    positional_only = [arg.arg for arg in args.posonlyargs]
    by_keyword = [arg.arg for arg in args.args + args.kwonlyargs]
    declared = list(dict.fromkeys(input_names))
    problems: list[str] = []
    for name in declared:
        if name in positional_only:
            problems.append(
                f"{where}: parameter {name!r} is positional-only, but inputs are "
                "passed by keyword"
            )
        elif name not in by_keyword and args.kwarg is None:
            problems.append(f"{where}: has no parameter for declared input {name!r}")
    for name in _required_parameters(args):
        if name not in declared:
            problems.append(
                f"{where}: parameter {name!r} has no default and is not a declared "
                "input, so the step could never be called"
            )
    return problems


def _required_parameters(args: ast.arguments) -> list[str]:
    positional = args.posonlyargs + args.args
    # Defaults belong to the last positional parameters.
    required_count = len(positional) - len(args.defaults)
    required = [arg.arg for arg in positional[:required_count]]
    required += [
        arg.arg
        for arg, default in zip(args.kwonlyargs, args.kw_defaults)
        if default is None
    ]
    return required
