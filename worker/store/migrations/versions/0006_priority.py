"""Priority lanes: every request is ``urgent`` (single requests: a termination) or ``bulk``
(batch rows). Urgent work overtakes bulk work in the broker and the rate limiter.

Requests recorded before this revision get ``bulk`` when they belong to a batch, else
``urgent``.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("revocation_requests") as batch:
        batch.add_column(sa.Column("priority", sa.String(10), nullable=False,
                                   server_default="urgent"))
    op.execute("UPDATE revocation_requests SET priority = 'bulk' WHERE batch_id IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table("revocation_requests") as batch:
        batch.drop_column("priority")
