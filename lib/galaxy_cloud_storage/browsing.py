"""The backends that browsing reuses, per user and authorization, for a short while.

A person (or the plugin's page) walks a folder a page at a time, seconds apart. Building each
page's backend anew cost more than the cloud's listing call itself: the credentials minted again
(an STS or token exchange in a secretless mode), an SDK client built (about 30 ms for boto3's) and a
new connection opened: against moto, page 1 took 0.19 s through the API and 0.08 s through the SDK
(bench/browse_bench.py). A backend kept for ``TTL`` seconds lists the next page on the connection
the last one opened.

Only the listing routes use this; a get or a send still mints its credentials for the request.
Entries are keyed by the record's ``update_time`` as well: a changed authorization builds anew, and
a deleted one is refused before its entry is looked at (``CloudAuthzManager.get_owned``).
"""

import threading
import time
from collections import OrderedDict
from typing import Callable

from .providers.storage import StorageBackend

#: well within any cloud's shortest credential lifetime (STS's 15 minutes)
TTL = 120.0
#: entries kept at most (each an SDK client with its connection pool)
SIZE = 64


class RecentBackends:
    def __init__(self, ttl: float = TTL, size: int = SIZE, clock: Callable[[], float] = time.monotonic):
        self.ttl, self.size, self.clock = ttl, size, clock
        self._entries: OrderedDict[tuple, tuple[float, StorageBackend]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, user_id: int, authz, build: Callable[[], StorageBackend]) -> StorageBackend:
        """The user's backend for ``authz``, built by ``build`` if none is recent enough."""
        key = (user_id, authz.id, authz.update_time)
        now = self.clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[0] > now:
                self._entries.move_to_end(key)
                return entry[1]
        backend = build()  # outside the lock: minting waits on the cloud
        with self._lock:
            self._entries[key] = (now + self.ttl, backend)
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return backend
