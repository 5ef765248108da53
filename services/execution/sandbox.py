"""Hiding the services' own files from a step's processes.

On the local backend a step runs as the services' own user. So that it cannot
read what they keep (the registry, stored archives and outputs, keys and
tokens, other steps' runs), it runs in a private mount namespace in which
every entry of the service folders is covered by an empty file system, except
the step's own run folder and its environment, which stay where they are.
This needs the permission to make a mount namespace (root, or
CAP_SYS_ADMIN); where that is missing, steps run without it and the service
says so once at start.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

logger = logging.getLogger(__name__)

# Opens the step's run folder and environment, covers every hidden root with an
# empty file system, puts the two folders back at their places through the
# shell's open descriptors (so no other path under the roots, not even one made
# later, is reachable; --no-canonicalize keeps mount from resolving them back
# to the covered paths), makes the environment read-only, and runs the step.
# Last, it drops every capability for good, so that the step, even as root,
# cannot unmount what hides the services' files or make mounts of its own.
# The paths are arguments, never parsed as shell text.
_SCRIPT = """
set -e
run=$1 environment=$2
shift 2
exec 3<"$run" 4<"$environment"
while [ "$1" != "--" ]; do
  mount -t tmpfs -o size=64k,mode=0755 stepforge-hidden "$1"
  shift
done
shift
mkdir -p "$run" "$environment"
mount --no-canonicalize --bind "/proc/$$/fd/3" "$run"
mount --no-canonicalize --bind "/proc/$$/fd/4" "$environment"
mount --no-canonicalize -o remount,bind,ro "$environment"
exec 3<&- 4<&-
exec setpriv --no-new-privs --bounding-set=-all --inh-caps=-all \\
  --securebits=+noroot,+noroot_locked,+no_setuid_fixup,+no_setuid_fixup_locked \\
  -- "$@"
"""


@lru_cache(maxsize=1)
def sandbox_available() -> bool:
    """Whether this process may run commands in a private mount namespace."""
    unshare = shutil.which("unshare")
    if unshare is None:
        logger.warning("steps can read the services' files: unshare is not installed")
        return False
    try:
        probe = subprocess.run(
            [unshare, "--mount", "--propagation", "private", "true"],
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        probe = None
    if probe is None or probe.returncode != 0:
        logger.warning(
            "steps can read the services' files: this process may not make a "
            "mount namespace (it needs root or CAP_SYS_ADMIN)"
        )
        return False
    return True


def sandboxed(
    command: Sequence[str], hidden_roots: Sequence[Path], run: Path, environment: Path
) -> list[str]:
    """`command` run where nothing under `hidden_roots` is reachable but the
    folders `run` (writable) and `environment` (read-only)."""
    return [
        "unshare", "--mount", "--propagation", "private", "--",
        "sh", "-c", _SCRIPT, "stepforge-sandbox", str(run), str(environment),
        *(str(root) for root in hidden_roots), "--", *command,
    ]  # fmt: skip
