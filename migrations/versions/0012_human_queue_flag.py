"""items.in_queue: the human queue's index holds only items that still want labels

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 22:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("in_queue", sa.Boolean(), server_default=sa.true(),
                                      nullable=False))
    # Fewer labels than the project's k, not AI-accepted, not gold (as the app writes it).
    op.execute(
        "UPDATE items SET in_queue = (label_count < (SELECT overlap_k FROM projects "
        "WHERE projects.id = items.project_id) AND NOT ai_accepted AND NOT is_gold)")
    op.drop_index("ix_items_queue", table_name="items")
    op.create_index("ix_items_human_queue", "items",
                    ["project_id", "ready", "in_queue", "queue_rank", "id"])


def downgrade() -> None:
    op.drop_index("ix_items_human_queue", table_name="items")
    op.create_index("ix_items_queue", "items", ["project_id", "ready", "queue_rank", "id"])
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.drop_column("in_queue")
