"""Checking a project's known SSH host keys, in OpenSSH known_hosts format."""

from __future__ import annotations

import base64
import binascii

from stepforge.services.core.errors import FieldViolation

MAX_KNOWN_HOSTS_BYTES = 64 * 1024
_KEY_TYPES = frozenset(
    {
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    }
)
_MARKERS = frozenset({"@cert-authority", "@revoked"})


def check_known_hosts(text: str, field: str) -> list[FieldViolation]:
    """Every line that is not `[marker] hosts key-type base64-key [comment]`."""
    if len(text.encode()) > MAX_KNOWN_HOSTS_BYTES:
        return [FieldViolation(field, f"must be at most {MAX_KNOWN_HOSTS_BYTES} bytes")]
    violations = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if fields[0] in _MARKERS:
            fields = fields[1:]
        problem = _line_problem(fields)
        if problem:
            violations.append(FieldViolation(f"{field}[line {number}]", problem))
    return violations


def _line_problem(fields: list[str]) -> str | None:
    if len(fields) < 3:
        return "must read: hosts key-type base64-key (as ssh-keyscan prints it)"
    if fields[1] not in _KEY_TYPES:
        return f"{fields[1]!r} is not an SSH host key type"
    try:
        base64.b64decode(fields[2], validate=True)
    except (binascii.Error, ValueError):
        return "the key is not valid base64"
    return None
