"""generation runs and rounds

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 19:03:44.940649
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "generation_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("source_round", sa.Integer(), nullable=True),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("k", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=20), nullable=False),
        sa.Column("model", sa.String(length=1000), nullable=False),
        sa.Column("checkpoint_id", sa.Integer(), nullable=True),
        sa.Column("base_url", sa.String(length=500), nullable=True),
        sa.Column("api_key_env", sa.String(length=100), nullable=True),
        sa.Column("sampling", JSON_TYPE, nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("owner", sa.String(length=32), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=True),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["checkpoint_id"],
            ["model_checkpoints.id"],
            name=op.f("fk_generation_runs_checkpoint_id_model_checkpoints"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["users.id"],
            name=op.f("fk_generation_runs_created_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_generation_runs_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_generation_runs")),
    )
    with op.batch_alter_table("generation_runs", schema=None) as batch_op:
        batch_op.create_index("ix_generation_runs_project_id", ["project_id", "id"], unique=False)

    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("round", sa.Integer(), server_default="1", nullable=False))
        batch_op.add_column(sa.Column("generation_run_id", sa.Integer(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_items_generation_run_id"), ["generation_run_id"], unique=False
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_items_generation_run_id_generation_runs"),
            "generation_runs",
            ["generation_run_id"],
            ["id"],
            ondelete="SET NULL",
        )

    with op.batch_alter_table("responses", schema=None) as batch_op:
        batch_op.add_column(sa.Column("generation_run_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_responses_generation_run_id_generation_runs"),
            "generation_runs",
            ["generation_run_id"],
            ["id"],
            ondelete="SET NULL",
        )


def downgrade() -> None:
    with op.batch_alter_table("responses", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_responses_generation_run_id_generation_runs"), type_="foreignkey"
        )
        batch_op.drop_column("generation_run_id")

    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_items_generation_run_id_generation_runs"), type_="foreignkey"
        )
        batch_op.drop_index(batch_op.f("ix_items_generation_run_id"))
        batch_op.drop_column("generation_run_id")
        batch_op.drop_column("round")

    with op.batch_alter_table("generation_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_generation_runs_project_id")

    op.drop_table("generation_runs")
