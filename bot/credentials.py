"""Every change to an account's credentials, in one place: the sender and the portal both call these.

- `make_password`, `make_link`: a new credential and the hash that is stored (which one: the credential
  mode's strategy, `bot.credential_modes`).
- `store_pending` (`store_pending_many`): keep the new credential's hash as *pending* while its email is
  handed to the mail API.
- `promote` (`promote_many`): the mail API accepted the email (or the employee signed in with the
  pending password): the credential becomes the account's; every other emailed credential (older links,
  or the temporary password when a link is emailed) stops working.
- `discard`: the mail API refused the email for good: the pending credential stops working, and the one
  pending before it (which may have reached the employee) is put back.
- `set_password`: the employee chose a password in the portal: every temporary credential ends.
- `revoke_links`, `token_hash`.

Statuses: `emailed_status` is the one rule for what emailing credentials does to an account's status.
No plaintext reaches the database: only hashes, and only through these functions.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam, case, null, or_, select, update
from sqlalchemy.orm import Session

from bot.passwords import generate_temporary_password, hash_password
from bot.settings import Settings
from models import Account, AccountStatus, CredentialMode, SetupLink, utcnow

# Plain Core tables: ORM-enabled UPDATEs cost several times more CPU, and these run per employee.
_ACCOUNTS = Account.__table__
_LINKS = SetupLink.__table__

HASH_THREAD_NAME = "credbot-hash"
_hash_pool_lock = threading.Lock()
_hash_pool: ThreadPoolExecutor | None = None


def hash_threads(settings: Settings) -> int:
    """Threads hashing at once: one per core, one fewer when HASH_THREADS_SPARE_CORE leaves one to the web."""
    cores = os.cpu_count() or 2
    return max(1, cores - 1) if settings.hash_threads_spare_core else cores


def _pool(settings: Settings) -> ThreadPoolExecutor:
    """The process's hash pool: one thread per core (see `hash_threads`).

    Argon2id takes 19 MiB and 25-35 ms of CPU per hash: more hashes at once than cores only cost memory,
    and glibc keeps those 19 MiB resident in each thread's arena once freed. The mail workers mostly
    wait on HTTP, so there are many more of them.
    """
    global _hash_pool
    with _hash_pool_lock:
        if _hash_pool is None:
            _hash_pool = ThreadPoolExecutor(
                hash_threads(settings),
                thread_name_prefix=HASH_THREAD_NAME,
                initializer=_start_hash_thread,
                initargs=(settings.worker_idle_priority,),
            )
        return _hash_pool


def _start_hash_thread(idle_priority: bool) -> None:
    """Name the thread `credbot-hash` for the OS too (Linux), so that `top -H` and the benchmarks
    tell the CPU spent hashing from the rest of a worker's; with `idle_priority` (WORKER_IDLE_PRIORITY),
    put it under Linux's SCHED_IDLE: it hashes only on CPU that every other thread on the machine leaves.

    Only the hash threads: they hold no lock while hashing (argon2 releases the GIL), but the process's
    other threads hold the GIL in turns, and one of them waiting at idle priority stalls the rest.
    """
    with contextlib.suppress(OSError):
        Path(f"/proc/self/task/{threading.get_native_id()}/comm").write_text(HASH_THREAD_NAME)
    if idle_priority and hasattr(os, "SCHED_IDLE"):  # elsewhere `credbot worker` refuses the setting
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


def token_hash(token: str) -> str:
    """What `SetupLink.token_hash` holds for a set-password token."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Credential:
    """A new credential: what is stored (`secret_hash`) and what the welcome email shows (`email`)."""

    mode: CredentialMode
    secret_hash: str
    expires_at: datetime
    email: dict[str, Any] = field(repr=False)
    """Template values: `mode`, `password` or `setup_url`, `expires_at`. Cleared once handed over."""


