"""The images this build service has pushed, so an identical build is skipped."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from stepforge.services.core.sqlite import Database

_SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    reference TEXT PRIMARY KEY,
    digest TEXT NOT NULL,
    pushed_at TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class PushedImage:
    reference: str
    # "sha256:..." as the registry answered the push; "" when it was not seen.
    digest: str
    pushed_at: str


class ImageRecords:
    """Every method is one transaction; safe to call from many threads."""

    def __init__(self, path: Path) -> None:
        self._db = Database(path, _SCHEMA)

    def find(self, reference: str) -> PushedImage | None:
        with self._db.reading() as db:
            row = db.execute(
                "SELECT reference, digest, pushed_at FROM images WHERE reference = ?",
                (reference,),
            ).fetchone()
        return PushedImage(*row) if row else None

    def record(self, reference: str, digest: str) -> PushedImage:
        pushed_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        with self._db.transaction() as db:
            db.execute(
                "INSERT INTO images (reference, digest, pushed_at) VALUES (?, ?, ?)"
                " ON CONFLICT (reference) DO UPDATE"
                " SET digest = excluded.digest, pushed_at = excluded.pushed_at",
                (reference, digest, pushed_at),
            )
        return PushedImage(reference, digest, pushed_at)

    def close(self) -> None:
        self._db.close()
