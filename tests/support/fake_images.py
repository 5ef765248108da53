"""Step images for the fake cluster: a fake Kaniko that builds them into a local
folder, and a runtime that runs containers of the images it built.

    registry = FakeImageRegistry(tmp_path / "registry")
    cluster.register_image("gcr.io/kaniko-project/executor", FakeKaniko(registry))
    cluster.register_image(settings.image_repository, FakeStepImages(registry))
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support.fake_kaniko import IMAGE_CONFIG, IMAGE_FILES, image_folder
from support.fake_kube import ImageNotFound, LocalCommand, rewrite_paths

_FAKE_KANIKO = Path(__file__).with_name("fake_kaniko.py")
_PYTHON_NAMES = ("python", "python3")


@dataclass(frozen=True)
class FakeImage:
    """A pushed image: its files and its config."""

    reference: str
    folder: Path
    config: Mapping[str, Any]

    @property
    def files(self) -> Path:
        return self.folder / IMAGE_FILES

    @property
    def digest(self) -> str:
        return str(self.config["digest"])

    def path_map(self) -> dict[str, Path]:
        """Container path -> host path of each folder the image holds."""
        return {root: self.files / root.lstrip("/") for root in self.config["roots"]}


class FakeImageRegistry:
    """Images as folders under `root`, keyed by their reference."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def find(self, reference: str) -> FakeImage | None:
        """The complete image `reference`, or None."""
        folder = image_folder(self.root, reference)
        config = folder / IMAGE_CONFIG
        if not config.is_file():
            return None
        return FakeImage(reference, folder, json.loads(config.read_text()))

    def references(self) -> list[str]:
        """Every image pushed so far."""
        configs = sorted((self.root / "images").glob(f"*/{IMAGE_CONFIG}"))
        return [json.loads(path.read_text())["reference"] for path in configs]


class FakeKaniko:
    """The Kaniko executor image: runs tests/support/fake_kaniko.py with the
    container's flags, its paths mapped to the host."""

    def __init__(self, registry: FakeImageRegistry) -> None:
        self._registry = registry

    def command(
        self,
        image: str,
        container: Mapping[str, Any],
        mounts: Mapping[str, Path],
        scratch: Path,
    ) -> LocalCommand:
        flags = []
        for arg in container.get("args", []):
            if arg.startswith("--context=tar://"):
                path = rewrite_paths(arg.removeprefix("--context=tar://"), mounts)
                flags.append(f"--context=tar://{path}")
            else:
                flags.append(rewrite_paths(arg, mounts))
        return LocalCommand(
            argv=[
                sys.executable,
                str(_FAKE_KANIKO),
                *flags,
                f"--fake-registry={self._registry.root}",
                f"--fake-work={scratch}",
            ],
            env={
                "PATH": os.environ.get("PATH", os.defpath),
                "HOME": str(scratch),
                "LANG": "C.UTF-8",
            },
            cwd=scratch,
        )


class FakeStepImages:
    """Runs containers of the images the fake Kaniko pushed: the container's
    command with the image's paths (`/stepforge/...`) and its mounts mapped to
    host folders, `python` being the image's own, with the image's env under
    the container's."""

    def __init__(self, registry: FakeImageRegistry) -> None:
        self._registry = registry

    def command(
        self,
        image: str,
        container: Mapping[str, Any],
        mounts: Mapping[str, Path],
        scratch: Path,
    ) -> LocalCommand:
        found = self._registry.find(image)
        if found is None:
            raise ImageNotFound(f"manifest unknown: {image} was never pushed")
        # The mounts come last so that they win over the image's own folders.
        paths: dict[str, Path] = {**found.path_map(), **mounts}
        argv = [*container.get("command", []), *container.get("args", [])]
        if not argv:
            raise ValueError(
                f"container {container.get('name')!r}: step images have no "
                "entrypoint, so the container must set command"
            )
        env = _environment(found, container, paths, scratch)
        program = _program(argv[0], found, env, paths)
        argv = [program, *(rewrite_paths(arg, paths) for arg in argv[1:])]
        working_dir = container.get("workingDir") or found.config.get("workdir") or "/"
        return LocalCommand(
            argv=argv, env=env, cwd=Path(rewrite_paths(working_dir, paths))
        )


def _environment(
    image: FakeImage,
    container: Mapping[str, Any],
    paths: Mapping[str, Path],
    scratch: Path,
) -> dict[str, str]:
    env = {"HOME": str(scratch)}
    for name, value in image.config.get("env", {}).items():
        env[name] = (
            _rewrite_list(value, paths)
            if name == "PATH"
            else rewrite_paths(value, paths)
        )
    for item in container.get("env", []):
        env[item["name"]] = rewrite_paths(item["value"], paths)
    return env


def _rewrite_list(value: str, paths: Mapping[str, Path]) -> str:
    return os.pathsep.join(rewrite_paths(entry, paths) for entry in value.split(":"))


def _program(
    name: str, image: FakeImage, env: Mapping[str, str], paths: Mapping[str, Path]
) -> str:
    """The host program a container's `name` runs: `python` is the image's
    venv interpreter (or its base's); other bare names are found on its PATH."""
    if name in _PYTHON_NAMES and image.config.get("venv_python"):
        return str(image.config["venv_python"])
    if "/" in name:
        return rewrite_paths(name, paths)
    found = shutil.which(name, path=env.get("PATH", os.defpath))
    return found or name
