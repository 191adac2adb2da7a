"""The schema comes only from migrations, which go up and down on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import create_engine, inspect

import app.models  # noqa: F401
from app.core.db import Base
from app.core.migrate import alembic_config, downgrade, upgrade


def test_migrations_upgrade_downgrade_and_match_the_models(database_url) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine = create_engine(database_url)
    downgrade(database_url, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    upgrade(database_url, "head")
    assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], diff
    assert alembic_config(database_url).get_main_option("script_location")
    engine.dispose()
