"""Initial schema: requests, batches, request history, webhook deliveries.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

from worker.store.models import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(200)),
        sa.Column("source", sa.String(500)),
        sa.Column("total", sa.Integer, nullable=False),
        sa.Column("requested_by", sa.String(200)),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "revocation_requests",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("idempotency_key", sa.String(200), nullable=False, unique=True),
        sa.Column("seat_id", sa.String(36), index=True),
        sa.Column("mode", sa.String(20), nullable=False),
        sa.Column("subscription_id", sa.String(36)),
        sa.Column("order_id", sa.String(36)),
        sa.Column("occupant_email", sa.String(320), index=True),
        sa.Column("occupant_member_id", sa.String(36)),
        sa.Column("occupant_customer_id", sa.String(36)),
        sa.Column("occupant_external_id", sa.String(200)),
        sa.Column("occupant_seen", sa.JSON),
        sa.Column("state", sa.String(20), nullable=False, index=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_http_status", sa.Integer),
        sa.Column("last_error", sa.Text),
        sa.Column("error_detail", sa.JSON),
        sa.Column("seat_snapshot", sa.JSON),
        sa.Column("requested_by", sa.String(200)),
        sa.Column("reason", sa.Text),
        sa.Column("batch_id", sa.String(36), sa.ForeignKey("batches.id")),
        sa.Column("portal_token_ref", sa.String(64)),
        sa.Column("effective_at", UTCDateTime()),
        sa.Column("lease_expires_at", UTCDateTime()),
        sa.Column("first_delete_at", UTCDateTime()),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime()),
    )
    op.create_index("ix_requests_state_updated", "revocation_requests", ["state", "updated_at"])
    op.create_index("ix_requests_batch_state", "revocation_requests", ["batch_id", "state"])
    op.create_table(
        "request_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "request_id", sa.String(36), sa.ForeignKey("revocation_requests.id"), index=True,
            nullable=False,
        ),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("detail", sa.JSON),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("webhook_id", sa.String(200), primary_key=True),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("response", sa.JSON, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("webhook_deliveries")
    op.drop_table("request_events")
    op.drop_table("revocation_requests")
    op.drop_table("batches")
