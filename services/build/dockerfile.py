"""The Dockerfile of a step image.

Either generated from the step's settings, or the step's own Dockerfile followed
by the lines that make its image meet the step image contract: the code at
/stepforge/code (also the working directory), the stdlib-only runner.py and
pod_entry.py at /stepforge/, the interpreter at /stepforge/venv/bin/python first
on PATH, and a non-root user. A step's own Dockerfile must give an image with
`python` (3.8 or later) on PATH; the contract's venv is then optional.

Every value that reaches a Dockerfile line is checked against a strict pattern
first, so no setting of a step can add an instruction of its own.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from stepforge.services.build.builder import BuildSpec
from stepforge.services.core.container_config import DEBIAN_PACKAGE_PATTERN
from stepforge.services.core.languages import Language
from stepforge.services.kubernetes.step_image import CODE_DIR, RUN_DIR, STEP_UID, VENV

STEP_USER = "stepforge"

# The uv binary that makes the image's virtual environment (and, on a CUDA
# base, fetches its Python), pinned by digest.
UV_IMAGE = (
    "ghcr.io/astral-sh/uv:0.11.7"
    "@sha256:240fb85ab0f263ef12f492d8476aa3a2e4e1e333f7d67fbdd923d00a506a516a"
)

# CUDA runtime bases by the CUDA version of `python-cuda:3.X-Y.Z` languages.
CUDA_BASE_IMAGES: dict[str, str] = {
    "11.8": "nvidia/cuda:11.8.0-runtime-ubuntu22.04",
    "12.1": "nvidia/cuda:12.1.1-runtime-ubuntu22.04",
    "12.4": "nvidia/cuda:12.4.1-runtime-ubuntu22.04",
    "12.8": "nvidia/cuda:12.8.1-runtime-ubuntu22.04",
}

# Where the suite's own files sit inside a build context.
CONTEXT_DIR = ".stepforge"
CONTEXT_DOCKERFILE = f"{CONTEXT_DIR}/Dockerfile"
CONTEXT_SCRIPTS = ("runner.py", "pod_entry.py")
# Where a generated Dockerfile finds the code inside the context. A step's own
# Dockerfile sees the code at the context root, as `docker build .` would.
GENERATED_CODE_DIR = "code"

MAX_DOCKERFILE_BYTES = 256 * 1024

_PYTHON_VERSION = re.compile(r"^3\.\d{1,2}$")
# Letters, digits and `._-+@` in '/'-separated segments: nothing a Dockerfile
# or a shell reads as a quote, a variable, a space or an escape.
_CODE_PATH = re.compile(r"^[A-Za-z0-9_.+@-]+(/[A-Za-z0-9_.+@-]+)*$")
_ESCAPE_DIRECTIVE = re.compile(r"^#\s*escape\s*=\s*(\S)\s*$", re.IGNORECASE)
_DIRECTIVE = re.compile(r"^#\s*[A-Za-z]+\s*=")
_HEREDOC = re.compile(r"<<(-?)([\"']?)([A-Za-z_][A-Za-z0-9_]*)\2")

_UV = "/usr/local/bin/uv"
_DOCKERFILE_FIELD = "container_config.dockerfile_path"


class RecipeError(ValueError):
    """A step setting that cannot go into an image; names the field and rule."""


@dataclass(frozen=True)
class ImageRecipe:
    """What a build context holds besides the suite's scripts."""

    dockerfile: bytes
    # The folder of the context the code goes in; "" for the context root.
    code_dir: str
    # Files of the code the context holds in another version, by their path
    # relative to the code root.
    replaced: Mapping[str, bytes] = field(default_factory=dict)


def image_recipe(spec: BuildSpec, code_root: Path) -> ImageRecipe:
    """The Dockerfile for `spec`, whose code is extracted at `code_root`.

    Raises RecipeError naming the field and the rule it breaks.
    """
    if spec.dockerfile_path:
        path = check_code_path(code_root, spec.dockerfile_path, _DOCKERFILE_FIELD)
        if (code_root / CONTEXT_DIR).exists():
            raise RecipeError(
                f"the step's code holds a top-level {CONTEXT_DIR!r}; with "
                "container_config.dockerfile_path set, the image build keeps its "
                "own files under that name, so rename it"
            )
        text = _read_dockerfile(path, spec.dockerfile_path)
        return ImageRecipe(
            wrapped_dockerfile(text, spec.dockerfile_path).encode(),
            code_dir="",
            replaced=_keeping_own_files(code_root),
        )
    if spec.requirements_path:
        check_code_path(
            code_root, spec.requirements_path, "container_config.requirements_path"
        )
    text = generated_dockerfile(
        spec.language, spec.requirements_path, spec.system_dependencies
    )
    return ImageRecipe(text.encode(), code_dir=GENERATED_CODE_DIR)


