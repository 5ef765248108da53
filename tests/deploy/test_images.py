"""The service image's Dockerfile: pinned, non-root, slim, and given a build
context that holds everything the wheel is built from.

No image is built here (that needs a container engine and the network); the
Dockerfile is read as the builder would read it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import tomllib
from deploy.layout import DEPLOY, ROOT

IMAGES = DEPLOY / "images"
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
COMPILERS = re.compile(r"\b(gcc|g\+\+|clang|build-essential|cc1|make)\b")
ARGUMENT = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")


@dataclass
class Stage:
    """One FROM of a Dockerfile and the instructions under it."""

    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def arguments(self, keyword: str) -> list[str]:
        return [rest for word, rest in self.instructions if word == keyword]


def _dockerfiles() -> list[Path]:
    return sorted(
        path
        for path in IMAGES.iterdir()
        if path.name == "Dockerfile" or path.name.endswith(".Dockerfile")
    )


@pytest.fixture(params=_dockerfiles(), ids=lambda path: path.name)
def dockerfile(request: pytest.FixtureRequest) -> Path:
    path: Path = request.param
    return path


def test_there_is_a_service_image() -> None:
    assert (IMAGES / "Dockerfile").is_file()


def test_base_images_are_pinned_by_digest(dockerfile: Path) -> None:
    stages = _stages(dockerfile)
    names = {stage.name for stage in stages}

    for stage in stages:
        if stage.base not in names:
            assert DIGEST.search(stage.base), f"{stage.base} is not pinned by digest"


def test_the_image_runs_stepforge_as_a_user_that_is_not_root(
    dockerfile: Path,
) -> None:
    final = _stages(dockerfile)[-1]
    (user,) = final.arguments("USER")[-1:]
    uid = user.split(":", 1)[0]

    assert uid.isdigit() and int(uid) != 0
    assert final.arguments("ENTRYPOINT")[-1] == '["stepforge"]'


def test_the_image_installs_the_server_and_kubernetes_extras(dockerfile: Path) -> None:
    stages = _stages(dockerfile)
    runs = " ".join(run for stage in stages for run in stage.arguments("RUN"))

    assert "[server,kubernetes]" in runs
    assert "--no-index" in stages[-1].arguments("RUN")[-1]


def test_the_runtime_stage_holds_no_compiler(dockerfile: Path) -> None:
    final = _stages(dockerfile)[-1]

    for command in final.arguments("RUN"):
        assert not COMPILERS.search(command), command
    assert not final.arguments("COPY"), "the runtime stage copies nothing in"


def test_the_build_context_holds_what_the_wheel_is_built_from(
    dockerfile: Path,
) -> None:
    ignore = dockerfile.with_name(dockerfile.name + ".dockerignore")
    lines = [
        line.strip()
        for line in ignore.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    needed = {"pyproject.toml", project["project"]["readme"]}
    needed |= set(project["tool"]["setuptools"]["package-dir"].values())
    copied = {
        source
        for stage in _stages(dockerfile)
        for copy in stage.arguments("COPY")
        if not copy.startswith("--from")
        for source in copy.split()[:-1]
    }
    included = [line[1:].rstrip("/") for line in lines if line.startswith("!")]

    assert lines[0] == "*", "the context is an allowlist"
    for path in needed | copied:
        assert any(path == item or path.startswith(item + "/") for item in included), (
            f"{path} is left out of the build context"
        )
        assert (ROOT / path).exists(), path
    for path in needed:
        assert any(path == item or path.startswith(item + "/") for item in copied), (
            f"{path} is not copied into the build stage"
        )


def _stages(path: Path) -> list[Stage]:
    """The stages of a Dockerfile, with ARG defaults substituted into FROM."""
    defaults: dict[str, str] = {}
    stages: list[Stage] = []
    for word, rest in _instructions(path.read_text()):
        if word == "ARG" and not stages:
            argument, _, value = rest.partition("=")
            defaults[argument.strip()] = value.strip()
        elif word == "FROM":
            parts = ARGUMENT.sub(lambda m: defaults[m.group(1)], rest).split()
            parts = [part for part in parts if not part.startswith("--platform")]
            alias = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(parts[0], alias))
        elif stages:
            stages[-1].instructions.append((word, rest))
    assert stages, f"{path} has no FROM"
    return stages


def _instructions(text: str) -> list[tuple[str, str]]:
    """Instructions with their continuation lines joined and comments dropped."""
    instructions = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        whole = pending + stripped
        pending = ""
        word, _, rest = whole.partition(" ")
        instructions.append((word.upper(), rest.strip()))
    return instructions
