"""Client-side copies of the rules the SDK checks before sending a request.

The services hold the same values; a test keeps the two sets equal, so a user
learns of a broken rule before any code is packed or sent.
"""

from __future__ import annotations

import re

STEP_NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,63}")
STEP_NAME_RULE = "1 to 63 characters, each a letter, a digit, '-' or '_'"

# Bytes of included step code, counted on the files before they are packed.
MAX_CODE_BYTES = 5_000_000

# Bytes of one serialized non-file value, default values included.
MAX_JSON_VALUE_BYTES = 60_000

# Largest archive piece sent in one message.
CHUNK_BYTES = 1024 * 1024

# Shortest wait, in seconds, a caller may ask for when creating a step.
MIN_CREATE_TIMEOUT_S = 120


def is_valid_step_name(name: str) -> bool:
    """Whether `name` follows STEP_NAME_RULE."""
    # fullmatch: `$` alone would also accept a trailing newline.
    return STEP_NAME_PATTERN.fullmatch(name) is not None
