"""Create cloud_storage_authz

Revision ID: a1c0f7e2b9d4
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "a1c0f7e2b9d4"
down_revision = None
branch_labels = None
depends_on = None

TABLE = "cloud_storage_authz"


def upgrade():
    op.create_table(
        TABLE,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "user_id",
            sa.Integer,
            sa.ForeignKey("galaxy_user.id", ondelete="CASCADE", name="cloud_storage_authz_user_id_fkey"),
            nullable=False,
        ),
        sa.Column(
            "authn_id",
            sa.Integer,
            sa.ForeignKey("oidc_user_authnz_tokens.id", ondelete="CASCADE", name="cloud_storage_authz_authn_id_fkey"),
            nullable=True,
        ),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("vaulted_fields", sa.JSON, nullable=False),
        sa.Column("config_digest", sa.String(64), nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("create_time", sa.DateTime, nullable=False),
        sa.Column("update_time", sa.DateTime, nullable=False),
        sa.Column("last_activity", sa.DateTime, nullable=False),
    )
    op.create_index("ix_cloud_storage_authz_user_id", TABLE, ["user_id"])
    op.create_index("ix_cloud_storage_authz_authn_id", TABLE, ["authn_id"])
    op.create_index("ix_cloud_storage_authz_config_digest", TABLE, ["config_digest"])


def downgrade():
    op.drop_table(TABLE)
