"""Housekeeping that runs in the background, now and then, until the server stops."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

logger = logging.getLogger(__name__)


class Periodic:
    """Runs `action` at once and then every `interval_s` in a daemon thread
    named `name`, from `start()` until `stop()`. A failing round is logged and
    the next one comes as planned."""

    def __init__(
        self, name: str, action: Callable[[], object], interval_s: float
    ) -> None:
        self._name = name
        self._action = action
        self._interval_s = interval_s
        self._stopped = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._loop, name=self._name, daemon=True).start()

    def stop(self) -> None:
        self._stopped.set()

    def _loop(self) -> None:
        while True:
            try:
                self._action()
            except Exception:
                logger.exception("%s failed; retrying later", self._name)
            if self._stopped.wait(self._interval_s):
                return
