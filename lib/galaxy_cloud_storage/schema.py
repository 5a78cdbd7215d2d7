"""Request and response models of the plugin's API (seed-compatible, documented for OpenAPI)."""

from datetime import datetime, timezone
from typing import Annotated, Any, Literal, Optional

from galaxy import exceptions
from galaxy.schema.fields import EncodedDatabaseIdField, ensure_valid_id, Security
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator, WithJsonSchema
from pydantic_core import PydanticCustomError

from .contracts import GetInputArgs
from .providers import clouds

# The largest id a Galaxy database can hold (SQLite's and PostgreSQL's 64-bit integers).
MAX_DATABASE_ID = 2**63 - 1
# Galaxy's own id schema leaves its pattern unanchored (JSON Schema patterns match anywhere), so
# any string holding 16 hex digits would be documented as an id.
_ID_SCHEMA = {"type": "string", "example": "0123456789abcdef", "pattern": "^(?:[0-9a-fA-F]{16})+$", "minLength": 16}


def _decode_database_id(encoded: str) -> int:
    """Galaxy's id decoding, with a 404 for an id that names nothing: one that decodes to no
    integer (Galaxy: 400 "Wrong id"), or to one beyond any database's range (SQLite raises
    OverflowError for those, which Galaxy answers with a plain-text 500)."""
    try:
        value = Security.security.decode_id(encoded)
    except exceptions.MalformedId:
        value = 0
    if not 0 < value <= MAX_DATABASE_ID:
        # Galaxy's handler answers with the exception carried in this error (exceptions.utils).
        not_found = exceptions.ObjectNotFound(f"Nothing has the id {encoded}.")
        raise PydanticCustomError("message_exception", "No object has this id", {"exception": not_found})
    return value


def _as_utc(value: datetime) -> datetime:
    """Galaxy keeps naive UTC datetimes; OpenAPI's date-time (RFC 3339) needs the offset."""
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


# galaxy.schema.fields.DecodedDatabaseIdField, but ids that name nothing are 404s (see above).
# (Pydantic runs before-validators last to first: the format is checked, then the id decoded.)
DecodedDatabaseIdField = Annotated[
    int,
    BeforeValidator(_decode_database_id),
    BeforeValidator(ensure_valid_id),
    WithJsonSchema(_ID_SCHEMA, mode="serialization"),
    WithJsonSchema(_ID_SCHEMA, mode="validation"),
]
UtcDateTime = Annotated[datetime, AfterValidator(_as_utc)]

ProviderName = Literal[tuple(clouds())]  # type: ignore[valid-type]

ProviderField = Field(
    ...,
    description="The cloud: " + ", ".join(f"`{name}` ({each.label})" for name, each in clouds().items()) + ".",
)
ConfigField = Field(
    ...,
    description="How Galaxy gets credentials for this cloud, e.g. "
    '`{"role_arn": "arn:aws:iam::123456789012:role/galaxy"}` '
    "for `aws`. The fields of each provider are described in the plugin's README.",
)
AuthnIdField = Field(
    None,
    description="Encoded id of one of your OpenID Connect identities (`GET /authnz/`). Its id_token is exchanged "
    "for short-lived cloud credentials. May be left out when you have exactly one identity.",
)
DescriptionField = Field(None, max_length=1024, description="A note of your own about this authorization.")


class _Payload(BaseModel):
    # A misspelt field is an error, not silently ignored.
    model_config = ConfigDict(extra="forbid")


class CreateCloudAuthzPayload(_Payload):
    provider: ProviderName = ProviderField
    config: dict[str, Any] = ConfigField
    authn_id: Optional[DecodedDatabaseIdField] = AuthnIdField
    description: Optional[str] = DescriptionField


class UpdateCloudAuthzPayload(_Payload):
    provider: Optional[ProviderName] = Field(
        None, description="May be given but not changed: create a new authorization for another cloud."
    )
    config: Optional[dict[str, Any]] = Field(
        None,
        description="Replaces the whole config. A secret field sent back as `********` (as shown) keeps its "
        "stored value.",
    )
    authn_id: Optional[DecodedDatabaseIdField] = AuthnIdField
    description: Optional[str] = DescriptionField


