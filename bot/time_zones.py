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


def zone_of(name: str | None, default: str) -> zoneinfo.ZoneInfo:
    """An employee's zone: their own (`Employee.time_zone`), else `default` (DEFAULT_TIME_ZONE); a name
    the database no longer knows falls back to `default` rather than failing a send."""
    canonical = canonical_time_zone(name) if name else None
    return zoneinfo.ZoneInfo(canonical or default)


def local_time(moment: datetime, zone: zoneinfo.ZoneInfo) -> str:
    """`moment` as an employee reads it in `zone`: `Monday 7 December 2026, 17:00 GMT`, with an offset
    where the zone has no abbreviation (`UTC+05:30` rather than tzdata's `+0530`)."""
    local = moment.astimezone(zone)
    return f"{local:%A} {local.day} {local:%B %Y, %H:%M} {zone_label(local)}"


def zone_label(local: datetime) -> str:
    """The abbreviation of an aware time's zone (`GMT`, `EST`, `IST`), else its UTC offset (`UTC+12:45`)."""
    name = local.tzname() or ""
    if name and name[0] not in "+-":
        return name
    offset = local.utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset is not None else 0
    sign = "+" if minutes >= 0 else "-"
    hours, rest = divmod(abs(minutes), 60)
    return f"UTC{sign}{hours:02d}:{rest:02d}" if minutes else "UTC"


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
