"""Create cloud_storage_job_ticket: the one-time tickets transfer jobs redeem for credentials

Revision ID: c3d4e5f6a7b8
Revises: a1c0f7e2b9d4
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "c3d4e5f6a7b8"
down_revision = "a1c0f7e2b9d4"
branch_labels = None
depends_on = None

TABLE = "cloud_storage_job_ticket"


def upgrade():
    op.create_table(
        TABLE,
        sa.Column(
            "job_id",
            sa.Integer,
            sa.ForeignKey("job.id", ondelete="CASCADE", name="cloud_storage_job_ticket_job_id_fkey"),
            primary_key=True,
        ),
        sa.Column("authz_id", sa.Integer, nullable=False),
        sa.Column("ticket_sha256", sa.String(64), nullable=False),
        sa.Column("create_time", sa.DateTime, nullable=False),
    )


def downgrade():
    op.drop_table(TABLE)
