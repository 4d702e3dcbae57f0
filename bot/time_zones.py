"""IANA time zone names, as HR exports and settings give them."""

from __future__ import annotations

import zoneinfo
from functools import cache


@cache
def _known_zones() -> dict[str, str]:
    """Every IANA zone name (the system's database, else the tzdata package), by its lower-case form.
    `localtime` is left out: it is the machine's own zone, not a name that means the same everywhere."""
    return {name.lower(): name for name in zoneinfo.available_timezones() if name != "localtime"}


def canonical_time_zone(name: str) -> str | None:
    """`name` as the IANA database spells it (`europe/london` -> `Europe/London`); None: no such zone."""
    return _known_zones().get(name.strip().lower())
