"""Which Debian packages a step needs that this host does not have."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Sequence

DEBIAN_PACKAGE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")

_INSTALLED = "install ok installed"
_QUERY_TIMEOUT_S = 30.0


def missing_system_packages(names: Sequence[str]) -> list[str]:
    """Returns the names in `names` that dpkg does not list as installed, in
    their given order; all of them when this host has no dpkg."""
    wanted = list(dict.fromkeys(names))
    for name in wanted:
        if not DEBIAN_PACKAGE_PATTERN.match(name):
            raise ValueError(
                f"system dependency {name!r} is not a Debian package name "
                f"(must match {DEBIAN_PACKAGE_PATTERN.pattern})"
            )
    if not wanted:
        return []
    dpkg_query = shutil.which("dpkg-query")
    if dpkg_query is None:
        return wanted
    result = subprocess.run(
        [dpkg_query, "-W", "-f=${Package}\t${Status}\n", "--", *wanted],
        capture_output=True,
        text=True,
        timeout=_QUERY_TIMEOUT_S,
    )
    # Exit status 1 only means that some names are unknown to dpkg.
    if result.returncode not in (0, 1):
        raise RuntimeError(
            f"dpkg-query failed with exit status {result.returncode}: "
            f"{result.stderr.strip()}"
        )
    installed: set[str] = set()
    for line in result.stdout.splitlines():
        package, _, status = line.partition("\t")
        # A multi-arch package is listed once per architecture.
        if status.strip() == _INSTALLED:
            installed.add(package.split(":")[0])
    return [name for name in wanted if name not in installed]
