"""Retrying a whole transaction while the database is briefly unreachable (the sender, the CLI's polls)."""

from __future__ import annotations

import logging

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from tenacity import (
    RetryCallState,
    retry,
    retry_if_exception,
    stop_after_delay,
    wait_exponential,
    wait_random,
)

log = logging.getLogger(__name__)

DB_RETRY_SECONDS = 60.0
"""How long a transaction is retried while the database is unreachable."""
_SERIALIZATION_FAILURES = {"40001", "40P01"}  # serialization failure, deadlock detected


def transient(error: BaseException) -> bool:
    """True for database errors worth retrying: connection refused or reset, locked, serialization."""
    if not isinstance(error, DBAPIError):
        return False
    if error.connection_invalidated or isinstance(error, (OperationalError, InterfaceError)):
        return True
    return getattr(error.orig, "sqlstate", None) in _SERIALIZATION_FAILURES


def _log_db_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    log.warning(
        "database unavailable (%s); retrying (attempt %d)", type(error).__name__, state.attempt_number
    )


db_retry = retry(
    retry=retry_if_exception(transient),
    wait=wait_exponential(multiplier=0.05, max=2.0) + wait_random(0, 0.1),
    stop=stop_after_delay(DB_RETRY_SECONDS),
    before_sleep=_log_db_retry,
    reraise=True,
)
"""Retry a whole transaction (a function opening its own session) on transient database errors."""
