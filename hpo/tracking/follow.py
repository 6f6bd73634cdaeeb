"""A thread that calls a function every few seconds until stopped: the mirror following the
storage while a study runs, so that no round waits for MLflow."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

__all__ = ["Follower"]


class Follower:
    """Calls ``fn()`` every ``interval`` seconds in a daemon thread until :meth:`stop`."""

    def __init__(self, fn: Callable[[], Any], interval: float = 1.0, name: str = "hpo-mirror"):
        self._stop = threading.Event()

        def loop() -> None:
            while not self._stop.wait(interval):
                fn()

        self._thread = threading.Thread(target=loop, name=name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop, after the call in progress if any."""
        self._stop.set()
        self._thread.join()
