"""The plugin's own tables.

They live in Galaxy's database but in their own metadata, created and upgraded only by the
plugin's migrations (``migrations/``, version table ``galaxy_cloud_storage_alembic_version``), so
Galaxy's migrations and the plugin's never touch each other. Foreign keys to Galaxy's tables are
declared in the migrations only, with ON DELETE CASCADE, so that Galaxy deleting a user or an OIDC
identity never fails because of the plugin.
"""

from datetime import datetime, timezone
from typing import Optional

from sqlalchemy import DateTime, Integer, JSON, MetaData, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

VERSION_TABLE = "galaxy_cloud_storage_alembic_version"


def now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    metadata = MetaData()


class CloudAuthz(Base):
    """A user's authorization for Galaxy to reach one cloud on their behalf."""

    __tablename__ = "cloud_storage_authz"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(Integer, index=True)
    # oidc_user_authnz_tokens.id, the identity whose id_token is exchanged; None in stored-secret modes
    authn_id: Mapped[Optional[int]] = mapped_column(Integer, index=True)
    provider: Mapped[str] = mapped_column(String(32))
    # the public part of the config; secret fields are in Galaxy's vault only
    config: Mapped[dict] = mapped_column(JSON)
    # names (never values) of the fields kept in the vault
    vaulted_fields: Mapped[list] = mapped_column(JSON, default=list)
    # sha256 of provider, identity and canonical public config: finds duplicates
    config_digest: Mapped[str] = mapped_column(String(64), index=True)
    description: Mapped[Optional[str]] = mapped_column(Text)
    create_time: Mapped[datetime] = mapped_column(DateTime, default=now)
    update_time: Mapped[datetime] = mapped_column(DateTime, default=now, onupdate=now)
    last_activity: Mapped[datetime] = mapped_column(DateTime, default=now)


class JobTicket(Base):
    """A transfer job's one-time ticket for its credentials, which the job redeems when it starts
    (tickets.py): only the ticket's SHA-256 is kept, and the row goes when it is redeemed."""

    __tablename__ = "cloud_storage_job_ticket"

    job_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # the authorization the job's request names (its parameter), which the ticket mints for
    authz_id: Mapped[int] = mapped_column(Integer)
    ticket_sha256: Mapped[str] = mapped_column(String(64))
    create_time: Mapped[datetime] = mapped_column(DateTime, default=now)
