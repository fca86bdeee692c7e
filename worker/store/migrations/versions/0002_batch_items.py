"""Batch membership: a batch lists its requests, including ones that an earlier batch
already created with the same idempotency key (duplicates collapse to one request but
still count in every batch that asked for them).

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
        "batch_items",
        sa.Column("batch_id", sa.String(36), sa.ForeignKey("batches.id"), primary_key=True),
        sa.Column("line", sa.Integer, primary_key=True),
        sa.Column(
            "request_id", sa.String(36), sa.ForeignKey("revocation_requests.id"),
            nullable=False, index=True,
        ),
    )


def downgrade() -> None:
    op.drop_table("batch_items")
