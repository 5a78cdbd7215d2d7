"""One module per cloud, all behind ``providers.base.StorageBackend``: the only place that knows a
cloud's quirks. ``storage_backend`` builds the one for an authorization's provider."""
