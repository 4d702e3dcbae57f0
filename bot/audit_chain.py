"""A hash chain over the audit log, so that a changed, removed or inserted event can be found.

Each sealed event carries `seq` (its place in the chain), `prev_hash` (the hash of the event before it)
and `hash` = SHA-256 over `prev_hash` and the event's content. `verify_chain` walks the chain and names
the first event that does not fit.

Why events are sealed after they are written, not as they are written: events are added by many
threads and processes at once inside their own transactions (the send engine writes one per employee,
tens of thousands per batch). Chaining at insert time would mean reading "the last hash" and holding a
lock on it until the writing transaction commits, which serialises every transaction that writes an
event, however long it runs. Instead an event is inserted unsealed, and sealing runs in a short
transaction of its own right after each commit that wrote events: it takes a lock (PostgreSQL: a
transaction-scoped advisory lock, held for the few statements of the seal; SQLite: its single writer
lock, taken by the first statement), reads the chain's head and seals every committed unsealed event
in id order. Only sealers wait for one another, and only for a seal's duration; a sealer that finds
another one running leaves the work to it or to the next commit (`verify_chain` always seals first, so
nothing stays unsealed when it matters). Within one process, commits from many threads coalesce into
one running sealer.

What it protects: events sealed before a change. Someone who can write to the database directly can
still append forged unsealed events, or rewrite the whole chain; compare the head `verify` prints with
one recorded elsewhere to detect the latter.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from sqlalchemy import Engine, Row, bindparam, select, text, update
from sqlalchemy.orm import Session

from models import AuditEvent

GENESIS = "0" * 64
"""The `prev_hash` of the first event."""
SEAL_BATCH = 2000
_ADVISORY_LOCK_KEY = 0x6372656462  # "credb"
_TABLE = AuditEvent.__table__
_CONTENT = (
    AuditEvent.id,
    AuditEvent.created_at,
    AuditEvent.actor,
    AuditEvent.action,
    AuditEvent.target,
    AuditEvent.details,
)


def event_hash(prev_hash: str, row: Any) -> str:
    """SHA-256 over the previous hash and an event's id, time, actor, action, target and details."""
    content = [
        row.id,
        row.created_at.astimezone(UTC).isoformat(timespec="microseconds"),
        row.actor,
        row.action,
        row.target,
        row.details,
    ]
    payload = json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(f"{prev_hash}\n{payload}".encode()).hexdigest()


def seal(engine: Engine, wait: bool = False) -> int:
    """Seal every committed unsealed event, in id order; returns how many were sealed.

    Without `wait`, returns 0 at once when another process is sealing (it or the next seal will do it).
    """
    sealed = 0
    with Session(engine) as session, session.begin():
        if not _lock_chain(session, wait):
            return 0
        head = session.execute(
            select(AuditEvent.seq, AuditEvent.hash)
            .where(AuditEvent.seq.is_not(None))
            .order_by(AuditEvent.seq.desc())
            .limit(1)
        ).first()
        seq, prev = (head.seq, head.hash) if head else (0, GENESIS)
        while True:
            rows = session.execute(
                select(*_CONTENT).where(AuditEvent.seq.is_(None)).order_by(AuditEvent.id).limit(SEAL_BATCH)
            ).all()
            if not rows:
                return sealed
            values = []
            for row in rows:
                seq += 1
                digest = event_hash(prev, row)
                values.append({"b_id": row.id, "seq": seq, "prev_hash": prev, "hash": digest})
                prev = digest
            session.execute(
                update(_TABLE)
                .where(_TABLE.c.id == bindparam("b_id"))
                .values(seq=bindparam("seq"), prev_hash=bindparam("prev_hash"), hash=bindparam("hash")),
                values,
            )
            sealed += len(values)


def _lock_chain(session: Session, wait: bool) -> bool:
    if session.get_bind().dialect.name == "postgresql":
        function = "pg_advisory_xact_lock" if wait else "pg_try_advisory_xact_lock"
        result = session.execute(text(f"SELECT {function}(:key)"), {"key": _ADVISORY_LOCK_KEY}).scalar()
        return wait or bool(result)
    # SQLite: a write as the first statement takes the database's writer lock (waiting up to its busy
    # timeout), so no other sealer can read the head until this one commits.
    session.execute(update(_TABLE).where(text("0")).values(hash=_TABLE.c.hash))
    return True


class _Sealer:
    """Coalesces the seals asked for by many threads of one process: at most one runs per engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.running = threading.Lock()
        self.again = threading.Event()

    def request(self) -> None:
        self.again.set()
        while self.again.is_set() and self.running.acquire(blocking=False):
            try:
                self.again.clear()
                seal(self.engine)
            finally:
                self.running.release()


_sealers: dict[int, _Sealer] = {}
_sealers_lock = threading.Lock()


def request_seal(engine: Engine) -> None:
    """Seal what was committed (called after each commit that wrote audit events)."""
    with _sealers_lock:
        sealer = _sealers.get(id(engine))
        if sealer is None or sealer.engine is not engine:
            sealer = _sealers[id(engine)] = _Sealer(engine)
    sealer.request()


# --- Verification -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainProblem:
    kind: str
    """"changed", "removed" or "inserted"."""
    event_id: int
    seq: int
    message: str


@dataclass(frozen=True)
class ChainReport:
    events: int
    """Sealed events checked."""
    head_seq: int
    head_hash: str
    problem: ChainProblem | None

    @property
    def ok(self) -> bool:
        return self.problem is None


def verify_chain(engine: Engine) -> ChainReport:
    """Seal what is unsealed, then check every link; the report names the first event that does not fit."""
    seal(engine, wait=True)
    with Session(engine) as session:
        rows = session.execute(
            select(*_CONTENT, AuditEvent.seq, AuditEvent.prev_hash, AuditEvent.hash)
            .where(AuditEvent.seq.is_not(None))
            .order_by(AuditEvent.seq, AuditEvent.id)
            .execution_options(yield_per=SEAL_BATCH)
        )
        return _walk(iter(rows))


def _walk(rows: Iterator[Row[Any]]) -> ChainReport:
    count, last, before_last = 0, GENESIS, GENESIS
    previous: Row[Any] | None = None
    row = next(rows, None)
    while row is not None:
        following = next(rows, None)
        if event_hash(row.prev_hash, row) != row.hash:
            return _report(count, last, _problem("changed", row, "its content no longer matches its hash"))
        if row.prev_hash != last:
            if previous is not None and row.prev_hash == before_last:
                return _report(count, last, _problem("inserted", previous, "it is not part of the chain"))
            if following is not None and following.prev_hash == last:
                return _report(count, last, _problem("inserted", row, "it is not part of the chain"))
            return _report(count, last, _problem("removed", row, "one or more events before it are missing"))
        count += 1
        before_last, last, previous, row = last, row.hash, row, following
    return _report(count, last, None, previous.seq if previous else 0)


def _problem(kind: str, row: Row[Any], why: str) -> ChainProblem:
    return ChainProblem(kind, row.id, row.seq, f"audit event {row.id} (chain position {row.seq}): {why}")


def _report(count: int, head: str, problem: ChainProblem | None, head_seq: int = 0) -> ChainReport:
    return ChainReport(count, head_seq, head, problem)
