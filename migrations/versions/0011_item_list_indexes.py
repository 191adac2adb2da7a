"""indexes for the item list (keyset pages per filter) and for progress without a table scan

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 22:00:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_items_project_ready_label_count", "items",
                    ["project_id", "ready", "label_count", "id"])
    op.create_index("ix_items_project_gold", "items", ["project_id", "ready", "is_gold", "id"])
    op.create_index("ix_items_project_round", "items", ["project_id", "ready", "round", "id"])
    op.drop_index("ix_item_consensus_project_status", table_name="item_consensus")
    op.create_index("ix_item_consensus_project_status", "item_consensus",
                    ["project_id", "status", "item_id"])
    op.create_index("ix_item_consensus_project_source", "item_consensus",
                    ["project_id", "source", "item_id"])
    op.create_index("ix_assignments_project_status_expires", "assignments",
                    ["project_id", "status", "expires_at"])
    op.create_index("ix_human_labels_project_user_time", "human_labels",
                    ["project_id", "user_id", "time_spent_ms"])


def downgrade() -> None:
    op.drop_index("ix_human_labels_project_user_time", table_name="human_labels")
    op.drop_index("ix_assignments_project_status_expires", table_name="assignments")
    op.drop_index("ix_item_consensus_project_source", table_name="item_consensus")
    op.drop_index("ix_item_consensus_project_status", table_name="item_consensus")
    op.create_index("ix_item_consensus_project_status", "item_consensus",
                    ["project_id", "status"])
    op.drop_index("ix_items_project_round", table_name="items")
    op.drop_index("ix_items_project_gold", table_name="items")
    op.drop_index("ix_items_project_ready_label_count", table_name="items")
