"""Scheduled sends: ``send ISSUE --at TIME [--tz ZONE] [--not-after TIME]``.

``--at`` waits in the foreground (Ctrl-C or SIGTERM stops the wait and nothing
is sent: nothing is written before the time either, so a scheduled send can
be stopped and started again freely). ``--not-after`` refuses to start after
that time and stops a running send when it comes: an outage never sends a
stale issue hours late. Times are read in ``--tz`` (an IANA zone such as
Europe/London), else the machine's zone; a time with its own UTC offset
(``2025-04-16T09:00+01:00``) keeps it.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from composer.errors import ConfigError

FORMATS = "YYYY-MM-DD HH:MM (or ISO 8601: 2025-04-16T09:00, 2025-04-16T09:00+01:00)"


def zone(name: str | None) -> dt.tzinfo:
    """The zone ``name`` (None: the machine's)."""
    if not name:
        local = dt.datetime.now().astimezone().tzinfo
        assert local is not None
        return local
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"--tz {name!r}: unknown time zone; use an IANA name such as Europe/London or UTC"
        ) from None


def parse_time(text: str, tz: dt.tzinfo, option: str) -> dt.datetime:
    """``text`` as an aware datetime: in ``tz`` unless it carries its own offset."""
    try:
        when = dt.datetime.fromisoformat(text.strip().replace(" ", "T", 1))
    except ValueError:
        raise ConfigError(f"{option} {text!r}: not a time; write {FORMATS}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=tz)
    return when


def describe(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M:%S %Z").strip() or when.isoformat()


def wait_until(when: dt.datetime, tick: Callable[[float], None] | None = None) -> None:
    """Sleep until ``when`` (by the wall clock, checked at least every 30 s, so that
    a clock change or a suspended machine is noticed); ``tick(seconds_left)``
    now and then. KeyboardInterrupt (Ctrl-C, SIGTERM) ends the wait."""
    target = when.timestamp()
    last_tick = 0.0
    while True:
        left = target - time.time()
        if left <= 0:
            return
        if tick is not None and time.monotonic() - last_tick >= 60:
            tick(left)
            last_tick = time.monotonic()
        time.sleep(min(left, 30.0))
