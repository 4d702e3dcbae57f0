"""The audit log's hash chain: sealing under concurrent writers, `credbot audit verify`, no TRUNCATE."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from bot.audit import AuditAction, record, record_now
from bot.audit_chain import event_hash, seal, verify_chain
from bot.context import Context
from models import AuditEvent
from tests.builders import present
from tests.cli_helpers import RunCli


def write_events(ctx: Context, count: int) -> None:
    for number in range(count):
        record_now(ctx.sessions, "cli:hr", AuditAction.ADMIN_ADDED, f"U{number}", name=f"Zoë {number}")


def chain(ctx: Context) -> list[AuditEvent]:
    with ctx.sessions() as session:
        return list(session.scalars(select(AuditEvent).order_by(AuditEvent.seq, AuditEvent.id)))


@contextmanager
def triggers_off(ctx: Context) -> Iterator[sa.Connection]:
    """A connection on which the append-only triggers do not fire (as a database owner could do)."""
    engine = ctx.sessions.kw["bind"]
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql("ALTER TABLE audit_events DISABLE TRIGGER USER")
        else:
            connection.exec_driver_sql("DROP TRIGGER audit_events_no_update")
            connection.exec_driver_sql("DROP TRIGGER audit_events_no_delete")
        yield connection
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql("ALTER TABLE audit_events ENABLE TRIGGER USER")


def test_events_are_sealed_into_one_chain_as_they_commit(context: Context) -> None:
    write_events(context, 5)
    events = chain(context)
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert events[0].prev_hash == "0" * 64
    for before, after in itertools.pairwise(events):
        assert after.prev_hash == before.hash
    assert all(event_hash(present(e.prev_hash), e) == e.hash for e in events)


def test_verify_on_an_intact_log(cli: RunCli, context: Context) -> None:
    write_events(context, 3)
    result = cli("audit", "verify")
    assert result.exit_code == 0, result.output
    assert "Audit log intact: 3 events" in result.output
    assert present(chain(context)[-1].hash) in result.output


def test_a_changed_event_is_named(cli: RunCli, context: Context) -> None:
    write_events(context, 4)
    second = chain(context)[1]
    with triggers_off(context) as connection:
        connection.execute(
            sa.update(AuditEvent.__table__)
            .where(AuditEvent.__table__.c.id == second.id)
            .values(target="U-someone-else")
        )
    result = cli("audit", "verify")
    assert result.exit_code == 1
    assert f"audit event {second.id} (chain position 2)" in result.output
    assert "(changed)" in result.output


def test_a_removed_event_is_found(cli: RunCli, context: Context) -> None:
    write_events(context, 4)
    events = chain(context)
    with triggers_off(context) as connection:
        connection.execute(sa.delete(AuditEvent.__table__).where(AuditEvent.__table__.c.id == events[1].id))
    result = cli("audit", "verify")
    assert result.exit_code == 1
    assert f"audit event {events[2].id} (chain position 3): one or more events before it" in result.output
    assert "(removed)" in result.output


@pytest.mark.parametrize("forged_link", [True, False])
def test_an_inserted_event_is_named(cli: RunCli, context: Context, forged_link: bool) -> None:
    """The forger computes a valid hash for the new event; its link is the real one or made up."""
    write_events(context, 3)
    first = chain(context)[0]
    with triggers_off(context) as connection:
        forged = {
            "id": 1000,
            "created_at": first.created_at,
            "actor": "cli:mallory",
            "action": "admin.added",
            "target": "U-MALLORY",
            "details": {},
            "seq": 1,
            "prev_hash": first.hash if forged_link else "f" * 64,
        }
        forged["hash"] = event_hash(str(forged["prev_hash"]), SimpleNamespace(**forged))
        connection.execute(sa.insert(AuditEvent.__table__), forged)
    report = verify_chain(context.sessions.kw["bind"])
    assert report.problem is not None
    assert (report.problem.kind, report.problem.event_id) == ("inserted", 1000)
    assert "audit event 1000" in cli("audit", "verify").output


def test_truncate_is_refused_on_postgresql(session: Session) -> None:
    if session.get_bind().dialect.name != "postgresql":
        pytest.skip("SQLite has no TRUNCATE (DELETE is refused by its own trigger)")
    record(session, "cli:hr", AuditAction.ADMIN_ADDED, "U1")
    session.commit()
    with pytest.raises(sa.exc.DBAPIError, match="append-only"):
        session.execute(text("TRUNCATE audit_events"))
    session.rollback()
    assert session.scalar(select(sa.func.count()).select_from(AuditEvent)) == 1


def test_only_sealing_may_update_an_event(session: Session) -> None:
    record(session, "cli:hr", AuditAction.ADMIN_ADDED, "U1")
    session.commit()
    table = AuditEvent.__table__
    for values in ({"hash": "0" * 64, "prev_hash": "0" * 64, "seq": 9}, {"actor": "x"}):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            session.execute(sa.update(table).values(**values))
        session.rollback()


def test_concurrent_writers_make_one_unbroken_chain(context: Context) -> None:
    """Eight threads write events at once; on PostgreSQL one long transaction stays open meanwhile
    (SQLite has one writer at a time, so there it would only block the writers themselves)."""
    threads_, per_thread = 8, 40
    long_session = context.sessions()
    if long_session.get_bind().dialect.name == "postgresql":
        record(long_session, "worker", AuditAction.BATCH_STARTED, "batch:1")
        long_session.flush()  # an event written but not committed: sealing must not wait for it
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            write_events(context, per_thread)
        except BaseException as error:  # pragma: no cover (reported below)
            errors.append(error)

    workers = [threading.Thread(target=writer) for _ in range(threads_)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert not errors
    seal(context.sessions.kw["bind"], wait=True)
    sealed = chain(context)
    assert len(sealed) == threads_ * per_thread
    assert all(event.seq is not None for event in sealed), "sealed while a long transaction was open"

    long_session.commit()
    long_session.close()
    report = verify_chain(context.sessions.kw["bind"])
    assert report.ok, report.problem
    total = len(chain(context))
    assert report.events == total >= threads_ * per_thread
    assert sorted(present(e.seq) for e in chain(context)) == list(range(1, total + 1))
