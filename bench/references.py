"""What cloud_bench.py compares the plugin with, per provider: the cloud's own SDK set up as the
plugin sets it up (same part size, same parts and objects in flight) and rclone's remote for the
same server, both with the same short-lived credentials a transfer job of the plugin receives.

A ``Reference`` moves whole workloads (``download_all``, ``upload_all``): by default one object per
thread, the plugin engine's DEFAULT_WORKERS at a time, as transfer/engine.py runs them; swiftclient's
SwiftService has its own object pool and gets the workload in one call.
"""

import base64
import hashlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

MiB = 1024**2


@dataclass
class Remote:
    """rclone's remote named ``name`` (defined by RCLONE_CONFIG_<NAME>_* variables), or why there is none."""

    env: Optional[dict] = None
    extra_args: tuple = ()
    note: str = ""
    unavailable: str = ""
    name: str = "bench"


def mint_credentials(cloud) -> tuple[Any, dict]:
    """The credentials a transfer job would get for ``cloud.authz_config`` (the plugin's own
    delegation code, as the job handler runs it), and the authorization's public config."""
    from galaxy_cloud_storage.providers import cloud as cloud_plugin

    plugin = cloud_plugin(cloud.provider)
    config = plugin.authz_config_model.model_validate(cloud.authz_config)
    if config.needs_oidc_identity:
        # Exchanging a Galaxy login needs Galaxy's OIDC session; the bench's authorizations are stored secrets.
        raise RuntimeError(
            f"{cloud.provider}: the bench needs an authorization with a stored secret, not mode {config.mode}"
        )
    credentials = plugin.mint(plugin.settings_model(**cloud.settings), config, login=None)
    return credentials, config.public_dict()


class Reference:
    """One provider's SDK, as the plugin's backend configures it."""

    sdk = ""

    def __init__(self, cloud, credentials, config: dict, workers: int):
        self.cloud, self.bucket, self.credentials, self.config = cloud, cloud.bucket, credentials, config
        self.settings = cloud.settings
        # The admin's tuning (part and chunk sizes, retries) as the plugin reads it, defaults included.
        from galaxy_cloud_storage.providers import cloud as cloud_plugin

        self.tuning = cloud_plugin(cloud.provider).settings_model(**cloud.settings)
        self.workers = workers  # objects in flight, as the plugin's engine

    # what the report records about the reference's settings
    def describe(self) -> dict:
        raise NotImplementedError

    def download(self, key: str, path: str) -> None:
        raise NotImplementedError

    def upload(self, path: str, key: str) -> None:
        raise NotImplementedError

    def head(self, key: str) -> tuple[int, Optional[str]]:
        """Size and fingerprint (see ``fingerprint``) of an object, as the server reports them."""
        raise NotImplementedError

    def fingerprint(self, path: str, size: int) -> Optional[str]:
        """What ``head`` reports for ``path``'s bytes sent in the plugin's parts; None where the
        server keeps nothing comparable (then only sizes are checked)."""
        raise NotImplementedError

    def put_bytes(self, key: str, data: bytes) -> None:
        """One small object in one request (browse_bench.py's seeding; safe from several threads)."""
        raise NotImplementedError

    def list_page(
        self, prefix: str, delimiter: Optional[str], limit: int, token: Optional[str]
    ) -> tuple[list[str], list[str], Optional[str]]:
        """One listing call: the page's keys, its folders (common prefixes, with a delimiter) and the
        cloud's own token of the next page (None after the last), as the SDK pages it."""
        raise NotImplementedError

    def download_all(self, pairs: list[tuple[str, str]]) -> None:
        """(key, local path) pairs."""
        self._parallel(lambda pair: self.download(*pair), pairs)

    def upload_all(self, pairs: list[tuple[str, str]]) -> None:
        """(local path, key) pairs."""
        self._parallel(lambda pair: self.upload(*pair), pairs)

    def delete_prefix(self, prefix: str) -> None:
        """Objects the bench wrote go once checked: every emulator keeps them on disk or in memory."""
        for container in self.containers():
            for key in self.cloud.admin.list_keys(container, prefix):
                self.cloud.admin.delete_object(container, key)

    def containers(self) -> list[str]:
        return [self.bucket]

    def close(self) -> None:
        pass

    def _parallel(self, do, items: list) -> None:
        with ThreadPoolExecutor(max_workers=max(1, min(self.workers, len(items)))) as pool:
            list(pool.map(do, items))

    def rclone(self, work: Path) -> Remote:
        return Remote(unavailable=f"no rclone backend for {self.cloud.provider}")


