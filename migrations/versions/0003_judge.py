"""judge

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04 16:48:26.298640
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "judge_cache",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", JSON_TYPE, nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_judge_cache")),
    )
    op.create_table(
        "judge_configs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=20), nullable=False),
        sa.Column("model", sa.String(length=500), nullable=False),
        sa.Column("base_url", sa.String(length=500), nullable=True),
        sa.Column("api_key_env", sa.String(length=100), nullable=True),
        sa.Column("template", sa.Text(), nullable=False),
        sa.Column("sampling", JSON_TYPE, nullable=False),
        sa.Column("confidence_threshold", sa.Float(), nullable=False),
        sa.Column("review_fraction", sa.Float(), nullable=False),
        sa.Column("max_concurrency", sa.Integer(), nullable=False),
        sa.Column("requests_per_minute", sa.Integer(), nullable=False),
        sa.Column("batch_size", sa.Integer(), nullable=False),
        sa.Column("judge_rules", sa.Boolean(), nullable=False),
        sa.Column("show_suggestions", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_judge_configs_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_judge_configs")),
        sa.UniqueConstraint("project_id", name=op.f("uq_judge_configs_project_id")),
    )
    op.create_table(
        "judge_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("rule_set_id", sa.Integer(), nullable=True),
        sa.Column("config", JSON_TYPE, nullable=False),
        sa.Column("selection", JSON_TYPE, nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["users.id"],
            name=op.f("fk_judge_runs_created_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_judge_runs_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["rule_set_id"],
            ["rule_sets.id"],
            name=op.f("fk_judge_runs_rule_set_id_rule_sets"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_judge_runs")),
    )
    with op.batch_alter_table("judge_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_judge_runs_project_id"), ["project_id"], unique=False)

    op.create_table(
        "judge_run_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("claimed_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["items.id"],
            name=op.f("fk_judge_run_items_item_id_items"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["judge_runs.id"],
            name=op.f("fk_judge_run_items_run_id_judge_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_judge_run_items")),
        sa.UniqueConstraint("run_id", "item_id", name=op.f("uq_judge_run_items_run_id_item_id")),
    )
    with op.batch_alter_table("judge_run_items", schema=None) as batch_op:
        batch_op.create_index("ix_judge_run_items_run_status", ["run_id", "status"], unique=False)

    op.create_table(
        "ai_labels",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("rule_set_id", sa.Integer(), nullable=True),
        sa.Column("response_a_id", sa.Integer(), nullable=True),
        sa.Column("response_b_id", sa.Integer(), nullable=True),
        sa.Column("p_a_first", sa.Float(), nullable=True),
        sa.Column("p_a_second", sa.Float(), nullable=True),
        sa.Column("preference", sa.Float(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("consistent", sa.Boolean(), nullable=False),
        sa.Column("choice", sa.String(length=4), nullable=False),
        sa.Column("ranking", JSON_TYPE, nullable=True),
        sa.Column("pairs", JSON_TYPE, nullable=True),
        sa.Column("rule_verdicts", JSON_TYPE, nullable=False),
        sa.Column("rationale", sa.Text(), nullable=True),
        sa.Column("route", sa.String(length=20), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("latency_ms", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["item_id"], ["items.id"], name=op.f("fk_ai_labels_item_id_items"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_ai_labels_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["response_a_id"],
            ["responses.id"],
            name=op.f("fk_ai_labels_response_a_id_responses"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["response_b_id"],
            ["responses.id"],
            name=op.f("fk_ai_labels_response_b_id_responses"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["rule_set_id"],
            ["rule_sets.id"],
            name=op.f("fk_ai_labels_rule_set_id_rule_sets"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["judge_runs.id"],
            name=op.f("fk_ai_labels_run_id_judge_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ai_labels")),
        sa.UniqueConstraint("run_id", "item_id", name=op.f("uq_ai_labels_run_id_item_id")),
    )
    with op.batch_alter_table("ai_labels", schema=None) as batch_op:
        batch_op.create_index("ix_ai_labels_item", ["item_id", "id"], unique=False)

    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("ai_accepted", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(
            sa.Column("queue_rank", sa.Integer(), server_default="1", nullable=False)
        )
        batch_op.create_index(
            "ix_items_queue", ["project_id", "ready", "queue_rank", "id"], unique=False
        )

    with op.batch_alter_table("rules", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("severity", sa.String(length=10), server_default="medium", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("rules", schema=None) as batch_op:
        batch_op.drop_column("severity")

    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.drop_index("ix_items_queue")
        batch_op.drop_column("queue_rank")
        batch_op.drop_column("ai_accepted")

    with op.batch_alter_table("ai_labels", schema=None) as batch_op:
        batch_op.drop_index("ix_ai_labels_item")

    op.drop_table("ai_labels")
    with op.batch_alter_table("judge_run_items", schema=None) as batch_op:
        batch_op.drop_index("ix_judge_run_items_run_status")

    op.drop_table("judge_run_items")
    with op.batch_alter_table("judge_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_judge_runs_project_id"))

    op.drop_table("judge_runs")
    op.drop_table("judge_configs")
    op.drop_table("judge_cache")
