"""versioned tables: tables, commits, refs (replace whole-table dataset snapshots)

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("dataset_versions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dataset_versions_dataset"))
    op.drop_table("dataset_versions")
    op.create_table(
        "data_tables",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("key", sa.JSON(), nullable=False),
        sa.Column("buckets", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("expectations", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("author", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_data_tables")),
    )
    op.create_table(
        "data_commits",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("table_name", sa.String(length=200), nullable=False),
        sa.Column("parents", sa.JSON(), nullable=False),
        sa.Column("operation", sa.String(length=20), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("author", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("num_rows", sa.BigInteger(), nullable=False),
        sa.Column("changes", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["table_name"], ["data_tables.name"], name=op.f("fk_data_commits_table_name_data_tables")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_data_commits")),
    )
    with op.batch_alter_table("data_commits", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_data_commits_table_name"), ["table_name"], unique=False)
    op.create_table(
        "data_refs",
        sa.Column("table_name", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("commit_id", sa.String(length=64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["commit_id"], ["data_commits.id"], name=op.f("fk_data_refs_commit_id_data_commits")
        ),
        sa.ForeignKeyConstraint(
            ["table_name"], ["data_tables.name"], name=op.f("fk_data_refs_table_name_data_tables")
        ),
        sa.PrimaryKeyConstraint("table_name", "name", name=op.f("pk_data_refs")),
    )


def downgrade() -> None:
    op.drop_table("data_refs")
    with op.batch_alter_table("data_commits", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_data_commits_table_name"))
    op.drop_table("data_commits")
    op.drop_table("data_tables")
    op.create_table(
        "dataset_versions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("dataset", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("artifact_sha256", sa.String(length=64), nullable=False),
        sa.Column("num_rows", sa.BigInteger(), nullable=False),
        sa.Column("schema", sa.JSON(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("author", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dataset_versions")),
        sa.UniqueConstraint("dataset", "version", name=op.f("uq_dataset_versions_dataset")),
    )
    with op.batch_alter_table("dataset_versions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_dataset_versions_dataset"), ["dataset"], unique=False)
