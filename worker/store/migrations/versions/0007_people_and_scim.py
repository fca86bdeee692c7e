"""Offboarding a person, and SCIM tenants.

A request is now of a ``kind``: ``seat`` (one seat, as before) or ``person`` (every seat a
person holds in a scope: a Polar customer by id or external id, or the whole
organization). A person request's seats are revoked by child requests (``parent_id``);
``discovered`` lists the seats its discovery found. ``scim_tenants`` (one per Polar
customer, bearer token stored as a SHA-256 digest) and ``scim_users`` (the identity
mapping an identity provider provisions) back the SCIM 2.0 endpoint.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

from worker.store.models import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("revocation_requests") as batch:
        batch.add_column(sa.Column("kind", sa.String(10), nullable=False,
                                   server_default="seat"))
        batch.add_column(sa.Column("parent_id", sa.String(36), nullable=True))
        batch.add_column(sa.Column("scope_customer_id", sa.String(36), nullable=True))
        batch.add_column(sa.Column("scope_external_customer_id", sa.String(200),
                                   nullable=True))
        batch.add_column(sa.Column("scope_all_customers", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
        batch.add_column(sa.Column("discovered", sa.JSON(), nullable=True))
        batch.create_foreign_key("fk_requests_parent", "revocation_requests",
                                 ["parent_id"], ["id"])
        batch.create_index("ix_revocation_requests_parent_id", ["parent_id"])
    op.create_table(
        "scim_tenants",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("customer_id", sa.String(36), nullable=True),
        sa.Column("customer_external_id", sa.String(200), nullable=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_by", sa.String(200), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "scim_users",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("tenant_id", sa.String(36), sa.ForeignKey("scim_tenants.id"),
                  nullable=False),
        sa.Column("user_name", sa.String(320), nullable=False),
        sa.Column("external_id", sa.String(200), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("resource", sa.JSON(), nullable=False),
        sa.Column("deactivations", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_request_id", sa.String(36), nullable=True),
        sa.Column("deleted", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("tenant_id", "user_name", name="uq_scim_users_tenant_user_name"),
    )
    op.create_index("ix_scim_users_tenant_id", "scim_users", ["tenant_id"])


def downgrade() -> None:
    op.drop_index("ix_scim_users_tenant_id", "scim_users")
    op.drop_table("scim_users")
    op.drop_table("scim_tenants")
    with op.batch_alter_table("revocation_requests") as batch:
        batch.drop_index("ix_revocation_requests_parent_id")
        batch.drop_constraint("fk_requests_parent", type_="foreignkey")
        for column in ("discovered", "scope_all_customers", "scope_external_customer_id",
                       "scope_customer_id", "parent_id", "kind"):
            batch.drop_column(column)
