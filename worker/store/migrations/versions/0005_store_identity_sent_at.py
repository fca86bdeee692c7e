"""One store, and what was sent: each store gets a random id (producers and workers of a
namespace compare it through Redis, so nobody works on a second store unnoticed), and each
request records when its message was published (``sent_at``; null while Redis was down or
full, so the scheduler sends it as soon as Redis takes messages again).

Revision ID: 0005
Revises: 0004
"""

import uuid

import sqlalchemy as sa
from alembic import op

from worker.store.models import UTCDateTime, utcnow

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    identity = op.create_table(
        "store_identity",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("store_id", sa.String(36), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.bulk_insert(identity, [{"id": 1, "store_id": str(uuid.uuid4()), "created_at": utcnow()}])
    with op.batch_alter_table("revocation_requests") as batch:
        batch.add_column(sa.Column("sent_at", UTCDateTime()))
    # Requests recorded before this revision were sent (or are found by the lost-message
    # checks): only new ones start unsent.
    op.execute("UPDATE revocation_requests SET sent_at = updated_at WHERE state <> 'scheduled'")
    op.create_index("ix_requests_unsent", "revocation_requests", ["state", "sent_at"])


def downgrade() -> None:
    op.drop_index("ix_requests_unsent", "revocation_requests")
    with op.batch_alter_table("revocation_requests") as batch:
        batch.drop_column("sent_at")
    op.drop_table("store_identity")
