"""Which Git repository URLs and branch names a step may name."""

from __future__ import annotations

import re

_SCP_LIKE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:(?!//)[^\s]+$")
_SCHEMES = ("ssh://", "https://", "http://", "git://", "file://")
_BRANCH = re.compile(r"^(?!-)(?!.*\.\.)[A-Za-z0-9._/+-]{1,255}$")


def check_repository_url(url: str) -> str | None:
    """Why `url` is not a repository URL this service clones, or None."""
    if url.startswith("-") or any(ch.isspace() for ch in url):
        return "must not start with '-' nor hold spaces"
    if url.startswith(_SCHEMES) or _SCP_LIKE.match(url):
        return None
    return "must be ssh://, git@host:path, https://, git:// or file://"


def check_branch(branch: str) -> str | None:
    """Why `branch` is not a branch or tag name git accepts here, or None."""
    if _BRANCH.match(branch) and not branch.endswith((".lock", "/", ".")):
        return None
    return "must be a branch or tag name (letters, digits, '.', '_', '-', '/')"
