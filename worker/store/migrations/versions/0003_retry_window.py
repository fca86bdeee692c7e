"""Retry window: a manual retry of a failed request starts a fresh retry budget while its
attempts and history carry on.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

from worker.store.models import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("revocation_requests") as batch:
        batch.add_column(sa.Column("window_started_at", UTCDateTime()))
        batch.add_column(
            sa.Column("attempts_before_window", sa.Integer, nullable=False, server_default="0")
        )
    op.create_index("ix_requests_lease", "revocation_requests", ["state", "lease_expires_at"])


def downgrade() -> None:
    op.drop_index("ix_requests_lease", "revocation_requests")
    with op.batch_alter_table("revocation_requests") as batch:
        batch.drop_column("attempts_before_window")
        batch.drop_column("window_started_at")
