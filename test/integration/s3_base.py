"""A Galaxy with the plugin, and moto (S3 + STS + IAM, enforcement on) as its AWS."""

import os
import tempfile

import localgalaxy
import moto_aws
from base import CloudStorageTestCase
from galaxy_test.base.populators import DatasetPopulator

BUCKET = "galaxy-lab-data"
OTHER_BUCKET = "someone-elses-data"


class S3TestCase(CloudStorageTestCase):
    aws_settings: dict = {}

    @classmethod
    def setUpClass(cls):
        cls.moto_dir = tempfile.mkdtemp(prefix="gcs-moto-")
        port = localgalaxy.free_port()
        cls.moto_url = f"http://127.0.0.1:{port}"
        cls.web_identity_log = os.path.join(cls.moto_dir, "web_identity.jsonl")  # moto_aws.web_identity_calls
        cls.moto = moto_aws.start(port, os.path.join(cls.moto_dir, "moto.log"), cls.moto_dir, web_identity_log=cls.web_identity_log)
        moto_aws.wait_until_up(cls.moto_url, cls.moto)
        cls.aws = moto_aws.make_admin(cls.moto_url)
        cls.aws.create_bucket(BUCKET)
        cls.aws.create_bucket(OTHER_BUCKET)
        try:
            super().setUpClass()
        except Exception:
            localgalaxy.stop(cls.moto)
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            localgalaxy.stop(cls.moto)

    @classmethod
    def plugin_settings(cls) -> dict:
        aws = {"s3_endpoint_url": cls.moto_url, "sts_endpoint_url": cls.moto_url, **cls.aws_settings}
        return {**cls.plugin_config, "providers": {**cls.plugin_config.get("providers", {}), "aws": aws}}

    def setUp(self):
        super().setUp()
        self.dataset_populator = DatasetPopulator(self.galaxy_interactor)

    # -- helpers -----------------------------------------------------------------------------------

    def put_object(self, key: str, body: bytes, bucket: str = BUCKET) -> None:
        self.aws.client("s3").put_object(Bucket=bucket, Key=key, Body=body)

    def read_object(self, key: str, bucket: str = BUCKET) -> bytes:
        return self.aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()

    def object_keys(self, bucket: str = BUCKET) -> list[str]:
        listed = self.aws.client("s3").list_objects_v2(Bucket=bucket)
        return [item["Key"] for item in listed.get("Contents", [])]
