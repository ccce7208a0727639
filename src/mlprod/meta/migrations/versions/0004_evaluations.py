"""evaluations: reports stored with model versions, leaderboards with their pool snapshots

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "evaluation_reports",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("evaluation_set", sa.String(length=200), nullable=False),
        sa.Column("set_definition", sa.JSON(), nullable=False),
        sa.Column("dataset_commit", sa.String(length=64), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("who", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["model", "version"],
            ["model_versions.model", "model_versions.version"],
            name=op.f("fk_evaluation_reports_model_model_versions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evaluation_reports")),
    )
    with op.batch_alter_table("evaluation_reports", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_evaluation_reports_evaluation_set"), ["evaluation_set"])
        batch_op.create_index("ix_evaluation_reports_model_version", ["model", "version"])
    op.create_table(
        "leaderboards",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("profile", sa.String(length=200), nullable=False),
        sa.Column("evaluation_set", sa.String(length=200), nullable=False),
        sa.Column("snapshot", sa.JSON(), nullable=False),
        sa.Column("entries", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("who", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_leaderboards")),
    )
    with op.batch_alter_table("leaderboards", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_leaderboards_evaluation_set"), ["evaluation_set"])


def downgrade() -> None:
    op.drop_table("leaderboards")
    op.drop_table("evaluation_reports")
