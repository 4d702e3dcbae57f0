"""Self-Service accounts, their roles, and single-use set-password links."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Column, ForeignKey, Index, String, Table, func
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, utcnow
from models.directory import Employee


class AccountStatus(enum.StrEnum):
    PENDING = "pending"
    """Created, credentials never emailed."""
    INVITED = "invited"
    """Credentials emailed, first sign-in not done yet."""
    ACTIVE = "active"
    LOCKED = "locked"
    DISABLED = "disabled"


account_roles = Table(
    "account_roles",
    Base.metadata,
    Column("account_id", ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True),
    Column("role_id", ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True),
)


class Role(Base):
    """A named role in the Self-Service portal."""

    __tablename__ = "roles"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)

    def __repr__(self) -> str:
        return f"<Role {self.name}>"


class Account(Base):
    """An employee's Self-Service account (at most one per employee)."""

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    employee_id: Mapped[int] = mapped_column(ForeignKey("employees.id"), unique=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    status: Mapped[str] = mapped_column(String(16), default=AccountStatus.PENDING, index=True)

    password_hash: Mapped[str | None] = mapped_column(String(255))
    """Hash of the password that signs in now; empty until credentials were first emailed."""
    must_change_password: Mapped[bool] = mapped_column(default=False)
    temp_password_expires_at: Mapped[datetime | None]
    pending_password_hash: Mapped[str | None] = mapped_column(String(255))
    """Hash of a temporary password being handed to the mail API; promoted once accepted."""
    pending_password_expires_at: Mapped[datetime | None]
    sending_delivery_id: Mapped[int | None] = mapped_column(index=True)
    """The delivery whose credential email is in flight (claimed under a lease), if any."""
    sending_until: Mapped[datetime | None]
    """When that claim's lease runs out: after it, another delivery may claim the account."""

    credentials_emailed_at: Mapped[datetime | None]
    credentials_emailed_by: Mapped[str | None] = mapped_column(String(100))
    failed_login_count: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[datetime | None]
    last_login_at: Mapped[datetime | None]
    first_sign_in_at: Mapped[datetime | None]
    """The activation funnel's middle step: emailed -> first sign-in -> password changed."""
    password_changed_at: Mapped[datetime | None]
    session_version: Mapped[int] = mapped_column(default=0, server_default="0")
    """Portal sessions carry the version they started under; raising it ends every one of them."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    employee: Mapped[Employee] = relationship(back_populates="account")
    roles: Mapped[list[Role]] = relationship(secondary=account_roles, order_by=Role.name)

    def __repr__(self) -> str:
        return f"<Account {self.username} {self.status}>"


# Usernames are compared ignoring case (`check_username`, SCIM's `userName eq`).
Index("ix_accounts_lower_username", func.lower(Account.username))


class SetupLink(Base):
    """A single-use link to set a password (CREDENTIAL_MODE=link); only the token's hash is kept."""

    __tablename__ = "setup_links"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
    used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    account: Mapped[Account] = relationship()

    def __repr__(self) -> str:
        return f"<SetupLink {self.id} account={self.account_id}>"
