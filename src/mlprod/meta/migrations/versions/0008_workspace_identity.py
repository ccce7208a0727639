"""workspace identity: the random id shared by a metadata database and its artifact store

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workspace_identity",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workspace_identity")),
    )


def downgrade() -> None:
    op.drop_table("workspace_identity")
