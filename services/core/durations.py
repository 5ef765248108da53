"""Reading a caller's google.protobuf.Duration without trusting its range."""

from __future__ import annotations

from google.protobuf import duration_pb2


def duration_seconds(duration: duration_pb2.Duration) -> float:
    """Seconds as a float; any Duration a caller sends fits, unlike a timedelta,
    which overflows past about 2.7 million years."""
    return duration.seconds + duration.nanos / 1e9
