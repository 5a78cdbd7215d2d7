"""What the web process hands a transfer job, typed: one model per message.

The request travels as the job's one parameter (``TransferRequest``, written by the manager), the
job handler turns it into the job's manifest (``GetManifest``, ``SendManifest``: which object goes
to which file) and its credentials (``JobCredentials``: a ``Delegation``, or a ``MintingFailure``
that the job reports), and the transfer process and the datatypes step read those. Nothing here
imports Galaxy: a transfer job may run where only the plugin and the cloud SDKs are installed.

A job's datasets are named by ``output_name`` and ``input_name`` alone (the manager when it makes
the job, the tools' templates when they read it back).
"""

from typing import Annotated, Literal, Optional, TYPE_CHECKING, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from pydantic.dataclasses import dataclass

if TYPE_CHECKING:
    from .providers.storage import StorageBackend


def output_name(index: int) -> str:
    """The name of a get job's ``index``-th new dataset (the object ``keys[index]``)."""
    return f"output{index}"


def input_name(index: int) -> str:
    """The name of a send job's ``index``-th dataset (sent to ``keys[index]``)."""
    return f"input{index}"


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GetInputArgs(_Message):
    dbkey: str = Field("?", max_length=255, description="Genome build of the new datasets.")
    file_type: str = Field("auto", max_length=255, description="Datatype of the new datasets; `auto` sniffs each one.")
    space_to_tab: bool = Field(False, description="Convert runs of spaces to tabs.")
    to_posix_lines: bool = Field(False, description="Convert line endings to POSIX.")

    @property
    def needs_datatypes_step(self) -> bool:
        """Whether anything is to sniff or convert; otherwise the datasets keep ``file_type``."""
        return self.file_type == "auto" or self.to_posix_lines or self.space_to_tab


#: The name of that parameter in the tools' XML. Not "request": Cheetah looks a placeholder up in
#: the template object first, and its ``request`` attribute (None) would shadow the parameter.
TRANSFER_PARAMETER = "transfer"


class TransferRequest(_Message):
    """The job's one parameter (TRANSFER_PARAMETER): what the request asked for, checked by the manager."""

    authz_id: int
    bucket: str
    #: get: the objects, in the order of the job's outputs; send: the objects' names, in the
    #: order of its inputs
    keys: list[str]
    input_args: GetInputArgs = Field(default_factory=GetInputArgs)
    overwrite_existing: bool = False
    #: get: each object's size when the request was checked, in the order of ``keys`` (absent in
    #: jobs made before 0.11). A hint for how to move it, never a promise: it may have changed since.
    sizes: Optional[list[int]] = None


@dataclass(frozen=True)
class GetItem:
    """Copy the object ``key`` into the file ``path`` (the job's dataset ``output``)."""

    key: str
    path: str
    output: Optional[str] = None
    #: the size the object had when the request was checked (TransferRequest.sizes), or None
    size_hint: Optional[int] = None


@dataclass(frozen=True)
class SendItem:
    """Copy the file ``path`` into the object ``key``."""

    path: str
    key: str
    #: the dataset's Galaxy hashes (``{"hash_function", "hash_value"}``), which its file must match
    #: to be sent (absent in jobs made before 0.12)
    hashes: tuple[dict[str, str], ...] = ()


class GetManifest(_Message):
    bucket: str
    items: list[GetItem]
    input_args: GetInputArgs = Field(default_factory=GetInputArgs)
    #: Galaxy's datatypes configuration, for the datatypes step
    datatypes_conf: Optional[str] = None


class SendManifest(_Message):
    bucket: str
    items: list[SendItem]
    overwrite_existing: bool = False


class Delegation(_Message):
    """What a transfer needs: the cloud, the admin's settings for it, the record's public config,
    and the short-lived credentials in their JSON form (never the user's login nor a stored secret)."""

    kind: Literal["delegation"] = "delegation"
    provider: str
    settings: dict
    config: dict
    credentials: dict = Field(repr=False)

    def backend(self) -> "StorageBackend":
        from .providers import cloud, credentials_from_json

        plugin = cloud(self.provider)
        return plugin.storage(
            plugin.settings_model(**self.settings), credentials_from_json(self.provider, self.credentials), self.config
        )


class MintingFailure(_Message):
    """Why the job got no credentials, for its datasets (a template that raised would hide it)."""

    kind: Literal["failure"] = "failure"
    error: str


JobCredentials = Annotated[Union[Delegation, MintingFailure], Field(discriminator="kind")]
JOB_CREDENTIALS = TypeAdapter(JobCredentials)
