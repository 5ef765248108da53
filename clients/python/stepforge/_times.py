"""Protobuf timestamps as the text the SDK returns to its callers."""

from __future__ import annotations

from datetime import timezone

from google.protobuf import timestamp_pb2


def iso_time(timestamp: timestamp_pb2.Timestamp) -> str:
    """The timestamp as ISO 8601 in UTC, with its offset."""
    return timestamp.ToDatetime(tzinfo=timezone.utc).isoformat()
