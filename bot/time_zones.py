"""IANA time zone names, as HR exports and settings give them."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, date, datetime, time, timedelta
from functools import cache


@cache
def _known_zones() -> dict[str, str]:
    """Every IANA zone name (the system's database, else the tzdata package), by its lower-case form.
    `localtime` is left out: it is the machine's own zone, not a name that means the same everywhere."""
    return {name.lower(): name for name in zoneinfo.available_timezones() if name != "localtime"}


def canonical_time_zone(name: str) -> str | None:
    """`name` as the IANA database spells it (`europe/london` -> `Europe/London`); None: no such zone."""
    return _known_zones().get(name.strip().lower())


def local_moment(day: date, at: time, zone: str) -> datetime:
    """The UTC instant of the wall-clock time `at` on `day` in `zone`: the one rule for daylight saving.

    A time the clocks skip (spring forward) moves forward to the first instant that exists after the
    gap; a time that happens twice (fall back) is its first occurrence.
    """
    tz = zoneinfo.ZoneInfo(zone)
    wall = datetime.combine(day, at)
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)  # fold=0: the earlier offset
    if first.astimezone(tz).replace(tzinfo=None) == wall:
        return first
    # In a gap: fold=1 reads it with the later offset, an instant before the change; fold=0 one after
    # it. The change is between them: the first instant whose wall-clock time is past the gap.
    before, after = wall.replace(tzinfo=tz, fold=1).astimezone(UTC), first
    while after - before > timedelta(seconds=1):
        middle = before + (after - before) / 2
        if middle.astimezone(tz).replace(tzinfo=None) > wall:
            after = middle
        else:
            before = middle
    return after.replace(microsecond=0)
