"""What happens when employees leave: the one home for it, whichever way the news arrives.

The CSV importer (a row whose status is inactive) and SCIM (`active: false`, `DELETE`) both call
`record_leavers`, so a leaver is treated the same wherever they come from.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.accounts import disable_accounts
from bot.chunks import chunks
from bot.sending.schedule import cancel_for_leavers
from models import Account, AccountStatus, Employee


def record_leavers(session: Session, actor: str, employee_numbers: Sequence[str]) -> list[tuple[str, str]]:
    """Disable the accounts of employees who left (sign-in refused, sessions ended) and cancel their
    scheduled sends; audited.

    Returns (employee number, username) of each account disabled now; those already disabled, or
    without an account, are left as they are. In the caller's transaction.
    """
    cancel_for_leavers(session, actor, employee_numbers)
    return disable_accounts(session, actor, _with_enabled_account(session, employee_numbers)).changed


def _with_enabled_account(session: Session, employee_numbers: Sequence[str]) -> list[int]:
    """The ids of those of the employees who have an account that is not disabled."""
    found: list[int] = []
    for chunk in chunks(list(employee_numbers)):
        query = (
            select(Employee.id)
            .join(Account, Account.employee_id == Employee.id)
            .where(Employee.employee_number.in_(chunk), Account.status != AccountStatus.DISABLED)
        )
        found += session.scalars(query)
    return found
