"""Alembic environment: runs on the connection `upgrade_database` hands over, else on DATABASE_URL."""

from alembic import context
from sqlalchemy.engine import Connection

from models import Base
from models.session import in_models


def run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=True,
        compare_type=True,
        include_object=in_models,
    )
    with context.begin_transaction():
        context.run_migrations()


given = context.config.attributes.get("connection")
if given is not None:
    run(given)
else:
    from bot.settings import get_settings
    from models.session import make_engine

    with make_engine(get_settings().database_url).begin() as connection:
        run(connection)