class CloudAuthzResponse(BaseModel):
    model_class: Literal["CloudAuthz"] = "CloudAuthz"
    id: EncodedDatabaseIdField = Field(
        ..., description="Encoded id of this authorization (the `authz_id` of get and send)."
    )
    user_id: EncodedDatabaseIdField
    authn_id: Optional[EncodedDatabaseIdField] = Field(None, description="Encoded id of the OIDC identity used.")
    provider: ProviderName
    config: dict[str, Any] = Field(..., description="The config, with every secret field shown as `********`.")
    description: Optional[str] = None
    create_time: UtcDateTime
    last_update: UtcDateTime
    last_activity: UtcDateTime = Field(..., description="When Galaxy last used this authorization.")


CloudAuthzListResponse = Annotated[list[CloudAuthzResponse], Field(description="Your cloud authorizations.")]


# -- get and send ---------------------------------------------------------------------------------

BucketName = Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[^/\s]+$")]
ObjectKey = Annotated[str, Field(min_length=1, max_length=1024)]

HistoryIdField = Field(..., description="Encoded id of one of your histories.")
AuthzIdField = Field(..., description="Encoded id of one of your cloud authorizations (`GET /api/cloud/authz`).")
BucketField = Field(..., description="The bucket (Azure: container; Swift: container).")


GlobPattern = Annotated[str, Field(min_length=1, max_length=1024)]
DryRunField = Field(
    False,
    description="Check everything as the real call does (the same errors for the same mistakes), create nothing "
    "(no dataset, collection, job or object), and answer with the plan.",
)


class NewCollection(_Payload):
    name: str = Field(..., min_length=1, max_length=255, description="The new collection's name.")
    type: Literal["list", "list:paired"] = Field(
        ...,
        description="`list`: one element per object, named by its key relative to `prefix` (`%`, `/` and control "
        "characters percent-encoded). `list:paired`: forward and reverse reads paired by Galaxy's rules "
        "(`_1`/`_2`, `_R1`/`_R2`, `_R1_001`/`_R2_001`, `_F`/`_R`, `.1.fastq`/`.2.fastq`) or as a send lays "
        "them out (`<pair>/forward`, `<pair>/reverse`).",
    )


class CloudStorageGetPayload(_Payload):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"history_id": "f2db41e1fa331b3e", "authz_id": "1cd8e2f6b131e891", "bucket": "lab-data",
                 "objects": ["peaks/rep1.bed"]},
                {"history_id": "f2db41e1fa331b3e", "authz_id": "1cd8e2f6b131e891", "bucket": "lab-data",
                 "prefix": "runs/run-7/", "include": ["*.fastq.gz"],
                 "collection": {"name": "run-7", "type": "list:paired"}, "dry_run": True},
            ]
        },
    )  # fmt: skip

    history_id: DecodedDatabaseIdField = HistoryIdField
    authz_id: DecodedDatabaseIdField = AuthzIdField
    bucket: BucketName = BucketField
    objects: Optional[list[ObjectKey]] = Field(
        None,
        min_length=1,
        max_length=10000,
        description="Keys of the objects to copy; each becomes one dataset named by its key. Give this or `prefix`.",
    )
    prefix: Optional[Annotated[str, Field(min_length=1, max_length=1024)]] = Field(
        None,
        description="Copy every object under this prefix (a folder, e.g. `runs/run-7/`), recursively; empty "
        "folder-marker objects (keys ending in `/`) are skipped. Give this or `objects`.",
    )
    include: list[GlobPattern] = Field(
        [],
        max_length=100,
        description="With `prefix`: only keys (relative to the prefix) matching one of these shell globs "
        "(`*` matches `/` too: `*.fastq.gz` at any depth).",
    )
    exclude: list[GlobPattern] = Field(
        [], max_length=100, description="With `prefix`: leave out keys (relative to the prefix) matching any of these."
    )
    collection: Optional[NewCollection] = Field(
        None, description="Make the new datasets the elements of one new collection in the history."
    )
    input_args: Optional[GetInputArgs] = Field(None, description="How the new datasets are typed.")
    dry_run: bool = DryRunField

    @model_validator(mode="after")
    def _objects_or_prefix(self):
        if (self.objects is None) == (self.prefix is None):
            raise ValueError("give exactly one of objects (a list of keys) and prefix (a folder)")
        if self.objects is not None and (self.include or self.exclude):
            raise ValueError("include and exclude go with prefix, not with objects")
        return self


