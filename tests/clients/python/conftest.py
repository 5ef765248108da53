"""Fixtures shared by the SDK's tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Callable

import pytest


@pytest.fixture
def set_umask() -> Iterator[Callable[[int], None]]:
    """Sets the process umask for one test; the one before comes back after."""
    original = os.umask(0o077)
    os.umask(original)

    def set_to(mask: int) -> None:
        os.umask(mask)

    yield set_to
    os.umask(original)
