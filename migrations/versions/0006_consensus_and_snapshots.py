"""consensus, gold items, adjudication, labeler reliability, export snapshots

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 18:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _fk(table: str, column: str, target: str, ondelete: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([column], [f"{target}.id"],
                                   name=f"fk_{table}_{column}_{target}", ondelete=ondelete)


def upgrade() -> None:
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("consensus_stale", sa.Boolean(),
                                      server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column("gold", JSON_TYPE, nullable=True))
        batch_op.add_column(sa.Column("is_gold", sa.Boolean(), server_default=sa.false(),
                                      nullable=False))
        batch_op.create_index("ix_items_consensus_stale", ["project_id", "consensus_stale"],
                              unique=False)
    # Items labeled before consensus existed get theirs on the first refresh.
    op.execute("UPDATE items SET consensus_stale = true")
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.add_column(sa.Column("weighting", sa.String(length=20), server_default="none",
                                      nullable=False))
        batch_op.add_column(sa.Column("conflict_threshold", sa.Float(), server_default="0.6",
                                      nullable=False))
        batch_op.add_column(sa.Column("gold_rate", sa.Float(), server_default="0.1",
                                      nullable=False))

    op.create_table(
        "item_consensus",
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=True),
        sa.Column("ranking", JSON_TYPE, nullable=True),
        sa.Column("pairs", JSON_TYPE, nullable=False),
        sa.Column("pair_count", sa.Integer(), nullable=False),
        sa.Column("agreement", sa.Float(), nullable=True),
        sa.Column("human_labels", sa.Integer(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("rule_set_id", sa.Integer(), nullable=True),
        sa.Column("cycle", JSON_TYPE, nullable=True),
        sa.Column("decided_at", sa.DateTime(), nullable=True),
        sa.Column("computed_at", sa.DateTime(), nullable=False),
        _fk("item_consensus", "item_id", "items", "CASCADE"),
        _fk("item_consensus", "project_id", "projects", "CASCADE"),
        _fk("item_consensus", "rule_set_id", "rule_sets", "SET NULL"),
        sa.PrimaryKeyConstraint("item_id", name="pk_item_consensus"),
    )
    op.create_index("ix_item_consensus_project_status", "item_consensus",
                    ["project_id", "status"], unique=False)

    op.create_table(
        "adjudications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("reviewer_id", sa.Integer(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=64), nullable=False),
        sa.Column("ranking", JSON_TYPE, nullable=True),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        _fk("adjudications", "item_id", "items", "CASCADE"),
        _fk("adjudications", "project_id", "projects", "CASCADE"),
        _fk("adjudications", "reviewer_id", "users", "SET NULL"),
        sa.PrimaryKeyConstraint("id", name="pk_adjudications"),
        sa.UniqueConstraint("idempotency_key", name="uq_adjudications_idempotency_key"),
    )
    op.create_index("ix_adjudications_item", "adjudications", ["item_id", "id"], unique=False)
    op.create_index("ix_adjudications_project_id", "adjudications", ["project_id"],
                    unique=False)

    op.create_table(
        "labeler_reliability",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("accuracy", sa.Float(), nullable=False),
        sa.Column("weight", sa.Float(), nullable=False),
        sa.Column("comparisons", sa.Integer(), nullable=False),
        sa.Column("computed_at", sa.DateTime(), nullable=False),
        _fk("labeler_reliability", "project_id", "projects", "CASCADE"),
        _fk("labeler_reliability", "user_id", "users", "CASCADE"),
        sa.PrimaryKeyConstraint("project_id", "user_id", name="pk_labeler_reliability"),
    )

    op.create_table(
        "export_snapshots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("lineage", sa.String(length=16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("format", sa.String(length=30), nullable=False),
        sa.Column("container", sa.String(length=10), nullable=False),
        sa.Column("filters", JSON_TYPE, nullable=False),
        sa.Column("split", JSON_TYPE, nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("owner", sa.String(length=32), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=True),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("manifest", JSON_TYPE, nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("path", sa.String(length=500), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        _fk("export_snapshots", "created_by_id", "users", "SET NULL"),
        _fk("export_snapshots", "project_id", "projects", "CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_export_snapshots"),
        sa.UniqueConstraint("project_id", "lineage", "version",
                            name="uq_export_snapshots_project_id_lineage_version"),
    )
    op.create_index("ix_export_snapshots_project_id", "export_snapshots", ["project_id", "id"],
                    unique=False)


def downgrade() -> None:
    op.drop_index("ix_export_snapshots_project_id", table_name="export_snapshots")
    op.drop_table("export_snapshots")
    op.drop_table("labeler_reliability")
    op.drop_index("ix_adjudications_project_id", table_name="adjudications")
    op.drop_index("ix_adjudications_item", table_name="adjudications")
    op.drop_table("adjudications")
    op.drop_index("ix_item_consensus_project_status", table_name="item_consensus")
    op.drop_table("item_consensus")
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.drop_column("gold_rate")
        batch_op.drop_column("conflict_threshold")
        batch_op.drop_column("weighting")
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.drop_index("ix_items_consensus_stale")
        batch_op.drop_column("is_gold")
        batch_op.drop_column("gold")
        batch_op.drop_column("consensus_stale")
