"""One clock for services, schedulers and caches, so tests can set the time instead of waiting for it.

Production uses `SystemClock`. Tests hand a `ManualClock` to the `Context` and move it with `advance`; nothing
that reads this clock then depends on when a test runs or how long the suite took.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from typing import Protocol

from models.base import utcnow


class Clock(Protocol):
    def now(self) -> datetime:
        """The wall-clock time, timezone-aware in UTC: for what is stored or shown."""
        ...

    def monotonic(self) -> float:
        """Seconds that only go forward: for ages, leases and caches."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return utcnow()

    def monotonic(self) -> float:
        return time.monotonic()


class ManualClock:
    """A clock that stands still until `advance` moves it (both readings together)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or utcnow()
        self._monotonic = 1_000.0
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def monotonic(self) -> float:
        with self._lock:
            return self._monotonic

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += timedelta(seconds=seconds)
            self._monotonic += seconds
