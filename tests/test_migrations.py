"""The migrations and the models describe the same schema, on each backend."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from models import Base, make_engine
from models.session import in_models


def test_autogenerate_finds_no_difference_between_models_and_migrations(database_url: str) -> None:
    """A model changed without a migration (or the reverse) shows up here, before it reaches a database."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "include_object": in_models}
            )
            differences = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert differences == [], f"run `credbot db revision -m ...` (see the README): {differences}"


def test_the_database_is_at_the_newest_revision(database_url: str) -> None:
    from alembic.script import ScriptDirectory

    from models.session import MIGRATIONS_DIR

    heads = ScriptDirectory(str(MIGRATIONS_DIR)).get_heads()
    assert len(heads) == 1, f"the migrations have more than one head: {heads}"
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            assert connection.scalar(sa.text("SELECT version_num FROM alembic_version")) == heads[0]
    finally:
        engine.dispose()
