"""SQLAlchemy models, the session factory and Alembic migrations."""

from models.accounts import Account, AccountStatus, Role, SetupLink, account_roles
from models.admins import Admin
from models.audit import AuditEvent
from models.base import Base, utcnow
from models.deliveries import (
    BatchSource,
    BatchStatus,
    CredentialBatch,
    CredentialMode,
    Delivery,
    DeliveryEvent,
    DeliveryStatus,
    Installation,
)
from models.directory import (
    Employee,
    fold_accents,
    full_name,
    make_search_text,
    name_sort_key,
    search_text_of,
)
from models.outbox import OutboxJob
from models.provisioning import NoticeChange, ScimNotice, ScimNoticeMark, ScimNoticePerson
from models.recovery import RecoveryRequest, RecoveryStatus
from models.scim import ScimToken
from models.session import make_engine, make_session_factory, rowcount, upgrade_database

__all__ = [
    "Account",
    "AccountStatus",
    "Admin",
    "AuditEvent",
    "Base",
    "BatchSource",
    "BatchStatus",
    "CredentialBatch",
    "CredentialMode",
    "Delivery",
    "DeliveryEvent",
    "DeliveryStatus",
    "Employee",
    "Installation",
    "NoticeChange",
    "OutboxJob",
    "RecoveryRequest",
    "RecoveryStatus",
    "Role",
    "ScimNotice",
    "ScimNoticeMark",
    "ScimNoticePerson",
    "ScimToken",
    "SetupLink",
    "account_roles",
    "fold_accents",
    "full_name",
    "make_engine",
    "make_search_text",
    "make_session_factory",
    "name_sort_key",
    "rowcount",
    "search_text_of",
    "upgrade_database",
    "utcnow",
]
