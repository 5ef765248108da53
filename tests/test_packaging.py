"""The distribution ships every package of the source tree."""

from __future__ import annotations

from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent


def test_every_package_folder_is_listed_for_the_wheel() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {Path(folder) for folder in config["package-dir"].values()}
    on_disk = {
        init.parent.relative_to(ROOT)
        for top in ("clients/python/stepforge", "services")
        for init in (ROOT / top).rglob("__init__.py")
    }

    assert on_disk == folders
    assert sorted(config["packages"]) == sorted(config["package-dir"])
