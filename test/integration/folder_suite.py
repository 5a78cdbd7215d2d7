"""Browsing, folder gets into collections, collection sends under a prefix, and dry runs: the tests
each cloud's class in test_cloud_transfers.py runs (a mixin of ``CloudTransferSuite``, sharing its
Galaxy and its cloud's server)."""

import hashlib
import json

BIG_FOLDER = "big/"
BIG_COUNT = 10000
# The test Galaxy's max_objects_per_request (base.py): below the big folder's size.
MAX_OBJECTS = 5000
FASTQ = b"@r1\nACGT\n+\nIIII\n"


class FolderSuite:
    """Needs CloudTransferSuite's helpers (cloud_get, cloud_send, put_object, ...)."""

    #: whether the class's authorization may list the account's buckets (moto's IAM policy for
    #: the test user grants one bucket only, as a scoped role does)
    authz_lists_buckets = True

    # -- helpers ---------------------------------------------------------------------------------

    def list_objects(self, authz_id=None, **params):
        query = {"authz_id": authz_id or self.authz_id, "bucket": self.cloud.bucket, **params}
        return self._get("cloud/storage/objects", data=query)

    def walk(self, **params) -> tuple[list[str], list[str], int]:
        """Every key and folder of a listing, page by page; and the number of pages."""
        keys, folders, token, pages = [], [], None, 0
        while True:
            response = self.list_objects(**params, **({"page_token": token} if token else {}))
            assert response.status_code == 200, response.text
            page = response.json()
            pages += 1
            assert len(page["objects"]) + len(page["folders"]) <= params.get("limit", 100)
            keys += [o["key"] for o in page["objects"]]
            folders += page["folders"]
            token = page["next_page_token"]
            if token is None:
                return keys, folders, pages

    def put_many(self, items: dict) -> None:
        self.cloud.admin.put_objects(self.cloud.bucket, items)

    def holds(self, key: str) -> bool:
        return self.cloud.admin.list_keys(self.cloud.bucket, key) == [key]

    def contents(self):
        return self._get(f"histories/{self.history_id}/contents").json()

    def collection(self, collection_id: str) -> dict:
        return self._get(f"dataset_collections/{collection_id}", data={"instance_type": "history"}).json()

    def structure(self, collection: dict) -> dict:
        """identifier -> the element's bytes, or a nested dict for a sub-collection."""
        shape = {}
        for element in collection["elements"]:
            obj = element["object"]
            if element["element_type"] == "dataset_collection":
                shape[element["element_identifier"]] = self.structure(obj)
            else:
                shape[element["element_identifier"]] = self.dataset_bytes(obj["id"])
        return shape

    # -- browsing --------------------------------------------------------------------------------

    def test_buckets_are_listed_or_refused_saying_so(self):
        response = self._get("cloud/storage/buckets", data={"authz_id": self.authz_id})
        if not self.authz_lists_buckets:
            self.assert_error(response, 403, "may not list", "directly")
            return
        assert response.status_code == 200, response.text
        buckets = {bucket["name"]: bucket for bucket in response.json()}
        assert self.cloud.bucket in buckets, buckets
        if self.provider in ("aws", "gcp"):
            assert buckets[self.cloud.bucket]["created"].endswith(("Z", "+00:00"))
        else:  # Azure and Swift say when a container changed, not when it was made
            assert buckets[self.cloud.bucket]["created"] is None
        if self.cloud.limited_authz_config:  # Azure's container SAS, a Swift user with one container's ACL
            refused = self._get("cloud/storage/buckets", data={"authz_id": self.limited_authz_id})
            self.assert_error(refused, 403, "may not list", "directly")

    def big_folder(self) -> list[str]:
        """BIG_COUNT empty objects under BIG_FOLDER, put once per cloud; their keys, sorted."""
        keys = sorted(f"{BIG_FOLDER}{i:05d}-{'x' * (i % 7)}.txt" for i in range(BIG_COUNT))
        if self.cloud.admin.list_keys(self.cloud.bucket, BIG_FOLDER) != keys:
            self.put_many(dict.fromkeys(keys, b""))
        return keys

    def test_a_10000_object_folder_pages_every_key_once_in_the_clouds_order(self):
        keys = self.big_folder()
        listed, folders, pages = self.walk(prefix=BIG_FOLDER, limit=1000)
        assert pages == 10 and folders == []
        assert listed == keys
        first = self.list_objects(prefix=BIG_FOLDER, limit=50).json()
        assert [o["key"] for o in first["objects"]] == keys[:50]
        assert first["objects"][0]["size"] == 0 and first["objects"][0]["last_modified"]
        token = first["next_page_token"]
        second = self.list_objects(prefix=BIG_FOLDER, limit=50, page_token=token).json()
        assert [o["key"] for o in second["objects"]] == keys[50:100]
        # A page token belongs to its listing: one of another prefix or delimiter, or altered, is a 400.
        body, seal = token.split(".")
        for params, given in [
            ({"prefix": "big/0"}, token),
            ({"prefix": BIG_FOLDER, "delimiter": "/"}, token),
            ({"prefix": BIG_FOLDER}, f"{body[:-1]}{'B' if body[-1] == 'A' else 'A'}.{seal}"),
        ]:
            self.assert_error(self.list_objects(page_token=given, **params), 400, "page_token")

    def test_folders_with_the_delimiter_unicode_and_slash_heavy_keys(self):
        rules = self.names_rules()
        wanted = [
            "tree/a.txt",
            "tree/sub/b.txt",
            "tree/sub/deeper/c.txt",
            "tree/\u00fcn\u00efc\u00f8de/d.txt",
            "tree//double.txt",
            "tree/x/",  # a folder marker
            "tree/z.txt",
        ]
        keys = [key for key in wanted if rules.key_problem(key) is None]
        self.put_many({key: b"" if key.endswith("/") else key.encode() for key in keys})
        # fake-gcs-server pages a listing by folder wrongly (test_unit_storage_contract.py marks it):
        # on GCS the folder walk is one page, where it is right.
        by_folder_page = 1000 if self.provider == "gcp" else 2
        objects, folders, _ = self.walk(prefix="tree/", delimiter="/", limit=by_folder_page)
        assert objects == sorted(k for k in keys if "/" not in k[len("tree/") :])
        expected = sorted({"tree/" + k[len("tree/") :].split("/")[0] + "/" for k in keys if "/" in k[len("tree/") :]})
        assert folders == expected
        recursive, no_folders, _ = self.walk(prefix="tree/", limit=3)
        assert recursive == sorted(keys) and no_folders == []
        inside, _, _ = self.walk(prefix="tree/\u00fcn\u00efc\u00f8de/", delimiter="/")
        assert inside == ["tree/\u00fcn\u00efc\u00f8de/d.txt"]

    def test_listing_errors(self):
        other = self.cloud.other_bucket
        cases = [
            (self.list_objects(bucket="galaxy-lab-data-missing"), 404, ["does not exist"]),
            (self.list_objects(authz_id=self.limited_authz_id, bucket=other), 403, [other]),
            (self.list_objects(bucket="no/slash"), 400, ["bucket"]),
            (self.list_objects(limit=0), 400, ["limit"]),
            (self.list_objects(limit=1001), 400, ["limit"]),
            (self.list_objects(delimiter=","), 400, ["delimiter"]),
            (self.list_objects(page_token="bm90LWEtdG9rZW4.c2VhbA"), 400, ["page_token"]),
            (self._get("cloud/storage/buckets", data={"authz_id": "0123456789abcdef"}), 404, []),
        ]
        if self.limited_authz_id == self.authz_id:
            # moto's policy for the test user allows s3:ListBucket on every bucket (moto checks
            # HeadBucket under it, and a narrower grant makes it answer 403 for a missing bucket):
            # S3's denied listing is test_unit_storage_contract's, with a bucket-scoped IAM user.
            del cases[1]
        for response, status, words in cases:
            self.assert_error(response, status, *words)
        with self._different_user("lister@example.org"):
            self.assert_error(self.list_objects(), 404)
            self.assert_error(self._get("cloud/storage/buckets", data={"authz_id": self.authz_id}), 404)

    # -- get of a folder ---------------------------------------------------------------------------

    def test_a_folder_filtered_into_a_list_collection(self):
        files = {
            "run/a.bed": b"chr1\t1\t2\n",
            "run/sub/b.bed": b"chr2\t3\t4\n",
            "run/c.txt": b"not a bed\n",
            "run/skip/d.bed": b"chr3\t5\t6\n",
            "run/": b"",  # the console's folder marker
        }
        self.put_many({key: body for key, body in files.items() if self.names_rules().key_problem(key) is None})
        payload = {"prefix": "run/", "include": ["*.bed"], "exclude": ["skip/*"]}
        plan = self.cloud_get(None, **payload, dry_run=True, collection={"name": "beds", "type": "list"})
        assert plan.status_code == 200, plan.text
        assert plan.json() == {
            "dry_run": True,
            "objects": [
                {"key": "run/a.bed", "size": 9, "name": "a.bed"},
                {"key": "run/sub/b.bed", "size": 9, "name": "sub%2Fb.bed"},
            ],
            "total_bytes": 18,
        }
        assert self.history_size() == 0
        response = self.cloud_get(None, **payload, collection={"name": "beds", "type": "list"})
        assert response.status_code == 200, response.text
        summaries = response.json()
        assert [s["name"] for s in summaries] == ["run/a.bed", "run/sub/b.bed"]
        assert len({s["collection_id"] for s in summaries}) == 1
        hdca = [item for item in self.contents() if item["history_content_type"] == "dataset_collection"]
        assert [(c["id"], c["name"], c["collection_type"]) for c in hdca] == [
            (summaries[0]["collection_id"], "beds", "list")
        ]
        assert self.wait_for_job(summaries[0]["job_id"])["state"] == "ok"
        assert self.structure(self.collection(summaries[0]["collection_id"])) == {
            "a.bed": files["run/a.bed"],
            "sub%2Fb.bed": files["run/sub/b.bed"],
        }
        # Every object of a folder is verified, and its SHA-256 kept on its dataset (invariant 11).
        for summary in summaries:
            hashes = self._get(f"datasets/{summary['id']}").json()["hashes"]
            digest = hashlib.sha256(files[summary["name"]]).hexdigest()
            assert [(h["hash_function"], h["hash_value"]) for h in hashes] == [("SHA-256", digest)], hashes
        # Without a collection: plain datasets, no collection_id in the seed's shape.
        plain = self.cloud_get(None, prefix="run/sub/").json()
        assert [s["name"] for s in plain] == ["run/sub/b.bed"] and "collection_id" not in plain[0]

    def test_paired_reads_into_list_paired_sent_under_a_prefix_and_got_back_equal(self):
        reads = {f"reads/s{n}_R{r}.fastq": FASTQ.replace(b"r1", f"s{n}r{r}".encode()) for n in (1, 2) for r in (1, 2)}
        self.put_many(reads)
        got = self.cloud_get(None, prefix="reads/", collection={"name": "run 7", "type": "list:paired"})
        assert got.status_code == 200, got.text
        summaries = got.json()
        assert [s["name"] for s in summaries] == sorted(reads)
        assert self.wait_for_job(summaries[0]["job_id"])["state"] == "ok"
        collection_id = summaries[0]["collection_id"]
        expected = {f"s{n}": {half: reads[f"reads/s{n}_R{r}.fastq"] for half, r in (("forward", 1), ("reverse", 2))}
                    for n in (1, 2)}  # fmt: skip
        assert self.structure(self.collection(collection_id)) == expected

        plan = self.cloud_send(collection_ids=[collection_id], key_prefix="back/", dry_run=True)
        assert plan.status_code == 200, plan.text
        planned = plan.json()["objects"]
        assert [p["key"] for p in planned] == [f"back/run_7/s{n}/{h}" for n in (1, 2) for h in ("forward", "reverse")]
        assert not any(p["replaces"] for p in planned) and plan.json()["total_bytes"] == sum(map(len, reads.values()))
        assert not self.holds("back/run_7/s1/forward")
        sent = self.cloud_send(collection_ids=[collection_id], key_prefix="back/")
        assert sent.status_code == 200, sent.text
        labels = [json.loads(label) for label in sent.json()["sent_dataset_labels"]]
        assert [label["object"] for label in labels] == [p["key"] for p in planned]
        assert self.wait_for_job(labels[0]["job_id"])["state"] == "ok"
        assert self.read_object("back/run_7/s2/reverse") == reads["reads/s2_R2.fastq"]

        again = self.cloud_get(None, prefix="back/run_7/", collection={"name": "again", "type": "list:paired"}).json()
        assert self.wait_for_job(again[0]["job_id"])["state"] == "ok"
        assert self.structure(self.collection(again[0]["collection_id"])) == expected
        # Sent again without replacing: each object gets the date suffix; replacing says so.
        replacing = self.cloud_send(collection_ids=[collection_id], key_prefix="back/", dry_run=True,
                                    overwrite_existing=True).json()  # fmt: skip
        assert all(p["replaces"] for p in replacing["objects"])
        keeping = self.cloud_send(collection_ids=[collection_id], key_prefix="back/", dry_run=True).json()
        assert all(p["key"].startswith("back/run_7/s") and p["key"][-14:-13] == "_" for p in keeping["objects"])

    def test_folder_gets_that_cannot_be_done_create_nothing(self):
        self.big_folder()
        self.put_many({"lonely/s1_R1.fastq": FASTQ, "lonely/s1_R2.fastq": FASTQ, "lonely/s2_R1.fastq": FASTQ})
        before_history, before_jobs = self.history_size(), self.job_count()
        paired = {"name": "p", "type": "list:paired"}
        cases = [
            (self.cloud_get(None, prefix="lonely/", collection=paired), 400, ["lonely/s2_R1.fastq", "mate"]),
            (self.cloud_get(None, prefix="lonely/", collection=paired, dry_run=True), 400, ["mate"]),
            (self.cloud_get(None, prefix="nothing-here/"), 404, ["nothing-here/"]),
            (self.cloud_get(None, prefix="lonely/", include=["*.bam"]), 404, ["include"]),
            (self.cloud_get(["lonely/s1_R1.fastq"], prefix="lonely/"), 400, ["exactly one"]),
            (self.cloud_get(None), 400, ["exactly one"]),
            (self.cloud_get(["lonely/s1_R1.fastq"], include=["*"]), 400, ["include"]),
            (self.cloud_get(None, prefix="lonely/", collection={"name": "x", "type": "list:list"}), 400, ["type"]),
            (self.cloud_get(None, prefix=BIG_FOLDER, dry_run=True), 400, [str(MAX_OBJECTS), "max_objects_per_request"]),
            (self.cloud_send(collection_ids=["0123456789abcdef"]), 404, []),
        ]
        for response, status, words in cases:
            self.assert_error(response, status, *words)
        assert self.history_size() == before_history and self.job_count() == before_jobs

    def test_a_key_in_the_folder_that_the_rules_refuse_is_named_and_can_be_left_out(self):
        hostile = "hostile/del\x7f.txt"  # a control character: the plugin's rules refuse it everywhere
        assert self.names_rules().key_problem(hostile)
        try:
            self.put_object(hostile, b"x")
        except Exception as e:  # the server itself refuses it: nothing for the plugin to meet
            self.skipTest(f"{self.provider}'s server does not hold {hostile!r}: {e}")
        self.put_object("hostile/fine.txt", b"fine\n")
        jobs = self.job_count()
        self.assert_error(self.cloud_get(None, prefix="hostile/"), 400, "del\\x7f", "exclude")
        assert self.job_count() == jobs and self.history_size() == 0
        plan = self.cloud_get(None, prefix="hostile/", exclude=["del*"], dry_run=True)
        assert [o["key"] for o in plan.json()["objects"]] == ["hostile/fine.txt"], plan.text

    def test_a_dry_run_send_creates_nothing_and_names_keys_under_the_prefix(self):
        dataset = self.dataset_populator.new_dataset(self.history_id, content="1\t2\n", name="my table", wait=True)
        jobs = self.job_count()
        plan = self.cloud_send(dataset_ids=[dataset["id"]], key_prefix="results/run-1/", dry_run=True)
        assert plan.status_code == 200, plan.text
        assert plan.json() == {
            "dry_run": True,
            "objects": [{"dataset_id": dataset["id"], "key": "results/run-1/my_table", "size": 4, "replaces": False}],
            "total_bytes": 4,
            "failed_dataset_labels": [],
        }
        assert not self.holds("results/run-1/my_table")
        assert self.job_count() == jobs
        self.assert_error(
            self.cloud_send(dataset_ids=[dataset["id"]], key_prefix="a\x01b/", dry_run=True), 400, "key_prefix"
        )
        assert self.job_count() == jobs

    def names_rules(self):
        from galaxy_cloud_storage.providers import cloud

        return cloud(self.provider).names