def generated_dockerfile(
    language: Language,
    requirements_path: str | None,
    system_dependencies: Sequence[str],
) -> str:
    """The Dockerfile of a step without one of its own; the same arguments
    always give the same text."""
    version = language.python_version
    if not _PYTHON_VERSION.match(version):
        raise RecipeError(
            f"container_config.language {language.name!r}: Python version "
            f"{version!r} must look like 3.X"
        )
    packages = _checked_packages(system_dependencies)
    if requirements_path is not None:
        _check_path_text(requirements_path, "container_config.requirements_path")
    if language.cuda_version is None:
        base = f"python:{version}-slim"
        python = f"/usr/local/bin/python{version}"
        uv_env = "ENV UV_NO_CACHE=1 UV_PYTHON_DOWNLOADS=never"
    else:
        base = _cuda_base(language)
        # A CUDA base has no Python: uv fetches one into a folder that the
        # step's user can read, unlike root's home.
        python = version
        uv_env = "ENV UV_NO_CACHE=1 UV_PYTHON_INSTALL_DIR=/stepforge/python"
    lines = [
        "# A Stepforge step image, generated from the step's settings.",
        f"FROM {base}",
    ]
    if packages:
        lines.append(
            "RUN apt-get update \\\n"
            " && DEBIAN_FRONTEND=noninteractive apt-get install --yes "
            "--no-install-recommends " + " ".join(packages) + " \\\n"
            " && apt-get clean \\\n"
            " && rm -rf /var/lib/apt/lists/*"
        )
    lines += [
        f"RUN groupadd --gid {STEP_UID} {STEP_USER} \\\n"
        f" && useradd --uid {STEP_UID} --gid {STEP_UID} --home-dir {RUN_DIR} "
        f"--no-create-home --shell /usr/sbin/nologin {STEP_USER}",
        f"COPY --from={UV_IMAGE} /uv {_UV}",
        uv_env,
        _exec_run(_UV, "venv", "--no-project", "--python", python, VENV),
        f"COPY {GENERATED_CODE_DIR}/ {CODE_DIR}/",
        f"WORKDIR {CODE_DIR}",
    ]
    if requirements_path is not None:
        lines.append(
            _exec_run(
                _UV,
                "pip",
                "install",
                "--python",
                f"{VENV}/bin/python",
                "--requirement",
                requirements_path,
            )
        )
    lines += _contract_lines(copy_code=False)
    return "\n".join(lines) + "\n"


def wrapped_dockerfile(text: str, dockerfile_path: str) -> str:
    """The step's own Dockerfile `text` with the contract's lines after it.

    Raises RecipeError when its last instruction would swallow those lines.
    """
    _check_user_dockerfile(text, dockerfile_path)
    tail = ["# Added by Stepforge: the step image contract."]
    tail += _contract_lines(copy_code=True)
    return text.rstrip("\n") + "\n\n" + "\n".join(tail) + "\n"


def check_code_path(code_root: Path, value: str, field: str) -> Path:
    """The file `value` names inside the code at `code_root`.

    Raises RecipeError when it is not a plain relative path to a file there.
    """
    _check_path_text(value, field)
    root = code_root.resolve()
    path = (code_root / value).resolve()
    if not path.is_relative_to(root):
        raise RecipeError(f"{field} {value!r} leads outside the step's code")
    if not path.is_file():
        raise RecipeError(f"{field} {value!r} is not a file in the step's code")
    return path


def _check_path_text(value: str, field: str) -> None:
    if not _CODE_PATH.match(value) or value.startswith("-"):
        raise RecipeError(
            f"{field} {value!r} must be a relative path of letters, digits and "
            "'._-+@' separated by '/', not starting with '-' (no spaces, quotes "
            "or '$')"
        )
    if ".." in value.split("/"):
        raise RecipeError(f"{field} {value!r} must stay inside the code (no '..')")


def _keeping_own_files(code_root: Path) -> dict[str, bytes]:
    """The step's .dockerignore with exceptions for the suite's folder, so a
    pattern such as `.*` cannot hide runner.py from the build."""
    ignore = code_root / ".dockerignore"
    if not ignore.is_file() or ignore.is_symlink():
        return {}
    text = ignore.read_bytes().rstrip(b"\n")
    return {
        ".dockerignore": text
        + f"\n# Added by Stepforge: the image build's own files.\n"
        f"!{CONTEXT_DIR}\n!{CONTEXT_DIR}/**\n".encode()
    }


