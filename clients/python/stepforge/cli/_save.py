"""Writing a FILE output of an execution to a local file."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import IO

from stepforge._files import write_atomically
from stepforge._rules import CHUNK_BYTES
from stepforge.cli._progress import Progress


def save_output_file(
    source: IO[bytes], target: Path, output_name: str, total: int | None
) -> int:
    """Writes `source` to `target`, whole or not at all, with a progress bar
    on a terminal; returns the bytes written and closes `source`."""
    with source, Progress(f"downloading {output_name}", total) as progress:
        write_atomically(
            progress.track(iter(partial(source.read, CHUNK_BYTES), b"")), target
        )
        return progress.done