def md5_hex(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "md5").hexdigest()


def rclone_base_env(work: Path) -> dict:
    empty = work / "rclone.conf"
    empty.touch()
    # Only the remote's own settings: this machine's AWS_CA_BUNDLE & co. would make rclone look
    # for a TLS bundle even for a plain-HTTP endpoint, and fail.
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RCLONE_"))}
    return {**inherited, "RCLONE_CONFIG": str(empty)}


def remote_env(work: Path, **options: str) -> dict:
    return {**rclone_base_env(work), **{f"RCLONE_CONFIG_BENCH_{k.upper()}": v for k, v in options.items()}}


# -- AWS: boto3's transfer manager ----------------------------------------------------------------


class Boto3Reference(Reference):
    sdk = "boto3"

    def __init__(self, cloud, credentials, config, workers):
        super().__init__(cloud, credentials, config, workers)
        import boto3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        from galaxy_cloud_storage.providers.aws import storage as aws

        self.part_size = self.tuning.part_size
        self.endpoint = self.settings["s3_endpoint_url"]
        # As providers/aws/storage.py configures the plugin's client and transfers.
        client_config = Config(
            retries=aws.RETRIES, signature_version="s3v4", connect_timeout=10,
            max_pool_connections=8 * aws.CONCURRENCY, s3={"addressing_style": "path"},
        )  # fmt: skip
        self.client = boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint, region_name=config.get("region") or "us-east-1", config=client_config,
            aws_access_key_id=credentials.access_key_id, aws_secret_access_key=credentials.secret_access_key,
            aws_session_token=credentials.session_token,
        )  # fmt: skip
        self.transfer = TransferConfig(
            multipart_threshold=self.part_size, multipart_chunksize=self.part_size,
            max_concurrency=aws.CONCURRENCY, use_threads=True, preferred_transfer_client="classic",
        )  # fmt: skip
        self.concurrency = aws.CONCURRENCY

    def describe(self) -> dict:
        return {
            "sdk": "boto3 download_file/upload_file",
            "part_size": self.part_size,
            "parts_in_parallel": self.concurrency,
        }

    def download(self, key, path):
        self.client.download_file(self.bucket, key, path, Config=self.transfer)

    def upload(self, path, key):
        self.client.upload_file(path, self.bucket, key, Config=self.transfer)

    def put_bytes(self, key, data):
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data)

    def list_page(self, prefix, delimiter, limit, token):
        extra = {"Delimiter": delimiter} if delimiter else {}
        if token:
            extra["ContinuationToken"] = token
        page = self.client.list_objects_v2(Bucket=self.bucket, Prefix=prefix, MaxKeys=limit, **extra)
        return (
            [item["Key"] for item in page.get("Contents", [])],
            [item["Prefix"] for item in page.get("CommonPrefixes", [])],
            page.get("NextContinuationToken"),
        )

    def head(self, key):
        head = self.client.head_object(Bucket=self.bucket, Key=key)
        return head["ContentLength"], head["ETag"].strip('"')

    def fingerprint(self, path, size):
        """S3's ETag of an upload in part_size parts: MD5 of the parts' MD5s, and their count."""
        with open(path, "rb") as fh:
            if size < self.part_size:
                return hashlib.md5(fh.read()).hexdigest()
            digests = []
            while chunk := fh.read(self.part_size):
                digests.append(hashlib.md5(chunk).digest())
        return f"{hashlib.md5(b''.join(digests)).hexdigest()}-{len(digests)}"

    def rclone(self, work):
        env = remote_env(
            work, type="s3", provider="Other", endpoint=self.endpoint, region="us-east-1",
            access_key_id=self.credentials.access_key_id, secret_access_key=self.credentials.secret_access_key,
            session_token=self.credentials.session_token or "", force_path_style="true",
        )  # fmt: skip
        return Remote(
            env,
            ("--s3-no-check-bucket",),
            "s3 backend, provider Other, rclone's defaults (5 MiB parts, 4 ranges per big download)",
        )


# -- Azure: azure-storage-blob --------------------------------------------------------------------


class StaticToken:
    """An azure.core TokenCredential for the one bearer token the job would get."""

    def __init__(self, token: str, expires_on: int):
        self.token, self.expires_on = token, expires_on

    def get_token(self, *scopes, **kwargs):
        from azure.core.credentials import AccessToken

        return AccessToken(self.token, self.expires_on)


