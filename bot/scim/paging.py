"""Where the next page of a listing resumes: the last id served, so that page n+1 reads on from that id
(keyset) instead of stepping over every user before it (OFFSET: at 100,000 users the last page's OFFSET
scan takes ~20 ms, the keyset one ~1 ms, and the count shrinks to the users after it).

A hint kept in this process only: without it (another process, older than RESUME_FOR, never seen) a page is
read by OFFSET, with the same result while the directory does not change. When it changes between two pages,
the keyset page goes on after the last user served, so that a provider paging through neither misses nor
repeats a user (OFFSET would, after a deactivation).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta

RESUME_FOR = timedelta(minutes=1)
"""How long a listing's next page may resume from its last id (providers ask for it at once)."""
MAX_LISTINGS = 1000
"""Listings remembered at once (the oldest is forgotten first): memory stays flat."""


@dataclass(frozen=True)
class Listing:
    """One listing's pages: the same database and filter (`key`), asked for at `now`."""

    key: str
    now: datetime


class Resumes:
    """(listing, startIndex) -> the id after which that page starts; thread-safe, bounded."""

    def __init__(self) -> None:
        self._after: OrderedDict[tuple[str, int], tuple[int, datetime]] = OrderedDict()
        self._lock = threading.Lock()

    def after(self, listing: Listing, start_index: int) -> int | None:
        """The id the page at `start_index` starts after, if the previous page was served lately."""
        with self._lock:
            found = self._after.get((listing.key, start_index))
        if found is None or not timedelta(0) <= listing.now - found[1] <= RESUME_FOR:
            return None
        return found[0]

    def note(self, listing: Listing, next_index: int, last_id: int) -> None:
        """The page at `next_index` starts after `last_id`."""
        key = (listing.key, next_index)
        with self._lock:
            self._after[key] = (last_id, listing.now)
            self._after.move_to_end(key)
            while len(self._after) > MAX_LISTINGS:
                self._after.popitem(last=False)


RESUMES = Resumes()