def _contract_lines(*, copy_code: bool) -> list[str]:
    scripts = " ".join(f"{CONTEXT_DIR}/{name}" for name in CONTEXT_SCRIPTS)
    lines = [f"COPY {scripts} /stepforge/"]
    if copy_code:
        lines += [f"COPY . {CODE_DIR}/", f"WORKDIR {CODE_DIR}"]
    # The venv's bin comes first when there is one; a step's own image
    # provides `python` on its PATH otherwise.
    lines += [f"ENV PATH={VENV}/bin:$PATH", f"USER {STEP_UID}:{STEP_UID}"]
    return lines


def _checked_packages(names: Sequence[str]) -> list[str]:
    for index, name in enumerate(names):
        if not DEBIAN_PACKAGE_PATTERN.match(name):
            raise RecipeError(
                f"container_config.system_dependencies[{index}] {name!r} is not a "
                "Debian package name (lower-case letters, digits, '+', '-', '.', "
                "starting with a letter or digit)"
            )
    # The set decides what gets installed; sorted, equal sets share an image.
    return sorted(set(names))


def _cuda_base(language: Language) -> str:
    base = CUDA_BASE_IMAGES.get(language.cuda_version or "")
    if base is None:
        known = ", ".join(sorted(CUDA_BASE_IMAGES))
        raise RecipeError(
            f"container_config.language {language.name!r}: no CUDA base image for "
            f"CUDA {language.cuda_version}; known: {known}"
        )
    return base


def _exec_run(*argv: str) -> str:
    # The exec form hands the arguments to the program as they are: no shell
    # reads them, and JSON escapes whatever the Dockerfile parser would.
    return "RUN " + json.dumps(list(argv))


def _read_dockerfile(path: Path, shown: str) -> str:
    size = path.stat().st_size
    if size > MAX_DOCKERFILE_BYTES:
        raise RecipeError(
            f"{_DOCKERFILE_FIELD} {shown!r} is {size} bytes; a Dockerfile may "
            f"hold at most {MAX_DOCKERFILE_BYTES}"
        )
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecipeError(
            f"{_DOCKERFILE_FIELD} {shown!r} is not UTF-8 text: {exc}"
        ) from exc
    if "\x00" in text:
        raise RecipeError(f"{_DOCKERFILE_FIELD} {shown!r} holds a NUL byte")
    return text.replace("\r\n", "\n")


def _check_user_dockerfile(text: str, shown: str) -> None:
    lines = text.split("\n")
    escape = _escape_character(lines)
    instructions = _instruction_words(lines, escape, shown)
    if "FROM" not in instructions:
        raise RecipeError(f"{_DOCKERFILE_FIELD} {shown!r} has no FROM instruction")


def _escape_character(lines: list[str]) -> str:
    # Parser directives come first, before any blank line, comment or instruction.
    for line in lines:
        match = _ESCAPE_DIRECTIVE.match(line.strip())
        if match:
            return match.group(1)
        if not _DIRECTIVE.match(line.strip()):
            break
    return "\\"


def _instruction_words(lines: list[str], escape: str, shown: str) -> list[str]:
    """The first word of each instruction; raises RecipeError when the text
    ends inside one (a line continuation or an open here-document)."""
    words: list[str] = []
    continued = False
    heredoc_ends: list[tuple[str, bool]] = []
    for line in lines:
        if heredoc_ends:
            end, strip_tabs = heredoc_ends[0]
            if (line.lstrip("\t") if strip_tabs else line) == end:
                heredoc_ends.pop(0)
            continue
        stripped = line.strip()
        # Blank and comment lines never end an instruction, even a continued one.
        if not stripped or stripped.startswith("#"):
            continue
        if not continued:
            words.append(stripped.split()[0].upper())
        continued = stripped.endswith(escape)
        if not continued:
            heredoc_ends = [
                (match.group(3), match.group(1) == "-")
                for match in _HEREDOC.finditer(line)
            ]
    if continued:
        raise RecipeError(
            f"{_DOCKERFILE_FIELD} {shown!r} ends with a line continuation "
            f"({escape!r}); its last instruction must be complete"
        )
    if heredoc_ends:
        raise RecipeError(
            f"{_DOCKERFILE_FIELD} {shown!r} ends inside a here-document: "
            f"{heredoc_ends[0][0]!r} never closes it"
        )
    return words
