"""The two models every cloud declares: the admin's settings for it, and a user's authorization
record for it (its config, with the record's modes).

Each record schema follows its cloud's own delegation mechanism. Secretless modes (the default)
name what Galaxy needs to exchange the user's OIDC login for short-lived credentials; the optional
secret-bearing modes hold a long-lived secret that lives only in Galaxy's vault and only when the
admin allows it. No record has an endpoint field that reaches the network unchecked: endpoints are
the admin's (invariant 4, docs/design.rst).
"""

from typing import Annotated, ClassVar, Optional

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

# Shown in place of a stored secret; sending it back in a PUT keeps the stored value.
REDACTED = "********"
MiB = 1024 * 1024

Secret = Annotated[str, StringConstraints(min_length=1, max_length=8192)]
Uuid = Annotated[
    str,
    StringConstraints(
        pattern=r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
    ),
]


class AdminModel(BaseModel):
    # A typo in an admin's file should stop start-up with its name, not be ignored.
    model_config = ConfigDict(extra="forbid")


class ProviderSettings(AdminModel):
    """What every cloud's section of the admin's file holds; a cloud adds its endpoints (and may
    be off unless enabled: OpenStack has no public endpoint)."""

    enabled: bool = True
    allow_stored_secrets: bool = Field(
        False,
        description="Let users keep a long-lived secret (static key, client secret, SAS, service account "
        "key, application credential) in Galaxy's vault. Needs vault_config_file in galaxy.yml.",
    )
    ca_bundle: Optional[str] = Field(
        None,
        description="PEM file of the certificate authorities to trust for this provider's endpoints "
        "(token and storage), for on-premise deployments with a private CA. Default: the system's.",
    )

    @property
    def verify(self):
        """What HTTP clients take as ``verify``: the admin's CA bundle, or True."""
        return self.ca_bundle or True


class ProviderAuthzConfig(BaseModel):
    """Base of the record schemas: unknown fields are refused, secrets and modes are declared."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    #: fields kept in the vault, never in the database or a response
    secret_fields: ClassVar[tuple[str, ...]] = ()
    #: the record's ways of getting credentials, in the order they are told apart: each mode, and
    #: the field whose presence selects it (None: the mode of a record that sets none of those)
    modes: ClassVar[dict[str, Optional[str]]] = {}

    @property
    def mode(self) -> str:
        for mode, field in self.modes.items():
            if field is None or getattr(self, field) is not None:
                return mode
        raise ValueError(f"{type(self).__name__} declares no mode for this record")

    @property
    def uses_stored_secret(self) -> bool:
        return any(getattr(self, name) is not None for name in self.secret_fields)

    @property
    def needs_oidc_identity(self) -> bool:
        return not self.uses_stored_secret

    def public_dict(self) -> dict:
        """The part of the config that may be stored in the database and shown to its owner."""
        return self.model_dump(exclude_none=True, exclude=set(self.secret_fields))

    def secret_dict(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in self.secret_fields if getattr(self, name) is not None}


def exclusive(config: BaseModel, secretless: tuple[str, ...], secret: tuple[str, ...], hint: str) -> None:
    """Refuse a record that mixes two modes' fields."""
    given_secretless = [f for f in secretless if getattr(config, f) is not None]
    given_secret = [f for f in secret if getattr(config, f) is not None]
    if given_secretless and given_secret:
        raise ValueError(f"give either {hint}, not both ({', '.join(given_secretless + given_secret)} were given)")


def require(config: BaseModel, fields: tuple[str, ...], mode: str) -> None:
    """Refuse a record that lacks a field its mode needs."""
    missing = [f for f in fields if getattr(config, f) is None]
    if missing:
        raise ValueError(f"{', '.join(missing)} required for {mode}")
