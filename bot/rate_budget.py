"""A budget of calls per window for an outside service's rate limits, shared by every thread and process.

Each key (say, one Web API method in one workspace) is a GCRA bucket: at most `Rate.calls` calls in any
`Rate.window` seconds, `Rate.burst` of them at once, the rest evenly spaced. A caller takes a slot before
its call and waits until the slot's time; a caller that can skip (a progress update that the next one
supersedes) takes a slot only when one is free now. The last `Rate.reserve` slots of the burst are kept
for urgent callers (a final summary), so they do not queue behind routine updates.

The buckets live in Redis when REDIS_URL is set (one budget for every process), in this process
otherwise, and here too while Redis cannot be reached. Time comes from the caller (the injected clock's
wall time, which every process shares), never from this module.
"""

from __future__ import annotations

import enum
import logging
import threading
from dataclasses import dataclass
from typing import Protocol

import redis

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rate:
    """At most `calls` in any `window` seconds; `burst` of them may come at once, `reserve` of those
    only to urgent callers."""

    calls: int
    window: float = 60.0
    burst: int = 1
    reserve: int = 0

    @property
    def interval(self) -> float:
        """Seconds between two calls once the burst is spent."""
        return self.window / (self.calls - self.burst)


class Priority(enum.Enum):
    SKIP = "skip"
    """Only a slot free now, leaving the reserve; else the caller skips (its next call supersedes it)."""
    WAIT = "wait"
    """Wait for the next slot that leaves the reserve."""
    URGENT = "urgent"
    """Wait for the next slot, the reserve included."""


def _limit(rate: Rate, priority: Priority) -> int:
    return rate.burst if priority is Priority.URGENT else max(1, rate.burst - rate.reserve)


class BudgetStore(Protocol):
    def take(self, key: str, rate: Rate, now: float, priority: Priority) -> float | None:
        """Take the next slot for `key`: seconds to wait before calling, or None (SKIP, none free)."""
        ...

    def hold_off(self, key: str, rate: Rate, now: float, until: float) -> None:
        """The service refused a call (429, Retry-After): nobody takes a slot of `key` before `until`."""
        ...


def _gcra(tat: float, rate: Rate, now: float, priority: Priority) -> tuple[float, float] | None:
    """(wait, new theoretical arrival time) for a call at `now`, or None when a SKIP call finds no slot."""
    tat = max(tat, now)
    wait = max(0.0, tat + rate.interval - _limit(rate, priority) * rate.interval - now)
    if wait > 0 and priority is Priority.SKIP:
        return None
    return wait, tat + rate.interval


def _held_tat(rate: Rate, until: float) -> float:
    """The arrival time after which the next call starts at `until`, and one per interval after it."""
    return until + (rate.burst - 1) * rate.interval


class MemoryBudget:
    """The buckets in this process."""

    def __init__(self) -> None:
        self._tats: dict[str, float] = {}
        self._lock = threading.Lock()

    def take(self, key: str, rate: Rate, now: float, priority: Priority) -> float | None:
        with self._lock:
            taken = _gcra(self._tats.get(key, now), rate, now, priority)
            if taken is None:
                return None
            wait, self._tats[key] = taken
            return wait

    def hold_off(self, key: str, rate: Rate, now: float, until: float) -> None:
        with self._lock:
            self._tats[key] = max(self._tats.get(key, until), _held_tat(rate, until))


_TAKE = """
local tat = tonumber(redis.call('GET', KEYS[1]) or ARGV[1])
local now, interval, limit, skip = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
if tat < now then tat = now end
local wait = tat + interval - limit * interval - now
if wait < 0 then wait = 0 end
if wait > 0 and skip == '1' then return false end
tat = tat + interval
redis.call('SET', KEYS[1], tostring(tat), 'PX', math.ceil((tat - now) * 1000) + 1000)
return tostring(wait)
"""
_HOLD_OFF = """
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local held, now = tonumber(ARGV[1]), tonumber(ARGV[2])
if held > tat then
  redis.call('SET', KEYS[1], tostring(held), 'PX', math.ceil((held - now) * 1000) + 1000)
end
return 1
"""


class RedisBudget:
    """The buckets in Redis, under `namespace:rate:`, each changed by one script (atomic across processes)."""

    def __init__(self, client: redis.Redis, namespace: str, fallback: MemoryBudget) -> None:
        self.client, self.prefix, self.fallback = client, f"{namespace}:rate:", fallback
        self._take = client.register_script(_TAKE)
        self._hold_off = client.register_script(_HOLD_OFF)

    def take(self, key: str, rate: Rate, now: float, priority: Priority) -> float | None:
        skip = "1" if priority is Priority.SKIP else "0"
        args: list[str | int] = [repr(now), repr(rate.interval), _limit(rate, priority), skip]
        try:
            wait = self._take(keys=[self.prefix + key], args=args)
        except redis.RedisError as error:
            log.warning("rate budget in Redis unavailable (%s): counting in this process", error)
            return self.fallback.take(key, rate, now, priority)
        return None if wait is None else float(wait)

    def hold_off(self, key: str, rate: Rate, now: float, until: float) -> None:
        self.fallback.hold_off(key, rate, now, until)
        try:
            self._hold_off(keys=[self.prefix + key], args=[repr(_held_tat(rate, until)), repr(now)])
        except redis.RedisError as error:
            log.warning("rate budget in Redis unavailable (%s)", error)


_memory = MemoryBudget()
_stores: dict[tuple[str, str], RedisBudget] = {}
_stores_lock = threading.Lock()


def budget_store(redis_url: str | None, namespace: str) -> BudgetStore:
    """The shared store: Redis at `redis_url` (one client per URL and namespace), else this process's."""
    if not redis_url:
        return _memory
    with _stores_lock:
        store = _stores.get((redis_url, namespace))
        if store is None:
            client = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
            store = _stores[(redis_url, namespace)] = RedisBudget(client, namespace, _memory)
        return store
