"""Which runtime runs which image: registered by image reference prefix."""

from __future__ import annotations

import threading

from .runtimes import ImageRuntime


class ImageRegistry:
    """Runtimes by image prefix; the longest matching prefix wins."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runtimes: dict[str, ImageRuntime] = {}

    def register(self, prefix: str, runtime: ImageRuntime) -> None:
        """Runs images whose reference starts with `prefix` with `runtime`."""
        if not prefix:
            raise ValueError("register_image: prefix must not be empty")
        with self._lock:
            self._runtimes[prefix] = runtime

    def runtime_for(self, image: str) -> ImageRuntime | None:
        """The runtime of the longest registered prefix of `image`, if any."""
        with self._lock:
            matches = [prefix for prefix in self._runtimes if image.startswith(prefix)]
            if not matches:
                return None
            return self._runtimes[max(matches, key=len)]
