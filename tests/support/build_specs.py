"""Build specs and code folders for tests of the builders' pure parts."""

from __future__ import annotations

from pathlib import Path

from stepforge.services.build.builder import BuildSpec
from stepforge.services.core.languages import Language, find_language


def language(name: str) -> Language:
    found = find_language(name)
    assert found is not None, name
    return found


def build_spec(code: Path, **overrides: object) -> BuildSpec:
    """A spec of `main.py:main` in `code` on python:3.11-slim, with overrides."""
    fields: dict[str, object] = {
        "step_name": "demo",
        "archive_path": code / "unused.tar.gz",
        "archive_sha256": "0" * 64,
        "function_path": "main.py",
        "function_name": "main",
        "input_names": (),
        "language": language("python:3.11-slim"),
    }
    fields.update(overrides)
    return BuildSpec(**fields)  # type: ignore[arg-type]


def code_folder(tmp_path: Path, files: dict[str, str]) -> Path:
    """`tmp_path/code` holding `files` (relative path -> text)."""
    root = tmp_path / "code"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root
