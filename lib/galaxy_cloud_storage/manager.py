"""CloudManager: browsing, get and send on Galaxy's histories, datasets, collections and jobs.

Everything a request can get wrong is checked before anything is created (invariant 6, docs/design.rst): the
history, the authorization, the credentials, the bucket and every object. Then one job does the
whole request (invariant 9); its credentials are minted again when the job runs (see jobs.py).
"""

import json
import logging
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Hashable, Iterable, Iterator, Optional

from galaxy import exceptions
from galaxy.managers.histories import HistoryManager
from galaxy.model import (
    HistoryDatasetAssociation,
    HistoryDatasetCollectionAssociation,
    Job,
    JobToOutputDatasetAssociation,
)
from galaxy.model.dataset_collections.builder import CollectionBuilder
from galaxy.model.dataset_collections.type_description import COLLECTION_TYPE_DESCRIPTION_FACTORY
from sqlalchemy import insert, select

from .authz.delegation import CredentialBroker
from .authz.manager import CloudAuthzManager
from .browsing import RecentBackends
from .config import PluginConfig
from .contracts import GetInputArgs, input_name, output_name, TRANSFER_PARAMETER, TransferRequest
from .folders import (
    element_key,
    FolderError,
    FORWARD,
    identifier_for_key,
    is_folder_marker,
    pair_keys,
    relative_key,
    REVERSE,
    selected,
)
from .jobs import GET_TOOL_ID, SEND_TOOL_ID
from .listing import InvalidPageToken, Listing, PageTokens
from .providers import cloud
from .providers.names import InvalidName, NameRules
from .providers.storage import AccessDenied, BucketNotFound, MAX_PAGE_SIZE, ObjectInfo, StorageBackend, StorageError
from .schema import (
    CloudBucket,
    CloudDatasetSummary,
    CloudObject,
    CloudObjectListing,
    CloudStorageGetPayload,
    CloudStorageGetPlan,
    CloudStorageSendPayload,
    CloudStorageSendPlan,
    CloudStorageSendResponse,
    NewCollection,
    PlannedGet,
    PlannedSend,
)
from .sessions import release_connection

log = logging.getLogger(__name__)

OVERWRITE_SUFFIX = "_%y%m%d_%H%M%S"  # the old API's rule for a name that is taken
SHOWN_PROBLEMS = 10  # a 400 lists this many bad names at most
# A folder get lists this many times the admin's limit at most to count what is under its prefix.
COUNTED_BEYOND_LIMIT = 10


def object_name(dataset_name: str) -> str:
    return (dataset_name or "dataset").replace(" ", "_")


def repeated(items: Iterable[Hashable]) -> list:
    """The items that occur more than once, in order of first occurrence (one pass: a request's
    lists hold up to 10,000 items)."""
    return [item for item, count in Counter(items).items() if count > 1]


def unique_object_names(wanted: list[str], taken: set[str], suffix: str, hids: list[int]) -> list[str]:
    """The old API's rule, in one pass: a name that is ``taken`` (in the bucket) or was given to an
    earlier dataset of the request gets ``suffix``, then the dataset's hid if that is given too."""
    given: set[str] = set()
    names = []
    for name, hid in zip(wanted, hids, strict=True):
        if name in taken or name in given:
            name = f"{name}{suffix}"
        if name in given:
            name = f"{name}_{hid}"
        given.add(name)
        names.append(name)
    return names


@dataclass(frozen=True)
class Element:
    """An object a get copies, and where its dataset goes in the new collection (if any): one
    identifier per nesting level."""

    key: str
    size: int
    path: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return "/".join(self.path) or self.key


@dataclass(frozen=True)
class Outgoing:
    """A dataset a send copies, and its object's name before the key prefix and the overwrite rule."""

    hda: HistoryDatasetAssociation
    name: str


