from __future__ import annotations

import gzip
import hashlib
import tarfile
from pathlib import Path

from support.build_specs import build_spec, code_folder

from stepforge.services.build.build_context import write_build_context
from stepforge.services.build.dockerfile import CONTEXT_DOCKERFILE, image_recipe

SCRIPTS = {"runner.py": b"# runner\n", "pod_entry.py": b"# pod entry\n"}


def test_the_build_context_is_the_same_bytes_for_the_same_content(
    tmp_path: Path,
) -> None:
    code = code_folder(
        tmp_path, {"main.py": "x = 1\n", "pkg/util.py": "", "run.sh": ""}
    )
    (code / "run.sh").chmod(0o755)
    (code / "link.py").symlink_to("main.py")
    recipe = image_recipe(build_spec(code), code)

    first = write_build_context(recipe, code, SCRIPTS, tmp_path / "first.tar.gz")
    again = write_build_context(recipe, code, SCRIPTS, tmp_path / "again.tar.gz")
    (code / "main.py").write_text("x = 2\n")
    changed = write_build_context(recipe, code, SCRIPTS, tmp_path / "changed.tar.gz")

    assert first.path.read_bytes() == again.path.read_bytes()
    assert first.content_sha256 == again.content_sha256
    assert changed.content_sha256 != first.content_sha256
    with tarfile.open(first.path) as tar:
        members = {member.name: member for member in tar.getmembers()}
        dockerfile = tar.extractfile(CONTEXT_DOCKERFILE)
        assert dockerfile is not None and dockerfile.read() == recipe.dockerfile
    assert set(members) == {
        ".stepforge",
        CONTEXT_DOCKERFILE,
        ".stepforge/pod_entry.py",
        ".stepforge/runner.py",
        "code",
        "code/main.py",
        "code/link.py",
        "code/pkg",
        "code/pkg/util.py",
        "code/run.sh",
    }
    assert members["code/run.sh"].mode == 0o755
    assert members["code/main.py"].mode == 0o644
    assert members["code/link.py"].linkname == "main.py"


def test_the_content_hash_covers_the_dockerfile_and_the_scripts(
    tmp_path: Path,
) -> None:
    code = code_folder(tmp_path, {"main.py": ""})
    recipe = image_recipe(build_spec(code), code)
    other_recipe = image_recipe(build_spec(code, system_dependencies=("git",)), code)
    other_scripts = dict(SCRIPTS, **{"runner.py": b"# runner 2\n"})

    hashes = {
        write_build_context(r, code, s, tmp_path / f"{i}.tar.gz").content_sha256
        for i, (r, s) in enumerate(
            [(recipe, SCRIPTS), (other_recipe, SCRIPTS), (recipe, other_scripts)]
        )
    }

    assert len(hashes) == 3


def test_the_content_hash_is_the_hash_of_the_uncompressed_context(
    tmp_path: Path,
) -> None:
    code = code_folder(tmp_path, {"main.py": ""})
    context = write_build_context(
        image_recipe(build_spec(code), code), code, SCRIPTS, tmp_path / "c.tar.gz"
    )
    uncompressed = gzip.decompress(context.path.read_bytes())

    assert (
        context.content_sha256
        == hashlib.sha256(b"stepforge-image-context-v1\n" + uncompressed).hexdigest()
    )


def test_a_steps_dockerignore_cannot_hide_the_suites_files(tmp_path: Path) -> None:
    code = code_folder(
        tmp_path,
        {
            "main.py": "",
            "Dockerfile": "FROM python:3.12-slim\n",
            ".dockerignore": ".*\n*.md\n",
        },
    )
    recipe = image_recipe(build_spec(code, dockerfile_path="Dockerfile"), code)

    context = write_build_context(recipe, code, SCRIPTS, tmp_path / "c.tar.gz")

    with tarfile.open(context.path) as tar:
        ignore = tar.extractfile(".dockerignore")
        assert ignore is not None
        lines = ignore.read().decode().splitlines()
        names = tar.getnames()
    assert lines[:2] == [".*", "*.md"]
    assert lines[-2:] == ["!.stepforge", "!.stepforge/**"]
    # A step's own Dockerfile sees its code at the context root.
    assert {"main.py", "Dockerfile", ".stepforge/runner.py"} <= set(names)
    assert (code / ".dockerignore").read_text() == ".*\n*.md\n"
