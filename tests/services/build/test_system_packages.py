from __future__ import annotations

import shutil

import pytest

from stepforge.services.build.system_packages import (
    DEBIAN_PACKAGE_PATTERN,
    missing_system_packages,
)

needs_dpkg = pytest.mark.skipif(
    shutil.which("dpkg-query") is None, reason="this host has no dpkg"
)
_ABSENT = "stepforge-surely-not-a-package"


@needs_dpkg
def test_installed_package_is_not_missing() -> None:
    assert missing_system_packages(["bash", "coreutils"]) == []


@needs_dpkg
def test_only_the_absent_packages_are_listed_in_order() -> None:
    names = ["zz-" + _ABSENT, "bash", _ABSENT, "bash", _ABSENT]

    assert missing_system_packages(names) == ["zz-" + _ABSENT, _ABSENT]


def test_without_dpkg_every_package_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", "")

    assert missing_system_packages(["bash", "libgl1"]) == ["bash", "libgl1"]


def test_no_names_needs_no_query(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")

    assert missing_system_packages([]) == []


@pytest.mark.parametrize("name", ["-W", "Bash", "a", "libfoo;rm", "pkg name", ""])
def test_name_that_is_not_a_debian_package_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="is not a Debian package name"):
        missing_system_packages([name])


@pytest.mark.parametrize("name", ["libgl1", "g++", "libstdc++6", "python3.11-dev"])
def test_real_package_names_match_the_pattern(name: str) -> None:
    assert DEBIAN_PACKAGE_PATTERN.match(name)