class PlannedGet(BaseModel):
    key: str
    size: int
    name: str = Field(
        ..., description="The new dataset's name, or in a collection its element's (`pair/forward` when paired)."
    )


class CloudStorageGetPlan(BaseModel):
    dry_run: Literal[True] = True
    objects: list[PlannedGet]
    total_bytes: int


class CloudDatasetSummary(BaseModel):
    """A new dataset, in the fields of the seed-era API; `id` is the history dataset id, usable
    with `/api/datasets/{id}` and history contents."""

    model_class: Literal["HistoryDatasetAssociation"] = "HistoryDatasetAssociation"
    id: EncodedDatabaseIdField
    name: str
    job_id: EncodedDatabaseIdField = Field(..., description="The one job that copies all the request's objects.")
    state: str
    create_time: UtcDateTime
    update_time: UtcDateTime
    deleted: bool
    purged: bool
    purgable: bool
    file_size: int
    total_size: int
    uuid: str
    collection_id: Optional[EncodedDatabaseIdField] = Field(
        None, description="The new collection this dataset is an element of, when the request made one."
    )


class CloudStorageSendPayload(_Payload):
    history_id: DecodedDatabaseIdField = HistoryIdField
    authz_id: DecodedDatabaseIdField = AuthzIdField
    bucket: BucketName = BucketField
    dataset_ids: Optional[list[DecodedDatabaseIdField]] = Field(
        None,
        max_length=10000,
        description="Encoded ids of datasets of that history (as history contents shows them). With neither this "
        "nor `collection_ids`, all of the history's datasets.",
    )
    collection_ids: Optional[list[DecodedDatabaseIdField]] = Field(
        None,
        max_length=1000,
        description="Encoded ids of collections of that history: each element goes to "
        "`<key_prefix><collection name>/<element identifier>`, one folder per nesting level.",
    )
    key_prefix: str = Field(
        "",
        max_length=1024,
        description="Put before every object's name, as it is (`results/run-1/` for a folder).",
        examples=["results/run-1/"],
    )
    overwrite_existing: bool = Field(
        False,
        description="Replace an object of the same name; otherwise the new object's name gets `_%y%m%d_%H%M%S` "
        "appended.",
    )
    dry_run: bool = DryRunField


class PlannedSend(BaseModel):
    dataset_id: EncodedDatabaseIdField
    key: str = Field(..., description="The object's full key (with the date suffix it would get, if any).")
    size: int
    replaces: bool = Field(..., description="Whether an existing object would be overwritten.")


class CloudStorageSendPlan(BaseModel):
    dry_run: Literal[True] = True
    objects: list[PlannedSend]
    total_bytes: int
    failed_dataset_labels: list[str] = Field(
        ..., description="What would not be sent, and why, as in the real call's answer."
    )


class CloudStorageSendResponse(BaseModel):
    sent_dataset_labels: list[str] = Field(
        ..., description='Each a JSON string: `{"object": <name in the bucket>, "job_id": <encoded job id>}`.'
    )
    failed_dataset_labels: list[str] = Field(
        ..., description='Each a JSON string: `{"object": <dataset name>, "error": <why it was not sent>}`.'
    )
    bucket_name: str


# -- browsing -------------------------------------------------------------------------------------


class CloudBucket(BaseModel):
    name: str
    created: Optional[UtcDateTime] = Field(None, description="Where the cloud says (S3, GCS); null otherwise.")


class CloudObject(BaseModel):
    key: str
    size: int
    last_modified: Optional[UtcDateTime] = None


class CloudObjectListing(BaseModel):
    bucket: str
    prefix: str
    objects: list[CloudObject]
    folders: list[str] = Field(
        ..., description="With a delimiter: the folders under the prefix (common prefixes), each ending in it."
    )
    next_page_token: Optional[str] = Field(
        None, description="Pass it as `page_token` for the next page (same bucket, prefix and delimiter); null on "
        "the last page.",
    )  # fmt: skip


class JobTicketPayload(_Payload):
    ticket: str = Field(..., max_length=256, description="The one-time ticket the job handler wrote for the job.")