def make_link(settings: Settings) -> Credential:
    """A set-password token (link mode; see `bot.credential_modes`): only its hash is stored."""
    expires_at = utcnow() + timedelta(hours=settings.temp_password_ttl_hours)
    token = secrets.token_urlsafe(32)
    values: dict[str, Any] = {
        "mode": CredentialMode.LINK,
        "password": None,
        "setup_url": settings.setup_link_url(token),
        "expires_at": expires_at,
    }
    return Credential(CredentialMode.LINK, token_hash(token), expires_at, values)


def make_password(settings: Settings) -> Credential:
    """A temporary password hashed with argon2id on the hash pool (password mode)."""
    return _pool(settings).submit(_make_password, settings).result()


class PasswordSupply:
    """Temporary passwords generated and hashed ahead of need, so the hash pool never waits for a caller.

    `ahead` credentials are always queued on the hash pool; `take` hands out the oldest and queues
    another, until `most` were queued (None: no end; a batch knows how many it needs, and a hash made
    for nobody is CPU taken from the batch). A batch's mail threads spend most of their time waiting on
    the mail API: without this, the pool idles whenever none of them happens to be between two emails.
    The plaintexts exist only in memory, as with `make_password`; `close` drops the ones not handed out.
    """

    def __init__(self, settings: Settings, ahead: int | None = None, most: int | None = None) -> None:
        self.settings = settings
        self.ahead = ahead if ahead is not None else 2 * hash_threads(settings)
        self._unqueued = most
        self._lock = threading.Lock()
        self._queued: deque[Future[Credential]] = deque()
        self._closed = False

    def take(self) -> Credential:
        """A new password credential (hashed ahead when possible; made now once `most` were queued)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the password supply is closed")
            pool = _pool(self.settings)
            while len(self._queued) <= self.ahead and self._unqueued != 0:
                self._queued.append(pool.submit(_make_password, self.settings))
                if self._unqueued is not None:
                    self._unqueued -= 1
            made = self._queued.popleft() if self._queued else pool.submit(_make_password, self.settings)
        return made.result()

    def give_back(self, credential: Credential) -> None:
        """A credential taken but certainly never stored nor sent: the next `take` hands it out."""
        with self._lock:
            if not self._closed:
                done: Future[Credential] = Future()
                done.set_result(credential)
                self._queued.appendleft(done)

    def close(self) -> None:
        """Stop hashing ahead and drop what was not handed out."""
        with self._lock:
            self._closed = True
            queued, self._queued = self._queued, deque()
        for made in queued:
            if not made.cancel():
                made.add_done_callback(_forget)


def _forget(made: Future[Credential]) -> None:
    """Drop the plaintext of a credential made after its supply closed."""
    if made.exception() is None:
        made.result().email.clear()


def _make_password(settings: Settings) -> Credential:
    expires_at = utcnow() + timedelta(hours=settings.temp_password_ttl_hours)
    password = generate_temporary_password(settings.temp_password_length)
    values = {
        "mode": CredentialMode.PASSWORD,
        "password": password,
        "setup_url": None,
        "expires_at": expires_at,
    }
    return Credential(CredentialMode.PASSWORD, hash_password(password), expires_at, values)


@dataclass(frozen=True)
class Pending:
    """An account's pending password before a new one replaced it (to put back if the new one fails)."""

    secret_hash: str | None
    expires_at: datetime | None


def emailed_status() -> ColumnElement[str]:
    """The account status once credentials were emailed: invited, except that a disabled or locked
    account stays as it is (emailing never re-enables or unlocks an account)."""
    # Two comparisons, not IN: an IN list cannot be part of a statement run for many rows (executemany).
    kept = or_(_ACCOUNTS.c.status == AccountStatus.DISABLED, _ACCOUNTS.c.status == AccountStatus.LOCKED)
    return case((kept, _ACCOUNTS.c.status), else_=AccountStatus.INVITED)


def store_pending(session: Session, account_id: int, credential: Credential) -> Pending:
    """Keep the credential's hash as pending (an unsent link in link mode); what was pending before."""
    return store_pending_many(session, {account_id: credential})[account_id]


