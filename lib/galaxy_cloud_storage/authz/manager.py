"""CloudAuthzManager: a user's cloud authorization records, and their secrets in Galaxy's vault."""

import hashlib
import json
import logging
from typing import Any, Optional

from galaxy import exceptions
from galaxy.model import UserAuthnzToken
from galaxy.security.vault import is_vault_configured, Vault
from pydantic import ValidationError
from sqlalchemy import select

from ..config import PluginConfig
from ..model import CloudAuthz, now
from ..providers import cloud
from ..providers.cloud import RecordNotAllowed
from ..providers.settings import ProviderAuthzConfig, REDACTED
from ..schema import CloudAuthzResponse, CreateCloudAuthzPayload, UpdateCloudAuthzPayload

log = logging.getLogger(__name__)

NOT_FOUND = "Cloud authorization not found."
IDENTITY_NOT_FOUND = "OpenID Connect identity (authn_id) not found among yours; list yours with GET /authnz/."


def vault_key(authz: CloudAuthz, field: str) -> str:
    return f"user/{authz.user_id}/cloud_storage/authz/{authz.id}/{field}"


def format_validation_error(error: ValidationError, prefix: str) -> str:
    parts = []
    for item in error.errors():
        location = ".".join(str(p) for p in (prefix, *item["loc"]))
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown field"
        parts.append(f"{location}: {message}")
    return "; ".join(parts)


