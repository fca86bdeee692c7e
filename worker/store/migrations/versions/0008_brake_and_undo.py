"""The brake and the undo.

``held_scope`` names the breaker scope (``customer:<id>`` or ``org``) that held a request
before its DELETE (state ``held``). A restore is a request of ``kind=restore``:
``restores_id`` is the request it undoes, ``assigned_seat_id`` the seat Polar assigned (it
can differ from the revoked one: Polar reuses revoked seat rows). A batch over
``APPROVAL_MIN_ROWS`` waits for a second identity: ``approval`` is ``awaiting``,
``approved`` or ``rejected`` (null: no approval needed), with who decided and when.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

from worker.store.models import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("revocation_requests") as batch:
        batch.add_column(sa.Column("held_scope", sa.String(200), nullable=True))
        batch.add_column(sa.Column("restores_id", sa.String(36), nullable=True))
        batch.add_column(sa.Column("assigned_seat_id", sa.String(36), nullable=True))
        batch.create_foreign_key("fk_requests_restores", "revocation_requests",
                                 ["restores_id"], ["id"])
        batch.create_index("ix_revocation_requests_held_scope", ["held_scope"])
        batch.create_index("ix_revocation_requests_restores_id", ["restores_id"])
    with op.batch_alter_table("batches") as batch:
        batch.add_column(sa.Column("approval", sa.String(20), nullable=True))
        batch.add_column(sa.Column("approved_by", sa.String(200), nullable=True))
        batch.add_column(sa.Column("approved_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.drop_column("approved_at")
        batch.drop_column("approved_by")
        batch.drop_column("approval")
    with op.batch_alter_table("revocation_requests") as batch:
        batch.drop_index("ix_revocation_requests_restores_id")
        batch.drop_index("ix_revocation_requests_held_scope")
        batch.drop_constraint("fk_requests_restores", type_="foreignkey")
        batch.drop_column("assigned_seat_id")
        batch.drop_column("restores_id")
        batch.drop_column("held_scope")