def problems_message(field: str, problems: list[str], consequence: str) -> str:
    shown = "; ".join(problems[:SHOWN_PROBLEMS])
    more = f" (and {len(problems) - SHOWN_PROBLEMS} more)" if len(problems) > SHOWN_PROBLEMS else ""
    return f"{field}: {shown}{more}. {consequence}"


class CloudManager:
    def __init__(self, app, authz_manager: CloudAuthzManager, broker: CredentialBroker, config: PluginConfig):
        self.app = app
        self.authz_manager = authz_manager
        self.broker = broker
        self.config = config
        self.page_tokens = PageTokens(app.config.id_secret)
        self.browsing_backends = RecentBackends()

    # -- browsing --------------------------------------------------------------------------------

    def buckets(self, trans, authz_id: int) -> list[CloudBucket]:
        authz = self.authz_manager.get_owned(trans, authz_id)
        backend = self._browsing_backend(trans, authz)
        try:
            found = backend.list_buckets()
        except AccessDenied as e:
            raise exceptions.ItemAccessibilityException(
                f"{str(e).rstrip('.')}. This authorization may not list {backend.noun}s (common for a role scoped to "
                f"one {backend.noun}), which says nothing about using one: name the {backend.noun} directly in "
                "get, send and the object listing."
            ) from e
        except StorageError as e:
            raise exceptions.UpstreamProxyError(str(e)) from e
        return [CloudBucket(name=bucket.name, created=bucket.created) for bucket in found]

    def objects(
        self,
        trans,
        authz_id: int,
        bucket: str,
        prefix: str = "",
        delimiter: Optional[str] = None,
        limit: int = 100,
        page_token: Optional[str] = None,
    ) -> CloudObjectListing:
        """One page of the bucket's objects under ``prefix``: one listing call to the cloud, the
        page token sealed to this listing (listing.py)."""
        authz = self.authz_manager.get_owned(trans, authz_id)
        rules = cloud(authz.provider).names
        self._check_bucket_name(rules, bucket)
        self._check_prefix(rules, "prefix", prefix)
        listing = Listing(trans.user.id, authz.id, bucket, prefix, delimiter)
        try:
            continuation = self.page_tokens.continuation(listing, page_token)
        except InvalidPageToken as e:
            raise exceptions.RequestParameterInvalidException(str(e)) from e
        backend = self._browsing_backend(trans, authz)
        release_connection(trans.sa_session)  # the listing waits on the cloud
        page = self._storage_call(backend.list_page, bucket, prefix, delimiter, limit, continuation)
        return CloudObjectListing(
            bucket=bucket,
            prefix=prefix,
            objects=[CloudObject(key=o.key, size=o.size, last_modified=o.last_modified) for o in page.objects],
            folders=page.folders,
            next_page_token=self.page_tokens.issue(listing, page.continuation),
        )

    # -- get -------------------------------------------------------------------------------------

    def get(self, trans, payload: CloudStorageGetPayload) -> list[CloudDatasetSummary] | CloudStorageGetPlan:
        if payload.objects is not None and (repeats := repeated(payload.objects)):
            raise exceptions.RequestParameterInvalidException(
                f"objects: each key once please; repeated: {', '.join(repeats[:SHOWN_PROBLEMS])}"
            )
        tool = self._tool(GET_TOOL_ID)
        history = self._writable_history(trans, payload.history_id)
        authz = self.authz_manager.get_owned(trans, payload.authz_id)
        rules = cloud(authz.provider).names
        self._check_bucket_name(rules, payload.bucket)
        if payload.objects is not None:
            if problems := [problem for key in payload.objects if (problem := rules.key_problem(key))]:
                raise exceptions.RequestParameterInvalidException(
                    problems_message("objects", problems, "Nothing was copied.")
                )
            self._check_object_count(len(payload.objects))
        else:
            self._check_prefix(rules, "prefix", payload.prefix)
        backend = self._backend(trans, authz)
        self._check_bucket(backend, payload.bucket)
        if payload.objects is not None:
            found = self._objects_named(backend, payload.bucket, payload.objects)
        else:
            found = self._objects_under(backend, rules, payload)
        elements = self._elements(found, payload.prefix or "", payload.collection)
        if payload.dry_run:
            planned = [PlannedGet(key=e.key, size=e.size, name=e.name) for e in elements]
            return CloudStorageGetPlan(objects=planned, total_bytes=sum(e.size for e in elements))

        args = payload.input_args or GetInputArgs()
        keys = [element.key for element in elements]
        outputs = self._new_hdas(trans, history, keys, args, visible=payload.collection is None)
        collection = None
        if payload.collection is not None:
            collection = self._new_collection(history, payload.collection, elements, outputs)
        request = TransferRequest(
            authz_id=authz.id, bucket=payload.bucket, keys=keys, input_args=args, sizes=[e.size for e in elements]
        )
        job = self._new_job(trans, tool, history, request, inputs=[], outputs=outputs)
        # Read before Galaxy's enqueue commits: a commit expires every object, and reading 100
        # datasets back would cost a query each.
        summaries = [self._summary(hda, job, collection) for hda in outputs]
        self._enqueue(trans, job, tool)
        return summaries

    def _objects_named(self, backend: StorageBackend, bucket: str, keys: list[str]) -> list[ObjectInfo]:
        infos = self._stat_all(backend, bucket, keys)
        if missing := [key for key, info in zip(keys, infos, strict=True) if info is None]:
            raise exceptions.ObjectNotFound(
                f"Not in bucket '{bucket}': {', '.join(repr(key) for key in missing)}. Nothing was copied."
            )
        return infos

    def _objects_under(self, backend: StorageBackend, rules: NameRules, payload) -> list[ObjectInfo]:
        """Every object under the payload's prefix that its include and exclude select, folder
        markers left out, from the cloud's listing; refused when there are more than the admin
        allows, or when one of them cannot be named safely (a name from a bucket is hostile)."""
        bucket, prefix, limit = payload.bucket, payload.prefix, self.config.max_objects_per_request
        found: list[ObjectInfo] = []
        listed_all = True
        for listed in self._walk(backend, bucket, prefix):
            if is_folder_marker(listed.key, listed.size):
                continue
            if selected(relative_key(prefix, listed.key), payload.include, payload.exclude):
                found.append(ObjectInfo(listed.key, listed.size))
                if len(found) > COUNTED_BEYOND_LIMIT * limit:
                    listed_all = False
                    break
        if not found:
            filtered = " that include and exclude select" if payload.include or payload.exclude else ""
            raise exceptions.ObjectNotFound(
                f"No object under '{prefix}'{filtered} in {backend.noun} '{bucket}'. Nothing was copied."
            )
        counted = f"{len(found)}" if listed_all else f"more than {COUNTED_BEYOND_LIMIT * limit}"
        self._check_object_count(len(found), counted)
        if problems := [problem for info in found if (problem := rules.key_problem(info.key))]:
            raise exceptions.RequestParameterInvalidException(
                problems_message(
                    "prefix", problems, "Nothing was copied; leave such objects out with exclude to copy the others."
                )
            )
        # Listing may be allowed where reading is not: a 403 here, not a job that fails.
        self._storage_call(backend.stat, bucket, found[0].key)
        return found

    def _walk(self, backend: StorageBackend, bucket: str, prefix: str) -> Iterator:
        continuation = None
        while True:
            page = self._storage_call(backend.list_page, bucket, prefix, None, MAX_PAGE_SIZE, continuation)
            yield from page.objects
            continuation = page.continuation
            if continuation is None:
                return

    def _check_object_count(self, count: int, counted: Optional[str] = None) -> None:
        limit = self.config.max_objects_per_request
        if count > limit:
            raise exceptions.RequestParameterInvalidException(
                f"{counted or count} objects in one request, more than this Galaxy's limit of {limit} "
                "(max_objects_per_request): narrow the prefix or filter with include and exclude. Nothing was copied."
            )

    @staticmethod
    def _elements(found: list[ObjectInfo], prefix: str, collection: Optional[NewCollection]) -> list[Element]:
        """The objects in the order their datasets are made: the collection's element order."""
        if collection is None:
            return [Element(info.key, info.size) for info in found]
        sizes = {info.key: info.size for info in found}
        relatives = [relative_key(prefix, info.key) for info in found]
        if collection.type == "list":
            return [
                Element(info.key, info.size, (identifier_for_key(relative),))
                for info, relative in zip(found, relatives, strict=True)
            ]
        try:
            pairs = pair_keys(relatives, prefix)
        except FolderError as e:
            raise exceptions.RequestParameterInvalidException(f"collection: {e}. Nothing was copied.") from e
        elements = []
        for pair in pairs:
            for half, relative in ((FORWARD, pair.forward), (REVERSE, pair.reverse)):
                key = prefix + relative
                elements.append(Element(key, sizes[key], (pair.name, half)))
        return elements

    def _new_collection(
        self, history, spec: NewCollection, elements: list[Element], hdas: list[HistoryDatasetAssociation]
    ) -> HistoryDatasetCollectionAssociation:
        """The request's collection of its new datasets, as Galaxy's tools build theirs."""
        builder = CollectionBuilder(COLLECTION_TYPE_DESCRIPTION_FACTORY.for_collection_type(spec.type))
        for element, hda in zip(elements, hdas, strict=True):
            level = builder
            for identifier in element.path[:-1]:
                level = level.get_level(identifier)
            level.add_dataset(element.path[-1], hda)
        hdca = HistoryDatasetCollectionAssociation(collection=builder.build(), name=spec.name, visible=True)
        history.add_dataset_collection(hdca)
        return hdca

    def _new_hdas(
        self, trans, history, keys: list[str], args: GetInputArgs, visible: bool = True
    ) -> list[HistoryDatasetAssociation]:
        """One queued dataset per key, added to the history in one go (hids assigned at once);
        hidden when they are a collection's elements, as Galaxy's uploader hides them."""
        hdas = []
        for key in keys:
            # No flush per dataset (one commit for the request), and the new Dataset's state set
            # directly: hda.state= would query dataset collections for each one (100 objects: 3 s).
            hda = HistoryDatasetAssociation(
                name=key,
                extension=args.file_type,
                dbkey=args.dbkey,
                create_dataset=True,
                sa_session=trans.sa_session,
                flush=False,
                visible=visible,
            )
            hda.dataset.state = hda.dataset.states.QUEUED
            trans.sa_session.add(hda)
            hdas.append(hda)
        history.add_datasets(trans.sa_session, hdas, genome_build=args.dbkey, quota=False)
        permissions = self.app.security_agent.history_get_default_permissions(history)
        for hda in hdas:
            self.app.security_agent.set_all_dataset_permissions(hda.dataset, permissions, new=True, flush=False)
        return hdas

    @staticmethod
    def _summary(
        hda: HistoryDatasetAssociation, job: Job, collection: Optional[HistoryDatasetCollectionAssociation] = None
    ) -> CloudDatasetSummary:
        dataset = hda.dataset
        return CloudDatasetSummary(
            collection_id=collection.id if collection is not None else None,
            id=hda.id,
            name=hda.name,
            job_id=job.id,
            state=hda.state,
            create_time=hda.create_time,
            update_time=hda.update_time,
            deleted=hda.deleted,
            purged=hda.purged,
            purgable=dataset.purgable,
            file_size=int(dataset.file_size or 0),
            total_size=int(dataset.total_size or 0),
            uuid=str(dataset.uuid),
        )

    # -- send ------------------------------------------------------------------------------------

    def send(self, trans, payload: CloudStorageSendPayload) -> CloudStorageSendResponse | CloudStorageSendPlan:
        tool = self._tool(SEND_TOOL_ID)
        history = self._writable_history(trans, payload.history_id, for_reading=True)
        authz = self.authz_manager.get_owned(trans, payload.authz_id)
        outgoing = self._datasets_to_send(trans, history, payload.dataset_ids, payload.collection_ids)
        rules = cloud(authz.provider).names
        self._check_bucket_name(rules, payload.bucket)
        self._check_prefix(rules, "key_prefix", payload.key_prefix)
        backend = self._backend(trans, authz)
        self._check_bucket(backend, payload.bucket)

        failed, sendable = [], []
        for item in outgoing:
            reason = self._not_sendable(item.hda, rules, payload.key_prefix + item.name)
            if reason:
                failed.append(json.dumps({"object": item.name, "error": reason}))
            else:
                sendable.append(item)
        release_connection(trans.sa_session)  # the names are looked up in the bucket
        wanted = [payload.key_prefix + item.name for item in sendable]
        # A real send that replaces needs no lookup; a dry run says what it would replace.
        looked_up = payload.dry_run or not payload.overwrite_existing
        taken = self._taken(backend, payload.bucket, wanted) if looked_up else set()
        names = self._object_names(wanted, taken, sendable, payload.overwrite_existing)
        # The date suffix may make a name too long for the cloud: such a dataset is not sent either.
        named = []
        for item, name in zip(sendable, names, strict=True):
            if problem := rules.key_problem(name):
                failed.append(json.dumps({"object": item.name, "error": problem}))
            else:
                named.append((item.hda, name))
        sendable, names = [hda for hda, _ in named], [name for _, name in named]
        if payload.dry_run:
            planned = [
                PlannedSend(dataset_id=hda.id, key=name, size=int(hda.get_size()), replaces=name in taken)
                for hda, name in named
            ]
            return CloudStorageSendPlan(
                objects=planned, total_bytes=sum(p.size for p in planned), failed_dataset_labels=failed
            )
        sent = []
        if sendable:
            request = TransferRequest(
                authz_id=authz.id, bucket=payload.bucket, keys=names, overwrite_existing=payload.overwrite_existing
            )
            job = self._new_job(trans, tool, history, request, inputs=sendable, outputs=[])
            self._enqueue(trans, job, tool)
            job_id = trans.security.encode_id(job.id)
            sent = [json.dumps({"object": name, "job_id": job_id}) for name in names]
        return CloudStorageSendResponse(
            sent_dataset_labels=sent, failed_dataset_labels=failed, bucket_name=payload.bucket
        )

    def _datasets_to_send(
        self, trans, history, dataset_ids: Optional[list[int]], collection_ids: Optional[list[int]]
    ) -> list[Outgoing]:
        """The datasets asked for, then each collection's datasets under a folder of its name; all
        of the history's datasets when neither is given."""
        stmt = select(HistoryDatasetAssociation).where(HistoryDatasetAssociation.history_id == history.id)
        if dataset_ids is None and collection_ids is None:
            stmt = stmt.where(HistoryDatasetAssociation.deleted == False, HistoryDatasetAssociation.purged == False)  # noqa: E712
            hdas = trans.sa_session.scalars(stmt.order_by(HistoryDatasetAssociation.hid))
            return [Outgoing(hda, object_name(hda.name)) for hda in hdas]
        outgoing = []
        if dataset_ids:
            found = {
                hda.id: hda
                for hda in trans.sa_session.scalars(stmt.where(HistoryDatasetAssociation.id.in_(dataset_ids)))
            }
            self._refuse_strangers(trans, "dataset_ids", "datasets", dataset_ids, found)
            outgoing += [Outgoing(found[i], object_name(found[i].name)) for i in dict.fromkeys(dataset_ids)]
        if collection_ids:
            hdcas = trans.sa_session.scalars(
                select(HistoryDatasetCollectionAssociation).where(
                    HistoryDatasetCollectionAssociation.history_id == history.id,
                    HistoryDatasetCollectionAssociation.id.in_(collection_ids),
                )
            )
            found_collections = {hdca.id: hdca for hdca in hdcas}
            self._refuse_strangers(trans, "collection_ids", "collections", collection_ids, found_collections)
            for i in dict.fromkeys(collection_ids):
                hdca = found_collections[i]
                folder = object_name(hdca.name)
                outgoing += [
                    Outgoing(hda, f"{folder}/{element_key(path)}") for path, hda in collection_datasets(hdca.collection)
                ]
        return outgoing

    @staticmethod
    def _refuse_strangers(trans, field: str, noun: str, ids: list[int], found: dict) -> None:
        strangers = [trans.security.encode_id(i) for i in dict.fromkeys(ids) if i not in found]
        if strangers:
            more = f" (and {len(strangers) - SHOWN_PROBLEMS} more)" if len(strangers) > SHOWN_PROBLEMS else ""
            raise exceptions.RequestParameterInvalidException(
                f"{field}: not {noun} of this history: {', '.join(strangers[:SHOWN_PROBLEMS])}{more}. Nothing was sent."
            )

    @staticmethod
    def _not_sendable(hda: HistoryDatasetAssociation, rules: NameRules, key: str) -> Optional[str]:
        if hda.purged:
            return "the dataset is purged"
        if hda.deleted:
            return "the dataset is deleted"
        if hda.state != hda.states.OK:
            return f"the dataset is '{hda.state}', not 'ok'"
        return rules.key_problem(key)

    def _taken(self, backend: StorageBackend, bucket: str, keys: list[str]) -> set[str]:
        return {key for key, info in zip(keys, self._stat_all(backend, bucket, keys), strict=True) if info}

    @staticmethod
    def _object_names(wanted: list[str], taken: set[str], outgoing: list[Outgoing], overwrite: bool) -> list[str]:
        """A key that is taken (in the bucket unless replacing, or by an earlier dataset of this
        request) gets the old API's date suffix, then the hid."""
        suffix = datetime.now().strftime(OVERWRITE_SUFFIX)
        return unique_object_names(wanted, set() if overwrite else taken, suffix, [item.hda.hid for item in outgoing])

    # -- shared ----------------------------------------------------------------------------------

    def _tool(self, tool_id: str):
        tool = self.app.toolbox.get_tool(tool_id)
        if tool is None:
            raise exceptions.ServerNotConfiguredForRequest(
                f"The tool '{tool_id}' is not in this Galaxy's toolbox; the admin adds the plugin's "
                "cloud_storage_tool_conf.xml to tool_config_file (see galaxy-cloud-storage-tool-conf)."
            )
        return tool

    def _writable_history(self, trans, history_id: int, for_reading: bool = False):
        history = self.app[HistoryManager].get_owned(history_id, trans.user, current_history=trans.history)
        if history.user_id != trans.user.id:
            # An admin may write to any history, but a job runs as its history's owner, whose
            # authorization this is not: refused here rather than queued to fail.
            raise exceptions.ItemAccessibilityException(
                "history_id: this history belongs to another user. Cloud transfers run as the history's owner, "
                "with that owner's cloud authorizations: use one of your own histories."
            )
        if history.purged or history.deleted:
            raise exceptions.RequestParameterInvalidException("history_id: the history is deleted; use another one.")
        if getattr(history, "archived", False) and not for_reading:
            raise exceptions.RequestParameterInvalidException("history_id: the history is archived; use another one.")
        return history

    def _backend(self, trans, authz) -> StorageBackend:
        delegation = self.broker.delegate(authz, trans.user)
        try:
            return delegation.backend()
        except AccessDenied as e:
            raise exceptions.ItemAccessibilityException(str(e)) from e
        except StorageError as e:
            raise exceptions.UpstreamProxyError(str(e)) from e

    @staticmethod
    def _check_bucket_name(rules: NameRules, bucket: str) -> None:
        """Invariant 10: before any call, even the credential exchange."""
        try:
            rules.check_bucket(bucket)
        except InvalidName as e:
            raise exceptions.RequestParameterInvalidException(f"bucket: {e}") from e

    def _browsing_backend(self, trans, authz) -> StorageBackend:
        """A recent backend of the user's for this authorization (browsing.py): pages come seconds apart."""
        return self.browsing_backends.get(trans.user.id, authz, lambda: self._backend(trans, authz))

    @staticmethod
    def _check_prefix(rules: NameRules, field: str, prefix: str) -> None:
        if prefix and (problem := rules.prefix_problem(prefix)):
            raise exceptions.RequestParameterInvalidException(f"{field}: {problem}.")

    @staticmethod
    def _storage_call(call, *args):
        """A backend call, its errors as Galaxy's: 404 missing, 403 denied, 502 anything else."""
        try:
            return call(*args)
        except BucketNotFound as e:
            raise exceptions.ObjectNotFound(str(e)) from e
        except AccessDenied as e:
            raise exceptions.ItemAccessibilityException(str(e)) from e
        except StorageError as e:
            raise exceptions.UpstreamProxyError(str(e)) from e

    @staticmethod
    def _check_bucket(backend: StorageBackend, bucket: str) -> None:
        try:
            backend.check_bucket(bucket)
        except BucketNotFound as e:
            raise exceptions.ObjectNotFound(str(e)) from e
        except AccessDenied as e:
            raise exceptions.ItemAccessibilityException(
                f"{str(e).rstrip('.')}. Check that your authorization's role or account may use it."
            ) from e
        except StorageError as e:
            raise exceptions.UpstreamProxyError(str(e)) from e

    @staticmethod
    def _stat_all(backend: StorageBackend, bucket: str, keys: list[str]) -> list:
        try:
            return backend.stat_many(bucket, keys)
        except AccessDenied as e:
            raise exceptions.ItemAccessibilityException(str(e)) from e
        except StorageError as e:
            raise exceptions.UpstreamProxyError(str(e)) from e

    def _new_job(self, trans, tool, history, request: TransferRequest, inputs: list, outputs: list) -> Job:
        """One job for the whole request, built as Galaxy's upload tool builds its jobs; flushed
        (ids assigned), not committed. Its one parameter is the request (contracts.TransferRequest)."""
        session = trans.sa_session
        job = Job()
        session.add(job)
        job.galaxy_version = self.app.config.version_major
        galaxy_session = trans.galaxy_session
        if galaxy_session is not None:
            job.session_id = galaxy_session.id
        job.user_id = trans.user.id
        job.history_id = history.id
        job.tool_id = tool.id
        job.tool_version = tool.version
        for name, value in tool.params_to_strings({TRANSFER_PARAMETER: request.model_dump_json()}, self.app).items():
            job.add_parameter(name, value)
        for i, hda in enumerate(inputs):
            job.add_input_dataset(input_name(i), hda)
        for hda in outputs:
            hda.dataset.job = job  # the outputs' creating job, as Job.add_output_dataset sets it
        job.set_state(job.states.NEW)
        session.flush()
        if outputs:
            # The job's outputs in one INSERT. Job.add_output_dataset adds each association to the
            # session, which walks everything reachable from it, the job's earlier outputs
            # included: quadratic, 0.4 s of a 1,000-object request (py-spy).
            session.execute(
                insert(JobToOutputDatasetAssociation),
                [{"job_id": job.id, "dataset_id": hda.id, "name": output_name(i)} for i, hda in enumerate(outputs)],
            )
            session.expire(job, ["output_datasets"])
        return job

    def _enqueue(self, trans, job: Job, tool) -> None:
        """Hand the job to Galaxy's handlers; Galaxy's handler assignment commits everything."""
        self.app.job_manager.enqueue(job, tool=tool)
        trans.sa_session.commit()


def collection_datasets(collection, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple, HistoryDatasetAssociation]]:
    """Each dataset of a collection, with its identifiers from the top level down, in element order."""
    for element in collection.elements:
        here = (*path, element.element_identifier)
        if element.child_collection is not None:
            yield from collection_datasets(element.child_collection, here)
        elif element.hda is not None:
            yield here, element.hda
