"""Amazon S3 (and S3-compatible stores): the admin's settings, a user's record, S3's naming rules.

Credentials: STS ``AssumeRoleWithWebIdentity`` with the user's id_token (``credentials.py``), or a static
key from the vault for an S3-compatible store. Storage: boto3 and s3transfer (``storage.py``).
"""

from typing import Annotated, ClassVar, Optional

from pydantic import Field, HttpUrl, model_validator, StringConstraints

from ..cloud import Cloud, RecordNotAllowed
from ..settings import exclusive, MiB, ProviderAuthzConfig, ProviderSettings, require, Secret
from .names import S3NameRules


class AwsSettings(ProviderSettings):
    sts_endpoint_url: Optional[HttpUrl] = None
    sts_region: str = "us-east-1"
    s3_endpoint_url: Optional[HttpUrl] = None
    s3_region: Optional[str] = None
    part_size: int = Field(
        16 * MiB,
        ge=5 * MiB,
        le=5 * 1024 * MiB,
        description="Objects above this size move in parts of it (S3 multipart), 4 at a time each: a "
        "transfer holds about 4 parts per object in flight (invariant 8). S3 allows 5 MiB to 5 GiB.",
    )


class AwsAuthzConfig(ProviderAuthzConfig):
    """AWS: STS AssumeRoleWithWebIdentity with the user's id_token, or (admin-enabled) a static key."""

    role_arn: Optional[
        Annotated[
            str, StringConstraints(max_length=600, pattern=r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9_+=,.@/-]+$")
        ]
    ] = Field(
        None, description="IAM role the user's OIDC identity may assume, e.g. arn:aws:iam::123456789012:role/galaxy"
    )
    token_ttl: int = Field(3600, ge=900, le=43200, description="Lifetime of the temporary credentials (seconds).")
    region: Optional[Annotated[str, StringConstraints(pattern=r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")]] = Field(
        None, description="The bucket's AWS region, in the admin's partition (default: the admin's region)."
    )
    access_key_id: Optional[Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9+/=_-]{3,128}$")]] = Field(
        None, description="Static key id for an S3-compatible store (stored-secret mode)."
    )
    secret_access_key: Optional[Secret] = None

    secret_fields: ClassVar[tuple[str, ...]] = ("secret_access_key",)
    modes = {"web_identity": "role_arn", "static_key": None}

    @model_validator(mode="after")
    def _one_mode(self):
        static = ("access_key_id", "secret_access_key")
        exclusive(self, ("role_arn",), static, "role_arn or access_key_id with secret_access_key")
        if self.role_arn is None:
            if self.access_key_id is None and self.secret_access_key is None:
                raise ValueError("role_arn required (the IAM role Galaxy assumes with your OIDC login)")
            require(self, static, "a static key")
        return self


class AwsCloud(Cloud[AwsSettings, AwsAuthzConfig]):
    name = "aws"
    names = S3NameRules()
    sdk_loggers = ("botocore", "boto3", "s3transfer")

    def check_record(self, settings: AwsSettings, config: AwsAuthzConfig) -> None:
        # A region only where it cannot move the requests out of the admin's AWS partition.
        from .storage import region_problem

        if problem := region_problem(settings, config.region):
            raise RecordNotAllowed("region", f"{problem}.")
