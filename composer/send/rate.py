"""Pacing: at most so many messages per second and per hour, evenly spaced."""

from __future__ import annotations

import time


class RateLimiter:
    """Evenly spaced sends: at most ``per_second`` and ``per_hour``."""

    def __init__(self, per_second: float | None, per_hour: float | None) -> None:
        gaps = [1 / per_second if per_second else 0.0, 3600 / per_hour if per_hour else 0.0]
        self.gap = max(gaps)
        self._next = time.monotonic()

    def slot(self) -> float | None:
        """Take the next slot: the monotonic time to wait for, or None (no wait)."""
        if not self.gap:
            return None
        now = time.monotonic()
        at = max(self._next, now)
        self._next = at + self.gap
        return at if at > now else None
