"""Identity and proof: whether the end state was verified, the seat the producer named when
the worker revoked another seat of the same person, whether the request was guarded, and the
reason for the outcome (``needs_review`` says there what to check).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

from worker.store.models import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("revocation_requests") as batch:
        batch.add_column(
            sa.Column("guarded", sa.Boolean, nullable=False, server_default=sa.true())
        )
        batch.add_column(sa.Column("requested_seat_id", sa.String(36)))
        batch.add_column(sa.Column("outcome_detail", sa.Text))
        batch.add_column(sa.Column("end_state_verified", sa.Boolean))
        batch.add_column(sa.Column("verified_at", UTCDateTime()))


def downgrade() -> None:
    with op.batch_alter_table("revocation_requests") as batch:
        for column in ("verified_at", "end_state_verified", "outcome_detail",
                       "requested_seat_id", "guarded"):
            batch.drop_column(column)