class CloudAuthzManager:
    def __init__(self, config: PluginConfig, vault: Vault):
        self.config = config
        self.vault = vault

    # -- reading ---------------------------------------------------------------------------------

    def index(self, trans) -> list[CloudAuthz]:
        stmt = select(CloudAuthz).where(CloudAuthz.user_id == trans.user.id).order_by(CloudAuthz.id)
        return list(trans.sa_session.scalars(stmt))

    def get_owned(self, trans, authz_id: int) -> CloudAuthz:
        """The caller's record, or 404: another user's record is indistinguishable from none."""
        authz = trans.sa_session.get(CloudAuthz, authz_id)
        if authz is None or authz.user_id != trans.user.id:
            raise exceptions.ObjectNotFound(NOT_FOUND)
        return authz

    def read_secrets(self, authz: CloudAuthz) -> dict[str, str]:
        """The record's vaulted fields, for the credential exchange only."""
        secrets = {}
        for field in authz.vaulted_fields:
            value = self.vault.read_secret(vault_key(authz, field))
            if not value:
                raise exceptions.RequestParameterInvalidException(
                    f"The stored secret '{field}' of this cloud authorization is gone from Galaxy's vault; "
                    "update the authorization with PUT /api/cloud/authz/{id}."
                )
            secrets[field] = value
        return secrets

    def serialize(self, authz: CloudAuthz) -> CloudAuthzResponse:
        config = dict(authz.config)
        config.update(dict.fromkeys(authz.vaulted_fields, REDACTED))
        return CloudAuthzResponse(
            id=authz.id,
            user_id=authz.user_id,
            authn_id=authz.authn_id,
            provider=authz.provider,
            config=config,
            description=authz.description,
            create_time=authz.create_time,
            last_update=authz.update_time,
            last_activity=authz.last_activity,
        )

    # -- writing ---------------------------------------------------------------------------------

    def create(self, trans, payload: CreateCloudAuthzPayload) -> CloudAuthz:
        provider_config = self._validate_config(payload.provider, payload.config)
        authn_id = self._resolve_identity(
            trans, provider_config, payload.authn_id, "authn_id" in payload.model_fields_set
        )
        authz = CloudAuthz(
            user_id=trans.user.id,
            authn_id=authn_id,
            provider=payload.provider,
            description=payload.description,
        )
        self._apply_config(authz, provider_config)
        self._refuse_duplicate(trans, authz)
        trans.sa_session.add(authz)
        trans.sa_session.flush()  # the id names the vault keys
        new_id = authz.id
        try:
            self._store_secrets(authz, provider_config.secret_dict())
        except Exception:
            # Galaxy's database vault commits as it writes: the record may already be in.
            trans.sa_session.rollback()
            self._forget(trans, new_id)
            raise
        trans.sa_session.commit()
        return authz

    def update(self, trans, authz_id: int, payload: UpdateCloudAuthzPayload) -> CloudAuthz:
        authz = self.get_owned(trans, authz_id)
        fields = payload.model_fields_set
        if payload.provider is not None and payload.provider != authz.provider:
            raise exceptions.RequestParameterInvalidException(
                f"provider: an authorization's provider cannot change ({authz.provider}); create a new one instead."
            )
        old_secrets = self.read_secrets(authz) if authz.vaulted_fields else {}
        if "config" in fields and payload.config is not None:
            raw = {k: (old_secrets.get(k, v) if v == REDACTED else v) for k, v in payload.config.items()}
            unknown_redacted = [k for k, v in raw.items() if v == REDACTED]
            if unknown_redacted:
                raise exceptions.RequestParameterInvalidException(
                    f"config.{unknown_redacted[0]}: no stored secret to keep; give its value."
                )
            provider_config = self._validate_config(authz.provider, raw)
        else:
            provider_config = self._validate_config(authz.provider, {**authz.config, **old_secrets})
        if "authn_id" in fields or "config" in fields:
            requested = payload.authn_id if "authn_id" in fields else authz.authn_id
            authz.authn_id = self._resolve_identity(trans, provider_config, requested, requested is not None)
        if "description" in fields:
            authz.description = payload.description
        self._apply_config(authz, provider_config)
        self._refuse_duplicate(trans, authz)
        new_secrets = provider_config.secret_dict()
        self._delete_secrets(authz, [f for f in old_secrets if f not in new_secrets])
        self._store_secrets(authz, {k: v for k, v in new_secrets.items() if old_secrets.get(k) != v})
        authz.update_time = now()
        trans.sa_session.commit()
        return authz

    def delete(self, trans, authz: CloudAuthz) -> None:
        self._delete_secrets(authz, authz.vaulted_fields)
        trans.sa_session.delete(authz)
        trans.sa_session.commit()

    # -- helpers ---------------------------------------------------------------------------------

    def _validate_config(self, provider: str, raw: dict[str, Any]) -> ProviderAuthzConfig:
        settings = self.config.provider(provider)
        if not settings.enabled:
            enabled = ", ".join(self.config.enabled_providers) or "none"
            raise exceptions.RequestParameterInvalidException(
                f"provider: '{provider}' is not enabled on this Galaxy (enabled: {enabled})."
            )
        plugin = cloud(provider)
        try:
            provider_config = plugin.authz_config_model.model_validate(raw)
        except ValidationError as e:
            raise exceptions.RequestParameterInvalidException(format_validation_error(e, "config")) from e
        if provider_config.uses_stored_secret:
            secret = ", ".join(provider_config.secret_dict())
            if not settings.allow_stored_secrets:
                raise exceptions.RequestParameterInvalidException(
                    f"config.{secret}: this Galaxy does not keep {provider} secrets; its admin has not enabled "
                    f"providers.{provider}.allow_stored_secrets. Use the secretless mode instead."
                )
            if not is_vault_configured(self.vault):
                raise exceptions.RequestParameterInvalidException(
                    f"config.{secret}: this Galaxy has no vault to keep secrets in (vault_config_file); "
                    "use the secretless mode instead."
                )
        try:
            plugin.check_record(settings, provider_config)  # modes, endpoints, regions: invariant 4 (docs/design.rst)
        except RecordNotAllowed as e:
            where = f"config.{e.field}" if e.field else "config"
            raise exceptions.RequestParameterInvalidException(f"{where}: {e}") from e
        return provider_config

    def _resolve_identity(
        self, trans, provider_config: ProviderAuthzConfig, authn_id: Optional[int], given: bool
    ) -> Optional[int]:
        identities = list(
            trans.sa_session.scalars(select(UserAuthnzToken).where(UserAuthnzToken.user_id == trans.user.id))
        )
        if given and authn_id is not None:
            if authn_id not in {identity.id for identity in identities}:
                raise exceptions.ObjectNotFound(IDENTITY_NOT_FOUND)
            return authn_id
        if not provider_config.needs_oidc_identity:
            return None
        if len(identities) == 1:
            return identities[0].id
        if not identities:
            raise exceptions.RequestParameterInvalidException(
                "authn_id: this authorization needs an OpenID Connect login; log in to Galaxy with your "
                "identity provider first, then create it again."
            )
        raise exceptions.RequestParameterMissingException(
            "authn_id: you have several OpenID Connect identities; give the encoded id of one (GET /authnz/)."
        )

    @staticmethod
    def _apply_config(authz: CloudAuthz, provider_config: ProviderAuthzConfig) -> None:
        authz.config = provider_config.public_dict()
        authz.vaulted_fields = sorted(provider_config.secret_dict())
        canonical = json.dumps(
            {"provider": authz.provider, "authn_id": authz.authn_id, "config": authz.config}, sort_keys=True
        )
        authz.config_digest = hashlib.sha256(canonical.encode()).hexdigest()

    @staticmethod
    def _refuse_duplicate(trans, authz: CloudAuthz) -> None:
        stmt = select(CloudAuthz.id).where(
            CloudAuthz.user_id == authz.user_id,
            CloudAuthz.config_digest == authz.config_digest,
        )
        if authz.id is not None:
            stmt = stmt.where(CloudAuthz.id != authz.id)
        existing = trans.sa_session.scalars(stmt).first()
        if existing is not None:
            raise exceptions.RequestParameterInvalidException(
                f"You already have this authorization ({trans.security.encode_id(existing)}); use that one."
            )

    def _store_secrets(self, authz: CloudAuthz, secrets: dict[str, str]) -> None:
        written = []
        try:
            for field, value in secrets.items():
                self.vault.write_secret(vault_key(authz, field), value)
                written.append(field)
        except Exception:
            log.exception("Could not write a cloud authorization secret to the vault")
            self._delete_secrets(authz, written)
            raise exceptions.ConfigurationError("Galaxy's vault refused the secret; ask your Galaxy admin.") from None

    @staticmethod
    def _forget(trans, authz_id: int) -> None:
        leftover = trans.sa_session.get(CloudAuthz, authz_id)
        if leftover is not None:
            trans.sa_session.delete(leftover)
            trans.sa_session.commit()

    def _delete_secrets(self, authz: CloudAuthz, fields) -> None:
        for field in fields:
            try:
                self.vault.delete_secret(vault_key(authz, field))
            except Exception:
                log.exception("Could not delete vault key %s", vault_key(authz, field))