def store_pending_many(session: Session, new: dict[int, Credential]) -> dict[int, Pending]:
    """`store_pending` for several accounts (account id -> its new credential) in a few statements."""
    links = [
        SetupLink(account_id=account_id, token_hash=made.secret_hash, expires_at=made.expires_at)
        for account_id, made in new.items()
        if made.mode == CredentialMode.LINK
    ]
    if links:
        session.add_all(links)
        session.flush()
    passwords = {account_id: made for account_id, made in new.items() if made.mode == CredentialMode.PASSWORD}
    before = {account_id: Pending(None, None) for account_id in new}
    if not passwords:
        return before
    rows = session.execute(
        select(
            _ACCOUNTS.c.id, _ACCOUNTS.c.pending_password_hash, _ACCOUNTS.c.pending_password_expires_at
        ).where(_ACCOUNTS.c.id.in_(list(passwords)))
    )
    before |= {account_id: Pending(hashed, expires) for account_id, hashed, expires in rows}
    session.execute(
        update(_ACCOUNTS)
        .where(_ACCOUNTS.c.id == bindparam("b_id"))
        .values(
            pending_password_hash=bindparam("b_hash"), pending_password_expires_at=bindparam("b_expires")
        ),
        [
            {"b_id": account_id, "b_hash": made.secret_hash, "b_expires": made.expires_at}
            for account_id, made in passwords.items()
        ],
    )
    return before


@dataclass(frozen=True)
class Promotion:
    """One account's credential to promote (`promote_many`)."""

    account_id: int
    secret_hash: str
    expires_at: datetime | None


def promote(
    session: Session,
    account_id: int,
    mode: CredentialMode,
    secret_hash: str,
    expires_at: datetime | None,
    *,
    emailed_by: str | None = None,
    now: datetime | None = None,
) -> None:
    """The credential `secret_hash` becomes the account's (a temporary password to change at first sign-in).

    `emailed_by`: the mail API accepted its email, sent by this actor (recorded on the account).
    Without it (the portal, signing in with a pending password) the emailed-by fields stay as they are.
    """
    promote_many(
        session, mode, [Promotion(account_id, secret_hash, expires_at)], emailed_by=emailed_by, now=now
    )


def promote_many(
    session: Session,
    mode: CredentialMode,
    promotions: list[Promotion],
    *,
    emailed_by: str | None = None,
    now: datetime | None = None,
) -> None:
    """`promote` for several accounts, one statement of each kind for them all (a batch's deliveries).

    One live credential per account, across modes: a promoted password revokes every open link, a
    promoted link retires the temporary password (emailed, or pending) but not one the employee chose.
    """
    now = now or utcnow()
    session.flush()  # a caller's ORM changes to the account first
    values: dict[Any, Any] = {
        _ACCOUNTS.c.status: emailed_status(),
        _ACCOUNTS.c.failed_login_count: 0,
        _ACCOUNTS.c.locked_until: None,
    }
    if emailed_by is not None:
        values |= {_ACCOUNTS.c.credentials_emailed_at: now, _ACCOUNTS.c.credentials_emailed_by: emailed_by}
    params = [{"b_id": p.account_id, "b_hash": p.secret_hash, "b_expires": p.expires_at} for p in promotions]
    if mode == CredentialMode.PASSWORD:
        ours = _ACCOUNTS.c.pending_password_hash == bindparam("b_hash")
        values |= {
            _ACCOUNTS.c.password_hash: bindparam("b_hash"),
            _ACCOUNTS.c.temp_password_expires_at: bindparam("b_expires"),
            _ACCOUNTS.c.must_change_password: True,
            _ACCOUNTS.c.pending_password_hash: case((ours, null()), else_=_ACCOUNTS.c.pending_password_hash),
            _ACCOUNTS.c.pending_password_expires_at: case(
                (ours, null()), else_=_ACCOUNTS.c.pending_password_expires_at
            ),
        }
    else:  # one live credential per account: the link retires every emailed temporary password
        temporary = _ACCOUNTS.c.must_change_password.is_(True)
        values |= {
            _ACCOUNTS.c.password_hash: case((temporary, null()), else_=_ACCOUNTS.c.password_hash),
            _ACCOUNTS.c.temp_password_expires_at: None,
            _ACCOUNTS.c.pending_password_hash: None,
            _ACCOUNTS.c.pending_password_expires_at: None,
        }
    accounts = [{"b_id": p["b_id"]} for p in params] if mode == CredentialMode.LINK else params
    session.execute(update(_ACCOUNTS).where(_ACCOUNTS.c.id == bindparam("b_id")).values(values), accounts)
    if mode == CredentialMode.LINK:
        session.execute(
            update(_LINKS).where(_LINKS.c.token_hash == bindparam("b_hash")).values(sent_at=now),
            [{"b_hash": p["b_hash"]} for p in params],
        )
    # The newest credential replaces every other unused link of the account.
    open_links = and_(_LINKS.c.used_at.is_(None), _LINKS.c.revoked_at.is_(None))
    if (
        mode == CredentialMode.PASSWORD
    ):  # a password's hash is never a link's: every open link goes, in one statement
        accounts_links = _LINKS.c.account_id.in_([p.account_id for p in promotions])
        session.execute(update(_LINKS).where(open_links, accounts_links).values(revoked_at=now))
        return
    session.execute(
        update(_LINKS)
        .where(
            open_links, _LINKS.c.account_id == bindparam("b_id"), _LINKS.c.token_hash != bindparam("b_hash")
        )
        .values(revoked_at=now),
        [{"b_id": p["b_id"], "b_hash": p["b_hash"]} for p in params],
    )


