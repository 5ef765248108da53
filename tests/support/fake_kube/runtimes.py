"""How a container image runs as a local process: the runtimes tests register."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

# A leading `--flag=` whose value may be a path, as in `--digest-file=/dev/x`.
_FLAG_PREFIX = re.compile(r"^(--[A-Za-z0-9][A-Za-z0-9_.-]*=)(.*)$", re.DOTALL)


class ImageNotFound(Exception):
    """The runtime cannot run this image; the pod waits with ErrImagePull."""


@dataclass(frozen=True)
class LocalCommand:
    """One container as a local process."""

    argv: list[str]
    # The complete environment of the process: nothing is inherited.
    env: dict[str, str]
    cwd: Path


class ImageRuntime(Protocol):
    """Turns a container of some image into a local command."""

    def command(
        self,
        image: str,
        container: Mapping[str, Any],
        mounts: Mapping[str, Path],
        scratch: Path,
    ) -> LocalCommand:
        """How to run `container` (the pod spec's container dict, camelCase keys,
        env already resolved into container["env"] as name/value pairs) as a
        local process. `mounts` maps each volumeMount mountPath to the host
        folder backing it; `scratch` is a private host folder for this
        container. Raise ImageNotFound to make the pod fail to start."""
        ...


def rewrite_paths(value: str, mapping: Mapping[str, Path]) -> str:
    """Replaces a container path prefix (longest first) at the start of `value`,
    or after a leading `--flag=`, with its host folder."""
    flag = ""
    match = _FLAG_PREFIX.match(value)
    rest = value
    if match:
        flag, rest = match.group(1), match.group(2)
    for prefix in sorted(mapping, key=len, reverse=True):
        base = prefix.rstrip("/")
        if base == "":
            if rest.startswith("/"):
                return flag + str(mapping[prefix]).rstrip("/") + rest
            continue
        if rest == base or rest.startswith(base + "/"):
            return flag + str(mapping[prefix]) + rest[len(base) :]
    return value


class HostRuntime:
    """Runs the container's command and args as they are on the host, with the
    paths under its mounts rewritten: for curl- or sh-like utility images."""

    def __init__(self, base_env: Mapping[str, str] | None = None) -> None:
        # The container sees only its own env plus PATH, as an image would
        # bring its own; the host's PATH finds the host's tools.
        if base_env is None:
            base_env = {"PATH": os.environ.get("PATH", os.defpath)}
        self._base_env = dict(base_env)

    def command(
        self,
        image: str,
        container: Mapping[str, Any],
        mounts: Mapping[str, Path],
        scratch: Path,
    ) -> LocalCommand:
        argv = [*container.get("command", []), *container.get("args", [])]
        if not argv:
            raise ValueError(
                f"container {container.get('name')!r}: the host runtime has no "
                "image entrypoint, so the container must set command"
            )
        env = dict(self._base_env)
        for item in container.get("env", []):
            env[item["name"]] = rewrite_paths(item["value"], mounts)
        working_dir = container.get("workingDir")
        cwd = Path(rewrite_paths(working_dir, mounts)) if working_dir else scratch
        return LocalCommand(
            argv=[rewrite_paths(arg, mounts) for arg in argv], env=env, cwd=cwd
        )
