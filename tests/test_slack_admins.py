"""The admin check in front of every Slack listener."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from sqlalchemy.orm import Session

from bot.admins import add_admin, remove_admin
from bot.clock import ManualClock
from bot.context import Context
from handlers.middleware import AdminCheck


def test_admins_from_the_table_and_the_bootstrap_setting(context: Context, session: Session) -> None:
    add_admin(session, "UTABLE001", "test")
    session.commit()
    check = AdminCheck(
        Context(context.settings.model_copy(update={"admin_slack_user_ids": "UBOOT0001"}), context.sessions)
    )
    assert check("UTABLE001") and check("UBOOT0001")
    assert not check("USTRANGER")


def test_a_removed_admin_is_refused_once_the_short_cache_expires(context: Context, session: Session) -> None:
    clock = ManualClock()
    check = AdminCheck(replace(context, clock=clock), ttl=30)
    assert not check("UNEW00001")
    add_admin(session, "UNEW00001", "test")
    session.commit()
    assert check("UNEW00001")  # allowed at once: refusals are never cached
    remove_admin(session, "UNEW00001", "test")
    session.commit()
    assert check("UNEW00001")  # still remembered...
    assert not check("UNEW00001", cached=False)  # ...except by the steps that change something
    clock.advance(30)
    assert not check("UNEW00001")  # ...and not for long


def test_an_admin_at_work_is_rechecked_in_the_background(context: Context, session: Session) -> None:
    add_admin(session, "UBUSY0001", "test")
    session.commit()
    clock = ManualClock()
    with ThreadPoolExecutor(1) as pool:
        check = AdminCheck(replace(context, clock=clock), ttl=30, refresh_with=pool)
        assert check("UBUSY0001")
        remove_admin(session, "UBUSY0001", "test")
        session.commit()
        clock.advance(20)  # past half the cache's life: answered from the cache, re-checked behind it
        assert check("UBUSY0001")
    assert not check("UBUSY0001")  # the background check found them gone
