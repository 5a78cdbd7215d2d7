"""``swift.cache`` without a memcached: a paste filter for the test cluster's proxy (only there).

tempauth keeps its tokens in ``swift.cache`` and the proxy its account and container info; Swift's
own ``memcache`` filter needs a memcached daemon. With ``workers = 0`` the proxy is one process, so
a dictionary in it is as shared as memcache would be. Values go through JSON as they do through
memcache, so callers get fresh copies with memcache's types (lists for tuples), never shared objects.
Loaded from proxy-server.conf as ``use = call:dict_cache:filter_factory`` (PYTHONPATH: this folder).
"""

import json
import threading
import time

# memcache's rule: an expiry above 30 days is an absolute Unix time, below it seconds from now.
RELATIVE_LIMIT = 30 * 24 * 3600


class DictCache:
    """The subset of swift.common.memcached.MemcacheRing that Swift's middlewares call."""

    def __init__(self):
        self._items = {}  # key -> (expires or 0, JSON text)
        self._lock = threading.Lock()

    @staticmethod
    def _expires(ttl):
        if not ttl:
            return 0
        return ttl if ttl > RELATIVE_LIMIT else time.time() + ttl

    def _live(self, key):
        item = self._items.get(key)
        if item is not None and item[0] and item[0] < time.time():
            del self._items[key]
            return None
        return item

    def set(self, key, value, serialize=True, time=0, min_compress_len=0, raise_on_error=False):
        with self._lock:
            self._items[key] = (self._expires(time), json.dumps(value))

    def get(self, key, raise_on_error=False):
        with self._lock:
            item = self._live(key)
        return None if item is None else json.loads(item[1])

    def incr(self, key, delta=1, time=0):
        with self._lock:
            item = self._live(key)
            value = max(0, (int(json.loads(item[1])) if item else 0) + int(delta))
            self._items[key] = (item[0] if item else self._expires(time), json.dumps(value))
            return value

    def decr(self, key, delta=1, time=0):
        return self.incr(key, -delta, time)

    def delete(self, key, server_key=None):
        with self._lock:
            self._items.pop(key, None)

    def set_multi(self, mapping, server_key, serialize=True, time=0, min_compress_len=0):
        for key, value in mapping.items():
            self.set(key, value, time=time)

    def get_multi(self, keys, server_key):
        return [self.get(key) for key in keys]


class DictCacheMiddleware:
    def __init__(self, app, cache):
        self.app = app
        self.cache = cache

    def __call__(self, env, start_response):
        env["swift.cache"] = self.cache
        return self.app(env, start_response)


def filter_factory(global_conf, **local_conf):
    cache = DictCache()  # one per proxy process, built once when the pipeline is loaded
    return lambda app: DictCacheMiddleware(app, cache)