class AzureBlobReference(Reference):
    sdk = "azure-storage-blob"

    def __init__(self, cloud, credentials, config, workers):
        super().__init__(cloud, credentials, config, workers)
        from azure.core.credentials import AzureSasCredential
        from azure.storage.blob import BlobServiceClient

        from galaxy_cloud_storage.providers.azure import storage as azure

        self.block_size, self.chunk_size = self.tuning.block_size, self.tuning.chunk_size
        self.concurrency = azure.CONCURRENCY
        self.account_url = self.settings["blob_endpoint"].format(account=config["storage_account"]).rstrip("/")
        if credentials.access_token:
            expires = int(credentials.expires_on.timestamp()) if credentials.expires_on else 2**31
            credential: Any = StaticToken(credentials.access_token, expires)
        else:
            credential = AzureSasCredential(credentials.sas_token.lstrip("?"))
        # The block and range sizes providers/azure/storage.py gives the plugin's client; the SDK's retry policy.
        self.service = BlobServiceClient(
            self.account_url, credential=credential, connection_verify=self.settings.get("ca_bundle") or True,
            max_block_size=self.block_size, max_single_put_size=self.block_size,
            max_single_get_size=self.chunk_size, max_chunk_get_size=self.chunk_size,
        )  # fmt: skip

    def describe(self):
        return {
            "sdk": "azure-storage-blob download_blob/upload_blob",
            "part_size": self.block_size,
            "range_size": self.chunk_size,
            "parts_in_parallel": self.concurrency,
        }

    def download(self, key, path):
        with open(path, "wb") as fh:
            self.service.get_blob_client(self.bucket, key).download_blob(max_concurrency=self.concurrency).readinto(fh)

    def upload(self, path, key):
        with open(path, "rb") as fh:
            self.service.get_blob_client(self.bucket, key).upload_blob(
                fh, length=os.path.getsize(path), overwrite=True, max_concurrency=self.concurrency
            )

    def put_bytes(self, key, data):
        self.service.get_blob_client(self.bucket, key).upload_blob(data, overwrite=True)

    def list_page(self, prefix, delimiter, limit, token):
        from azure.storage.blob import BlobPrefix

        container = self.service.get_container_client(self.bucket)
        if delimiter:  # walk_blobs is list_blobs with a delimiter: BlobPrefix items are the folders
            paged = container.walk_blobs(name_starts_with=prefix, delimiter=delimiter, results_per_page=limit)
        else:
            paged = container.list_blobs(name_starts_with=prefix, results_per_page=limit)
        pages = paged.by_page(token)
        items = list(next(pages))  # one List Blobs call (a BlobPrefix lists nothing until iterated)
        folders = [item.name for item in items if isinstance(item, BlobPrefix)]
        keys = [item.name for item in items if not isinstance(item, BlobPrefix)]
        return keys, folders, pages.continuation_token or None

    def head(self, key):
        properties = self.service.get_blob_client(self.bucket, key).get_blob_properties()
        md5 = properties.content_settings.content_md5
        return properties.size, bytes(md5).hex() if md5 else None

    def fingerprint(self, path, size):
        # The service computes Content-MD5 for a blob put in one request only; one committed from
        # a block list (above the block size) has none.
        return md5_hex(path) if size <= self.block_size else None

    def rclone(self, work):
        from galaxy_cloud_storage_testing import azurite

        # rclone 1.60 can neither ask the admin's Entra authority for a token nor take one minted
        # elsewhere: it uses the emulator's well-known account key, over the same HTTPS endpoint.
        env = remote_env(
            work,
            type="azureblob",
            use_emulator="true",
            endpoint=self.account_url,
            account=azurite.ACCOUNT,
            key=azurite.ACCOUNT_KEY,
        )
        ca = self.settings.get("ca_bundle")
        return Remote(
            env,
            ("--ca-cert", ca) if ca else (),
            "azureblob backend, emulator account key (not the bearer token), rclone's defaults (4 MiB blocks)",
        )


# -- Google Cloud Storage: google-cloud-storage --------------------------------------------------