def discard(
    session: Session, account_id: int, mode: CredentialMode, secret_hash: str, before: Pending | None
) -> None:
    """The credential's email was refused: it stops working, and the previously pending one is put back
    (unless expired), as its email may have reached the employee. The current password is left alone."""
    if mode == CredentialMode.LINK:
        session.execute(
            update(_LINKS)
            .where(_LINKS.c.token_hash == secret_hash, _LINKS.c.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
        return
    usable = before is not None and before.expires_at is not None and before.expires_at > utcnow()
    session.execute(
        update(_ACCOUNTS)
        .where(_ACCOUNTS.c.id == account_id, _ACCOUNTS.c.pending_password_hash == secret_hash)
        .values(
            pending_password_hash=before.secret_hash if usable and before else None,
            pending_password_expires_at=before.expires_at if usable and before else None,
        )
    )


def revoke_links(session: Session, account_id: int, now: datetime, keep: str | None = None) -> None:
    """Every unused, unrevoked set-password link of the account stops working (but `keep`)."""
    open_links = and_(
        _LINKS.c.account_id == account_id, _LINKS.c.used_at.is_(None), _LINKS.c.revoked_at.is_(None)
    )
    if keep is not None:
        open_links = and_(open_links, _LINKS.c.token_hash != keep)
    session.execute(update(_LINKS).where(open_links).values(revoked_at=now))


def set_password(session: Session, account_id: int, new_hash: str, now: datetime) -> None:
    """The employee chose a password: it replaces every temporary credential (password, pending, links)."""
    session.flush()
    session.execute(
        update(_ACCOUNTS)
        .where(_ACCOUNTS.c.id == account_id)
        .values(
            password_hash=new_hash,
            must_change_password=False,
            temp_password_expires_at=None,
            pending_password_hash=None,
            pending_password_expires_at=None,
            password_changed_at=now,
            failed_login_count=0,
            locked_until=None,
            status=AccountStatus.ACTIVE,
            session_version=_ACCOUNTS.c.session_version + 1,  # every session before this one ends
        )
    )
    revoke_links(session, account_id, now)


def usable_pending(account: Account, now: datetime) -> str | None:
    """The account's pending password hash if it has not expired."""
    expires = account.pending_password_expires_at
    return account.pending_password_hash if expires is not None and expires > now else None
