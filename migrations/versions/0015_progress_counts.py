"""progress_counts: a big project's last progress recount, shared by every web process

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05 07:30:00.000000

Above 20k items a dashboard view serves the last full recount if it is under 10 s old. That
recount lived in each web process's memory, so N processes recounted N times as often and
could show different numbers; it is now a row in the database.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "progress_counts",
        sa.Column("project_id", sa.Integer(),
                  sa.ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("counted_at", sa.DateTime(), nullable=False),
        sa.Column("items", sa.Integer(), nullable=False),
        sa.Column("counts", JSON_TYPE, nullable=False),
        sa.Column("refresh_started_at", sa.DateTime(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("progress_counts")
