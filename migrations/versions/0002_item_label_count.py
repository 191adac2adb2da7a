"""item label count

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04 16:31:21.591824
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("label_count", sa.Integer(), server_default="0", nullable=False)
        )
    # Existing items get their count from the labels already stored.
    op.execute(
        "UPDATE items SET label_count = "
        "(SELECT count(*) FROM human_labels WHERE human_labels.item_id = items.id)"
    )


def downgrade() -> None:
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.drop_column("label_count")