class GcsReference(Reference):
    sdk = "google-cloud-storage"

    def __init__(self, cloud, credentials, config, workers):
        super().__init__(cloud, credentials, config, workers)
        import requests
        from google.auth.transport.requests import AuthorizedSession
        from google.cloud import storage
        from google.oauth2.credentials import Credentials

        from galaxy_cloud_storage.providers.gcp import storage as gcp

        self.chunk_size, self.concurrency = self.tuning.chunk_size, gcp.CONCURRENCY
        self.endpoint = str(self.settings["storage_endpoint"]).rstrip("/")
        session = AuthorizedSession(Credentials(token=credentials.access_token))
        session.verify = self.settings.get("ca_bundle") or True
        # requests' default pool keeps 10 connections: the ranges of 4 objects at a time need 16.
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=4 * self.concurrency)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        self.client = storage.Client(
            project=config.get("project"), credentials=session.credentials, _http=session,
            client_options={"api_endpoint": self.endpoint},
        )  # fmt: skip

    def describe(self):
        return {
            "sdk": (
                "google-cloud-storage transfer_manager.download_chunks_concurrently (threads)"
                " / resumable upload_from_filename"
            ),
            "part_size": self.chunk_size, "parts_in_parallel": self.concurrency,
        }  # fmt: skip

    def download(self, key, path):
        from google.cloud.storage import transfer_manager

        blob = self.client.bucket(self.bucket).get_blob(key)
        transfer_manager.download_chunks_concurrently(
            blob, path, chunk_size=self.chunk_size, worker_type=transfer_manager.THREAD, max_workers=self.concurrency
        )

    def upload(self, path, key):
        self.client.bucket(self.bucket).blob(key, chunk_size=self.chunk_size).upload_from_filename(path)

    def put_bytes(self, key, data):
        self.client.bucket(self.bucket).blob(key).upload_from_string(data)

    def list_page(self, prefix, delimiter, limit, token):
        listing = self.client.list_blobs(
            self.bucket, prefix=prefix, delimiter=delimiter, page_size=limit, page_token=token
        )
        page = next(listing.pages)  # one objects.list call
        keys = [blob.name for blob in page]
        return keys, sorted(page.prefixes), listing.next_page_token

    def head(self, key):
        blob = self.client.bucket(self.bucket).get_blob(key)
        return blob.size, blob.md5_hash

    def fingerprint(self, path, size):
        with open(path, "rb") as fh:
            digest = hashlib.md5()
            while block := fh.read(8 * MiB):
                digest.update(block)
        return base64.b64encode(digest.digest()).decode()

    def rclone(self, work):
        # rclone's gcs backend takes an OAuth token as JSON: with no refresh token it uses the
        # job's access token as it is, through the same endpoint (and token checks) as the plugin.
        import json

        token = json.dumps(
            {"access_token": self.credentials.access_token, "token_type": "Bearer", "expiry": "2100-01-01T00:00:00Z"}
        )
        env = remote_env(
            work, type="gcs", endpoint=f"{self.endpoint}/storage/v1/", token=token, bucket_policy_only="true"
        )
        ca = self.settings.get("ca_bundle")
        return Remote(
            env,
            ("--ca-cert", ca) if ca else (),
            "gcs backend with the job's access token, rclone's defaults (8 MiB upload chunks)",
        )


# -- OpenStack Swift: swiftclient's SwiftService --------------------------------------------------


