"""Engine and session factory, and running the migrations."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Connection, CursorResult, Engine, Result, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
OPTIONAL_INDEXES = frozenset({"ix_employees_search_text_trgm", "ix_employees_by_name_icu"})
"""Indexes a migration adds only where the database can have them (pg_trgm, ICU): the models do not
know them."""


def rowcount(result: Result[*tuple[Any, ...]]) -> int:
    """Rows an UPDATE or DELETE matched.

    Session.execute is typed to return a Result, but for an UPDATE or DELETE without RETURNING it
    returns a CursorResult, which has the count (sqlalchemy/sqlalchemy#9185).
    """
    return cast("CursorResult[*tuple[Any, ...]]", result).rowcount


def make_engine(url: str, pool_size: int = 40) -> Engine:
    """An engine for `url`; SQLite gets WAL, foreign keys and a busy timeout for concurrent senders."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            pool_size=pool_size,
            max_overflow=10,
            connect_args={"timeout": 30, "check_same_thread": False},
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    elif url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgres://")
    return create_engine(url, pool_size=pool_size, max_overflow=10, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded objects usable after commit."""
    return sessionmaker(engine, expire_on_commit=False)


def in_models(_object: Any, name: str | None, type_: str, reflected: bool, _compare_to: Any) -> bool:
    """Alembic's `include_object` for autogenerate: leave out the optional indexes the models do not know."""
    return not (type_ == "index" and reflected and name in OPTIONAL_INDEXES)


def alembic_config(connection: Connection) -> Config:
    """An Alembic configuration for the migrations in `models/migrations`, run on `connection`."""
    from alembic.config import Config  # imported on use: most commands never migrate

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def upgrade_database(engine: Engine, revision: str = "head") -> tuple[str | None, str | None]:
    """Run the Alembic migrations up to `revision` on `engine`; the revisions before and after."""
    from alembic import command
    from alembic.runtime.migration import MigrationContext

    with engine.begin() as connection:
        before = MigrationContext.configure(connection).get_current_revision()
        command.upgrade(alembic_config(connection), revision)
        return before, MigrationContext.configure(connection).get_current_revision()


def new_migration(engine: Engine, message: str) -> str:
    """Write a migration with what autogenerate finds between `engine`'s schema and the models; its path."""
    from alembic import command
    from alembic.script import ScriptDirectory

    numbered = [
        int(r.revision) for r in ScriptDirectory(str(MIGRATIONS_DIR)).walk_revisions() if r.revision.isdigit()
    ]
    rev_id = f"{max(numbered, default=0) + 1:04d}"  # the project numbers its migrations 0001, 0002...
    with engine.begin() as connection:
        script = command.revision(
            alembic_config(connection), message=message, autogenerate=True, rev_id=rev_id
        )
    assert script is not None and not isinstance(script, list)
    return str(script.path)
