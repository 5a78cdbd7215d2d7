"""A cloud is one plugin: a ``Cloud`` subclass declares all the plugin knows of it (docs/design.rst).

Its name (the ``provider`` of an authorization), the admin's settings model, the model of a
user's authorization record with its modes, its naming rules, how it mints short-lived credentials
(from the user's OIDC login or from the vault), and its storage backend. Every other layer asks
the registry (``cloud(name)``, ``clouds()``) instead of naming a cloud: adding one is a new package
here (or a module anywhere that is imported) defining a subclass with a ``name``.

Classes register themselves as they are defined (``__init_subclass__``), the way Galaxy's own
plugins are found by a class attribute; ``clouds()`` first imports every module of this package.
Declarations here are cheap to import: a cloud's SDK is imported only by its ``credentials`` and
``storage`` modules, on first use, so the web process pays for the clouds it uses, and a transfer
job (which may run without Galaxy, on a Pulsar node) for the one it moves.
"""

import importlib
import logging
import pkgutil
import typing
from typing import Any, ClassVar, Generic, Optional, Protocol, TYPE_CHECKING, TypeVar

from .names import NameRules
from .settings import ProviderAuthzConfig, ProviderSettings

if TYPE_CHECKING:
    from .storage import JsonCredentials, StorageBackend

log = logging.getLogger(__name__)


class OidcLogin(Protocol):
    """The user's OpenID Connect login, as a cloud's minting may use it (authz.delegation gives
    it): the tokens are fetched, and refreshed by Galaxy, only when a secretless mode asks."""

    username: str

    def id_token(self) -> str: ...

    def access_token(self) -> str: ...


class RecordNotAllowed(ValueError):
    """A record this Galaxy's admin settings cannot serve; ``field`` is the config field at fault."""

    def __init__(self, field: Optional[str], message: str):
        super().__init__(message)
        self.field = field


SettingsT = TypeVar("SettingsT", bound=ProviderSettings)
RecordT = TypeVar("RecordT", bound=ProviderAuthzConfig)


class Cloud(Generic[SettingsT, RecordT]):
    """Base of the cloud plugins, parametrized by the cloud's two models, the admin's settings and a
    user's record: ``class AwsCloud(Cloud[AwsSettings, AwsAuthzConfig])``. A subclass sets ``name``,
    ``names`` and ``sdk_loggers``. Its package holds two modules, imported on first use (its SDK
    with them): ``credentials``, whose ``mint(settings, config, login)`` makes short-lived
    credentials, and ``storage``, whose StorageBackend subclass names the cloud in its ``plugin``."""

    #: the ``provider`` of an authorization record, and the key of the admin's settings
    name: ClassVar[str] = ""
    names: ClassVar[NameRules]
    #: loggers that write requests, responses or URLs at DEBUG (invariant 2, see quiet_sdk_debug_logging)
    sdk_loggers: ClassVar[tuple[str, ...]] = ()
    #: the class's parameters
    settings_model: ClassVar[type[ProviderSettings]] = ProviderSettings
    authz_config_model: ClassVar[type[ProviderAuthzConfig]] = ProviderAuthzConfig
    #: the cloud's StorageBackend, set when that class is defined (StorageBackend.__init_subclass__)
    backend: ClassVar[Optional[type["StorageBackend"]]] = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for base in getattr(cls, "__orig_bases__", ()):
            if typing.get_origin(base) is Cloud:
                cls.settings_model, cls.authz_config_model = typing.get_args(base)
        if cls.name:
            if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
                known = _REGISTRY[cls.name].__qualname__
                raise TypeError(f"two clouds are named {cls.name!r}: {known} and {cls.__qualname__}")
            _REGISTRY[cls.name] = cls

    @property
    def label(self) -> str:
        """What users call the cloud, in messages."""
        return self.names.cloud

    def check_record(self, settings: SettingsT, config: RecordT) -> None:
        """Raise RecordNotAllowed where the admin's settings cannot serve the record (a mode they
        do not offer, an endpoint that is not theirs); invariant 4. Called when a record is saved."""

    def mint(self, settings: SettingsT, config: RecordT, login: Optional[OidcLogin]) -> "JsonCredentials":
        """Short-lived credentials for the record (its vaulted secrets included in ``config``);
        ``login`` is asked for a token only in a secretless mode."""
        return self._module("credentials").mint(settings, config, login)

    def storage_type(self) -> type["StorageBackend"]:
        if type(self).backend is None:
            self._module("storage")  # defining the backend registers it
        assert type(self).backend is not None, f"{self._module('storage').__name__} defines no backend of {self.name}"
        return type(self).backend

    def credentials_type(self) -> type["JsonCredentials"]:
        return self.storage_type().credentials_type

    def storage(self, settings: SettingsT, credentials: "JsonCredentials", config: dict) -> "StorageBackend":
        """The backend at the admin's endpoints with the user's credentials; ``config`` is the
        record's public part (region, storage account, project, ...)."""
        quiet_sdk_debug_logging()
        return self.storage_type()(settings, credentials, config)

    def _module(self, name: str):
        """A module of the cloud's package (where its class is defined)."""
        return importlib.import_module(f".{name}", type(self).__module__)


_REGISTRY: dict[str, type[Cloud]] = {}
_discovered = False


def _registered() -> dict[str, type[Cloud]]:
    """The registry, once this package's modules are imported (each defines its cloud)."""
    global _discovered
    if not _discovered:
        from .. import providers

        for module in pkgutil.iter_modules(providers.__path__):
            if module.ispkg:
                importlib.import_module(f"{providers.__name__}.{module.name}")
        _discovered = True
    return _REGISTRY


def clouds() -> dict[str, Cloud]:
    """Every cloud, by name, in the order of their names."""
    registered = _registered()
    return {name: registered[name]() for name in sorted(registered)}


def unregister(name: str) -> None:
    """Forget a cloud registered at run time (a test's stand-in cloud, when the test is over)."""
    _REGISTRY.pop(name, None)


def cloud(name: str) -> Cloud:
    found = _registered().get(name)
    if found is None:
        raise KeyError(f"no cloud named {name!r} (known: {', '.join(sorted(_REGISTRY))})")
    return found()


def quiet_sdk_debug_logging() -> None:
    """Invariant 2: at DEBUG (Galaxy's default level) the cloud SDKs log request bodies (an STS
    call's web identity token), response bodies (temporary secrets) and URLs (a SAS). Their
    loggers say nothing below INFO, whatever Galaxy's logging config says; called before every
    use of credentials, since Galaxy (re)configures logging after the plugin is imported."""
    for name in ("urllib3", *(logger for each in _registered().values() for logger in each.sdk_loggers)):
        logger = logging.getLogger(name)
        if logger.level < logging.INFO:  # unset (inheriting) or DEBUG
            logger.setLevel(logging.INFO)


def credentials_from_json(provider: str, data: dict[str, Any]) -> "JsonCredentials":
    return cloud(provider).credentials_type().from_json(data)
