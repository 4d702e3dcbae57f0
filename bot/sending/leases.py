"""A runner's hold on its claims: renewing their leases, knowing which it lost, and its heartbeat.

A runner fences itself (see `bot.sending.sender`): before each email it checks that its leases were
renewed within two thirds of a lease, by the monotonic clock (which runs on while a process is
stopped), and renews them first if not; a delivery it no longer holds is not sent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from datetime import timedelta

from bot.audit import seal_now
from bot.context import Context
from bot.sending import claims, runs
from bot.sending.claims import Held
from bot.sending.retry import db_retry, transient
from models import utcnow

log = logging.getLogger(__name__)


class Leases:
    """The leases of one runner's claims in flight (thread-safe)."""

    def __init__(self, ctx: Context, batch_id: int, lease: timedelta) -> None:
        self.ctx = ctx
        self.batch_id = batch_id
        self.lease = lease
        self._lock = threading.Lock()
        self._held: dict[int, int] = {}
        """Claimed deliveries in flight: id -> fencing token."""
        self._lost: set[int] = set()
        """Claimed deliveries another runner took meanwhile (found by a renewal): not to be sent."""
        self._fresh_until = 0.0
        """Until when (monotonic) every lease of this runner is known to be at least 2/3 of a lease
        from running out: after it, a mail thread renews before it sends."""
        self._renewing = threading.Lock()

    def hold(self, claimed: Iterable[Held], started: float) -> None:
        """Claims committed (renewed, fenced from now on); `started`: when (monotonic) their lease began."""
        with self._lock:
            if not self._held:
                self._fresh_until = started + self.lease.total_seconds() * 2 / 3
            self._held.update(claimed)

    def ended(self, delivery_ids: Iterable[int]) -> None:
        with self._lock:
            for delivery_id in delivery_ids:
                self._held.pop(delivery_id, None)

    def renew(self, if_stale: bool = False) -> None:
        """Renew the leases this runner still holds (fenced: see `claims.renew`); note the ones lost.
        `if_stale`: only if no other thread renewed them meanwhile."""
        with self._renewing:
            started = self.ctx.clock.monotonic()
            if if_stale and started < self._fresh_until:
                return
            with self._lock:
                held = [Held(i, f) for i, f in self._held.items()]
            with self.ctx.sessions.begin() as session:
                lost = claims.renew(session, held, utcnow() + self.lease)
            with self._lock:
                self._lost.update(lost)
                self._fresh_until = started + self.lease.total_seconds() * 2 / 3
        if lost:
            log.warning("batch %s: %d claims were taken by another runner", self.batch_id, len(lost))

    def still_mine(self, delivery_id: int) -> bool:
        """Whether this runner may still send for the delivery: its leases were renewed recently enough
        (or are renewed now) and no other runner took it."""
        if self.ctx.clock.monotonic() >= self._fresh_until:
            db_retry(self.renew)(if_stale=True)
        with self._lock:
            return delivery_id not in self._lost


def heartbeat(leases: Leases, done: threading.Event, stopped: Callable[[str], None]) -> None:
    """Until `done`, every second: the batch's heartbeat, a stop asked for elsewhere (`stopped` is told
    why), the audit seal. Every third of a lease: the runner's leases (renewed every second, they
    rewrote every claimed delivery and held account that often, as much database work as sending them)."""
    ctx, batch_id = leases.ctx, leases.batch_id
    renew_every = leases.lease.total_seconds() / 3
    renew_at = time.monotonic() + renew_every
    while not done.wait(min(1.0, renew_every)):
        renew = time.monotonic() >= renew_at
        try:
            if renew:
                leases.renew()
                renew_at = time.monotonic() + renew_every
            with ctx.sessions.begin() as session:
                reason = runs.beat(session, batch_id, utcnow())
            if reason:
                stopped(reason)
        except Exception as error:  # the database away for a moment: the next beat tries again
            log.warning(
                "the heartbeat of batch %s failed (%s); the next beat tries again",
                batch_id,
                type(error).__name__,
                exc_info=not transient(error),  # a known outage is one line, not a traceback
            )
        seal_now(ctx.sessions)
