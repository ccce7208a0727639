"""runs, version tags and metrics, exports, alias actions

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("lineage", sa.JSON(), nullable=False),
        sa.Column("code_version", sa.String(length=100), nullable=True),
        sa.Column("packages", sa.JSON(), nullable=False),
        sa.Column("duration_seconds", sa.Float(), nullable=True),
        sa.Column("peak_memory_mb", sa.Float(), nullable=True),
        sa.Column("model_version", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("who", sa.String(length=200), nullable=False),
        sa.Column("host", sa.String(length=200), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
    )
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_runs_model"), ["model"], unique=False)

    op.create_table(
        "model_exports",
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("format", sa.String(length=50), nullable=False),
        sa.Column("artifact_sha256", sa.String(length=64), nullable=False),
        sa.Column("parity_max_abs_diff", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["model", "version"],
            ["model_versions.model", "model_versions.version"],
            name=op.f("fk_model_exports_model_model_versions"),
        ),
        sa.PrimaryKeyConstraint("model", "version", "format", name=op.f("pk_model_exports")),
    )
    op.create_table(
        "model_version_metrics",
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["model", "version"],
            ["model_versions.model", "model_versions.version"],
            name=op.f("fk_model_version_metrics_model_model_versions"),
        ),
        sa.PrimaryKeyConstraint("model", "version", "key", name=op.f("pk_model_version_metrics")),
    )
    with op.batch_alter_table("model_version_metrics", schema=None) as batch_op:
        batch_op.create_index("ix_model_version_metrics_key_value", ["key", "value"], unique=False)

    op.create_table(
        "model_version_tags",
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("value", sa.String(length=500), nullable=False),
        sa.ForeignKeyConstraint(
            ["model", "version"],
            ["model_versions.model", "model_versions.version"],
            name=op.f("fk_model_version_tags_model_model_versions"),
        ),
        sa.PrimaryKeyConstraint("model", "version", "key", name=op.f("pk_model_version_tags")),
    )
    with op.batch_alter_table("model_version_tags", schema=None) as batch_op:
        batch_op.create_index("ix_model_version_tags_key_value", ["key", "value"], unique=False)

    with op.batch_alter_table("alias_history", schema=None) as batch_op:
        batch_op.add_column(sa.Column("action", sa.String(length=20), server_default="set", nullable=False))

    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("description", sa.Text(), server_default="", nullable=False))
        batch_op.add_column(sa.Column("run_id", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("sample_sha256", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.drop_column("sample_sha256")
        batch_op.drop_column("run_id")
        batch_op.drop_column("description")

    with op.batch_alter_table("alias_history", schema=None) as batch_op:
        batch_op.drop_column("action")

    with op.batch_alter_table("model_version_tags", schema=None) as batch_op:
        batch_op.drop_index("ix_model_version_tags_key_value")

    op.drop_table("model_version_tags")
    with op.batch_alter_table("model_version_metrics", schema=None) as batch_op:
        batch_op.drop_index("ix_model_version_metrics_key_value")

    op.drop_table("model_version_metrics")
    op.drop_table("model_exports")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_runs_model"))

    op.drop_table("runs")
