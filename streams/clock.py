"""Clocks: the wall clock, an accelerated one for the demo, a manual one for tests.

Every component that reads the time or waits takes a :class:`Clock`, so tests
advance time instead of sleeping and the demo can run a simulated day in minutes.

>>> from datetime import UTC, datetime, timedelta
>>> clock = ManualClock(datetime(2026, 1, 5, tzinfo=UTC))
>>> clock.advance(timedelta(minutes=5))
>>> clock.now().isoformat()
'2026-01-05T00:05:00+00:00'
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

__all__ = ["Clock", "ManualClock", "ScaledClock", "SystemClock"]


class Clock(Protocol):
    """Source of the current time and of waits."""

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...

    async def sleep(self, delay: timedelta) -> None:
        """Wait for ``delay`` of this clock's time."""
        ...


class SystemClock:
    """The wall clock."""

    def now(self) -> datetime:
        """The current UTC time."""
        return datetime.now(UTC)

    async def sleep(self, delay: timedelta) -> None:
        """Sleep for real."""
        await asyncio.sleep(max(delay.total_seconds(), 0.0))


class ScaledClock:
    """A clock that runs ``speed`` times faster than the wall clock from ``start``.

    At speed 60, one simulated minute passes per real second.
    """

    def __init__(self, start: datetime, speed: float) -> None:
        if start.tzinfo is None:
            msg = "start must be timezone-aware"
            raise ValueError(msg)
        if speed <= 0:
            msg = "speed must be positive"
            raise ValueError(msg)
        self.start = start.astimezone(UTC)
        self.speed = speed
        self._origin = time.monotonic()

    def now(self) -> datetime:
        """Simulated UTC time."""
        return self.start + timedelta(seconds=(time.monotonic() - self._origin) * self.speed)

    async def sleep(self, delay: timedelta) -> None:
        """Sleep ``delay / speed`` real seconds."""
        await asyncio.sleep(max(delay.total_seconds(), 0.0) / self.speed)


class ManualClock:
    """A clock that moves only when told to; ``sleep`` waits until it has moved enough."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            msg = "start must be timezone-aware"
            raise ValueError(msg)
        self._now = start.astimezone(UTC)
        self._moved = asyncio.Event()

    def now(self) -> datetime:
        """The time set by the last :meth:`advance`."""
        return self._now

    def advance(self, delta: timedelta) -> None:
        """Move time forward and wake the sleepers."""
        self._now += delta
        self._moved.set()

    async def sleep(self, delay: timedelta) -> None:
        """Return once the clock has advanced by ``delay``."""
        until = self._now + delay
        while self._now < until:
            self._moved.clear()
            await self._moved.wait()
