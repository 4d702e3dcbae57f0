"""The schema: migrations, constraints and the append-only audit log, on each backend."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot import audit
from bot.audit import AuditAction, record
from models import Account, AuditEvent, Employee, Role


def test_audit_log_refuses_update_and_delete_in_the_database(session: Session) -> None:
    record(session, "U1", AuditAction.ADMIN_ADDED, "U2", note="hello")
    session.commit()
    for statement in ("UPDATE audit_events SET actor = 'x'", "DELETE FROM audit_events"):
        with pytest.raises(sa.exc.DatabaseError, match="append-only"):
            session.execute(sa.text(statement))
        session.rollback()
    assert session.scalars(sa.select(AuditEvent.actor)).all() == ["U1"]


def test_audit_log_refuses_changes_through_the_orm(session: Session) -> None:
    event = record(session, "U1", AuditAction.ADMIN_ADDED)
    session.commit()
    event.actor = "someone else"
    with pytest.raises(PermissionError):
        session.commit()


def test_one_account_per_employee_and_unique_usernames(session: Session) -> None:
    employee = Employee(employee_number="1", first_name="Ada", last_name="Lovelace")
    other = Employee(employee_number="2", first_name="Alan", last_name="Turing")
    session.add_all([employee, other, Account(employee=employee, username="alovelace")])
    session.commit()
    session.add(Account(employee=employee, username="ada2"))
    with pytest.raises(sa.exc.IntegrityError):
        session.commit()
    session.rollback()
    session.add(Account(employee=other, username="alovelace"))
    with pytest.raises(sa.exc.IntegrityError):
        session.commit()


def test_roles_and_timestamps_round_trip_timezone_aware(session: Session) -> None:
    employee = Employee(employee_number="1", first_name="Ada", last_name="Lovelace")
    account = Account(employee=employee, username="alovelace", roles=[Role(name="Employee"), Role(name="HR")])
    session.add(account)
    session.commit()
    session.expire_all()
    loaded = session.scalars(sa.select(Account)).one()
    assert [role.name for role in loaded.roles] == ["Employee", "HR"]
    assert loaded.created_at.tzinfo is not None


def test_the_migrations_match_the_models(session: Session) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from models import Base
    from models.session import in_models

    with session.connection() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": False, "include_object": in_models}
        )
        differences = compare_metadata(context, Base.metadata)
    # The pg_trgm and ICU indexes are made by hand on PostgreSQL only, on purpose (OPTIONAL_INDEXES).
    assert differences == []


def test_audit_actor_and_target_strings_stay_as_existing_logs_have_them() -> None:
    """Reports, App Home and the logs already written read these exact strings."""
    assert [audit.slack_actor("U012AB3CD"), audit.slack_actor(None)] == ["slack:U012AB3CD", "slack:unknown"]
    assert [audit.slack_user_of("slack:U1"), audit.slack_user_of("cli:ana")] == ["U1", None]
    assert [audit.cli_actor("hr"), audit.cli_actor(None)] == ["cli:hr", "cli:unknown"]
    assert audit.portal_user_actor("alee") == "alee"
    assert (audit.PORTAL_ACTOR, audit.PORTAL_UNKNOWN_USER_ACTOR) == ("portal", "portal:unknown-user")
    assert audit.DIGEST_ACTOR == "credbot:digest"
    assert audit.employee_target("E-1") == "employee:E-1"
    assert audit.account_target("alee") == "account:alee"
    assert audit.batch_target(7) == "batch:7"
    assert audit.department_target("Sales") == "department:Sales"
