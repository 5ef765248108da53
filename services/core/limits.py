"""Limits that the product document promises users; one place so every check agrees."""

from __future__ import annotations

# Included code of one step, in bytes: checked by the SDK on the files and by the
# build service on the archive while it streams and again on what it extracts.
MAX_CODE_BYTES = 5_000_000

# Largest archive chunk a client may send, and the size the services stream in.
CHUNK_BYTES = 1024 * 1024

# Serialized size of a non-file input or output value, default values included.
MAX_JSON_VALUE_BYTES = 60_000

# Members of an extracted code archive; a folder of that many files is not code.
MAX_ARCHIVE_MEMBERS = 20_000

# Bytes of build log kept per step; older lines are dropped from the front.
MAX_BUILD_LOG_BYTES = 256 * 1024

# The shortest wait a client may ask for when creating a step, in seconds.
MIN_CREATE_TIMEOUT_S = 120
