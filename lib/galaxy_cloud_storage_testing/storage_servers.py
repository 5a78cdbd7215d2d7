"""What the tests, the demo and the benchmark need from each cloud's local storage server.

Each cloud's harness (moto_aws.py, azurite.py, fake_gcs.py, swift_aio.py) starts its server on
127.0.0.1 as a subprocess (``localgalaxy.start``: its own session, output in a log file) and gives a
``StorageAdmin``: the server's own access, to prepare buckets and to check what Galaxy wrote without
going through the plugin.
"""

import abc
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import requests


def wait_until(ready: Callable[[], bool], process: subprocess.Popen, what: str, timeout: float = 60) -> float:
    """Seconds until ``ready()`` is true (connection errors count as not yet); raises if the process
    exits or time runs out."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode} before it was ready")
        try:
            if ready():
                return time.monotonic() - started
        except (requests.RequestException, OSError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} was not ready within {timeout} s")


class StorageAdmin(abc.ABC):
    """The storage server's own access (not a user's): bucket set-up and checks."""

    #: the plugin's provider name: aws, azure, gcp or openstack
    provider: str

    @abc.abstractmethod
    def plugin_settings(self) -> dict:
        """The ``providers.<provider>`` section of cloud_storage_conf.yml for this server."""

    @abc.abstractmethod
    def demo_admin(self) -> dict:
        """The ``admin`` entry of demo.json for this provider."""

    @abc.abstractmethod
    def create_bucket(self, name: str) -> str: ...

    @abc.abstractmethod
    def put_object(self, bucket: str, key: str, data: bytes) -> None: ...

    def object_putter(self, bucket: str) -> Callable[[str, bytes], None]:
        """``put(key, data)`` into ``bucket`` through one client, for one thread. put_object makes
        a client per call (half a second for boto3's), which a folder of 10,000 cannot afford."""
        return lambda key, data: self.put_object(bucket, key, data)

    def put_objects(self, bucket: str, objects: dict[str, bytes], workers: int = 16) -> None:
        """Many objects at once: a pool of threads, each with a client of its own."""
        local = threading.local()

        def put(item: tuple[str, bytes]) -> None:
            if not hasattr(local, "put"):
                local.put = self.object_putter(bucket)
            local.put(*item)

        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(put, objects.items()))

    @abc.abstractmethod
    def get_object(self, bucket: str, key: str) -> bytes:
        """The object's bytes; KeyError when it does not exist."""

    @abc.abstractmethod
    def delete_object(self, bucket: str, key: str) -> None: ...

    @abc.abstractmethod
    def list_keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every key in the bucket (or container) under ``prefix``, sorted."""
