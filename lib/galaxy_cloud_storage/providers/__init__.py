"""The clouds, one plugin each: a ``cloud.Cloud`` subclass in a package of its own (``aws``,
``azure``, ``gcp``, ``openstack``) declares the admin's settings, a user's record, the naming
rules, the minting of credentials and the storage backend. The other layers reach a cloud only
through ``cloud(name)`` and the interfaces in ``cloud``, ``settings``, ``names`` and ``storage``.
"""

from .cloud import Cloud, cloud, clouds, credentials_from_json, quiet_sdk_debug_logging

__all__ = ["Cloud", "cloud", "clouds", "credentials_from_json", "quiet_sdk_debug_logging"]

# Invariant 2 (docs/design.rst) from the first import on (Galaxy may reconfigure logging later: called again before
# every use of credentials).
quiet_sdk_debug_logging()