class SwiftServiceReference(Reference):
    """The swift CLI's engine: SLO segments of the plugin's size, as many in flight, objects in its
    own pool (DEFAULT_WORKERS of them)."""

    sdk = "swiftclient SwiftService"

    def __init__(self, cloud, credentials, config, workers):
        super().__init__(cloud, credentials, config, workers)
        from swiftclient.service import SwiftService

        from galaxy_cloud_storage.providers.openstack import storage as openstack

        self.segment_size, self.concurrency = self.tuning.segment_size, openstack.CONCURRENCY
        # Explicit storage URL and token: nothing from OS_* variables is used to authenticate.
        self.service = SwiftService(options={
            "os_storage_url": credentials.storage_url, "os_auth_token": credentials.token,
            "os_cacert": self.settings.get("ca_bundle"), "retries": openstack.RETRIES,
            "segment_size": self.segment_size, "use_slo": True, "segment_threads": self.concurrency,
            "object_uu_threads": self.workers, "object_dd_threads": self.workers,
        })  # fmt: skip

    def describe(self):
        return {
            "sdk": "swiftclient SwiftService download/upload (SLO)",
            "part_size": self.segment_size,
            "parts_in_parallel": self.concurrency,
        }

    def connection(self):
        """A swiftclient Connection of this thread's own (one is not safe across threads), with the
        job's storage URL and token."""
        from swiftclient.client import Connection

        from galaxy_cloud_storage.providers.openstack import storage as openstack

        local = self.__dict__.setdefault("_local", threading.local())
        if not hasattr(local, "connection"):
            local.connection = Connection(
                preauthurl=self.credentials.storage_url, preauthtoken=self.credentials.token,
                cacert=self.settings.get("ca_bundle"), retries=openstack.RETRIES,
            )  # fmt: skip
        return local.connection

    def put_bytes(self, key, data):
        self.connection().put_object(self.bucket, key, data)

    def list_page(self, prefix, delimiter, limit, token):
        # Swift has no page token: the next page starts after the last name (the marker).
        _, items = self.connection().get_container(
            self.bucket, prefix=prefix, delimiter=delimiter, limit=limit, marker=token or ""
        )
        keys = [item["name"] for item in items if "name" in item]
        folders = [item["subdir"] for item in items if "subdir" in item]
        last = items[-1].get("name", items[-1].get("subdir")) if len(items) == limit else None
        return keys, folders, last

    @staticmethod
    def _check(results) -> None:
        failed = [r for r in results if not r.get("success")]
        if failed:
            raise RuntimeError(
                f"SwiftService: {failed[0].get('action')} {failed[0].get('object')}: {failed[0].get('error')}"
            )

    def download_all(self, pairs):
        # One call for the workload (the service runs object_dd_threads of them at a time), the
        # keys' folder taken off their names so that each lands at its path. No MD5 of what was
        # read (checksum off): the SDK's own download, as fast as it goes.
        folders = {(os.path.dirname(key), os.path.dirname(path)) for key, path in pairs}
        names_match = all(os.path.basename(key) == os.path.basename(path) for key, path in pairs)
        if len(folders) != 1 or not names_match:
            raise ValueError("SwiftService downloads one folder of keys into one directory, under the same names")
        ((prefix, directory),) = folders
        options = {"out_directory": directory, "prefix": f"{prefix}/", "remove_prefix": True, "checksum": False}
        self._check(self.service.download(self.bucket, [key for key, _ in pairs], options))

    def upload_all(self, pairs):
        from swiftclient.service import SwiftUploadObject

        # The MD5 of every segment is checked against Swift's ETag, as the plugin does.
        objects = [SwiftUploadObject(path, object_name=key) for path, key in pairs]
        self._check(self.service.upload(self.bucket, objects, {"checksum": True}))

    def head(self, key):
        result = self.service.stat(self.bucket, [key])
        result = next(iter(result))
        if not result["success"]:
            raise RuntimeError(f"stat {key}: {result['error']}")
        headers = result["headers"]
        return int(headers["content-length"]), headers["etag"].strip('"')

    def fingerprint(self, path, size):
        """Swift's ETag: the MD5 of the bytes, or for an SLO the MD5 of its segments' MD5s (hex)."""
        if size <= self.segment_size:
            return md5_hex(path)
        hexes = []
        with open(path, "rb") as fh:
            while chunk := fh.read(self.segment_size):
                hexes.append(hashlib.md5(chunk).hexdigest())
        return hashlib.md5("".join(hexes).encode()).hexdigest()

    def containers(self):
        return [self.bucket, f"{self.bucket}_segments"]  # an SLO's segments outlive its manifest's deletion

    def close(self):
        self.service.__exit__(None, None, None)

    def rclone(self, work):
        env = remote_env(
            work, type="swift", auth=str(self.settings["v1_auth_url"]), auth_version="1",
            user=self.cloud.authz_config["swift_user"], key=self.cloud.authz_config["swift_key"],
        )  # fmt: skip
        return Remote(
            env, (), "swift backend, v1 auth with the same user, rclone's defaults (objects up to 5 GiB in one PUT)"
        )


REFERENCES = {
    "aws": Boto3Reference,
    "azure": AzureBlobReference,
    "gcp": GcsReference,
    "openstack": SwiftServiceReference,
}


def reference_for(cloud) -> Reference:
    """A reference client with freshly minted credentials (made per workload: tokens expire)."""
    from galaxy_cloud_storage.transfer.engine import DEFAULT_WORKERS

    credentials, config = mint_credentials(cloud)
    return REFERENCES[cloud.provider](cloud, credentials, config, DEFAULT_WORKERS)
