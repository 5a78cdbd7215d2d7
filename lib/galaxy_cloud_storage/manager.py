"""CloudManager: get and send on Galaxy's histories, datasets and jobs.

Everything a request can get wrong is checked before anything is created (invariant 6, docs/design.rst): the
history, the authorization, the credentials, the bucket and every object. Then one job does the
whole request (invariant 9); its credentials are minted again when the job runs (see jobs.py).
"""

import json
import logging
from collections import Counter
from datetime import datetime
from typing import Hashable, Iterable, Optional

from galaxy import exceptions
from galaxy.managers.histories import HistoryManager
from galaxy.model import HistoryDatasetAssociation, Job
from sqlalchemy import select

from .authz.delegation import CredentialBroker
from .authz.manager import CloudAuthzManager
from .contracts import GetInputArgs, input_name, output_name, TRANSFER_PARAMETER, TransferRequest
from .jobs import GET_TOOL_ID, SEND_TOOL_ID
from .providers import cloud
from .providers.names import InvalidName, NameRules
from .providers.storage import AccessDenied, BucketNotFound, StorageBackend, StorageError
from .schema import CloudDatasetSummary, CloudStorageGetPayload, CloudStorageSendPayload, CloudStorageSendResponse
from .sessions import release_connection

log = logging.getLogger(__name__)

OVERWRITE_SUFFIX = "_%y%m%d_%H%M%S"  # the old API's rule for a name that is taken
SHOWN_PROBLEMS = 10  # a 400 lists this many bad names at most


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


class CloudManager:
    def __init__(self, app, authz_manager: CloudAuthzManager, broker: CredentialBroker):
        self.app = app
        self.authz_manager = authz_manager
        self.broker = broker

    # -- get -------------------------------------------------------------------------------------

    def get(self, trans, payload: CloudStorageGetPayload) -> list[CloudDatasetSummary]:
        if repeats := repeated(payload.objects):
            raise exceptions.RequestParameterInvalidException(
                f"objects: each key once please; repeated: {', '.join(repeats[:SHOWN_PROBLEMS])}"
            )
        tool = self._tool(GET_TOOL_ID)
        history = self._writable_history(trans, payload.history_id)
        authz = self.authz_manager.get_owned(trans, payload.authz_id)
        rules = cloud(authz.provider).names
        self._check_bucket_name(rules, payload.bucket)
        if problems := [problem for key in payload.objects if (problem := rules.key_problem(key))]:
            shown = "; ".join(problems[:SHOWN_PROBLEMS])
            more = f" (and {len(problems) - SHOWN_PROBLEMS} more)" if len(problems) > SHOWN_PROBLEMS else ""
            raise exceptions.RequestParameterInvalidException(f"objects: {shown}{more}. Nothing was copied.")
        backend = self._backend(trans, authz)
        self._check_bucket(backend, payload.bucket)
        missing = [
            key
            for key, info in zip(payload.objects, self._stat_all(backend, payload.bucket, payload.objects), strict=True)
            if info is None
        ]
        if missing:
            raise exceptions.ObjectNotFound(
                f"Not in bucket '{payload.bucket}': {', '.join(repr(key) for key in missing)}. Nothing was copied."
            )

        args = payload.input_args or GetInputArgs()
        outputs = self._new_hdas(trans, history, payload.objects, args)
        request = TransferRequest(authz_id=authz.id, bucket=payload.bucket, keys=payload.objects, input_args=args)
        job = self._new_job(trans, tool, history, request, inputs=[], outputs=outputs)
        # Read before Galaxy's enqueue commits: a commit expires every object, and reading 100
        # datasets back would cost a query each.
        summaries = [self._summary(hda, job) for hda in outputs]
        self._enqueue(trans, job, tool)
        return summaries

    def _new_hdas(self, trans, history, keys: list[str], args: GetInputArgs) -> list[HistoryDatasetAssociation]:
        """One queued dataset per key, added to the history in one go (hids assigned at once)."""
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
    def _summary(hda: HistoryDatasetAssociation, job: Job) -> CloudDatasetSummary:
        dataset = hda.dataset
        return CloudDatasetSummary(
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

    def send(self, trans, payload: CloudStorageSendPayload) -> CloudStorageSendResponse:
        tool = self._tool(SEND_TOOL_ID)
        history = self._writable_history(trans, payload.history_id, for_reading=True)
        authz = self.authz_manager.get_owned(trans, payload.authz_id)
        datasets = self._datasets_to_send(trans, history, payload.dataset_ids)
        rules = cloud(authz.provider).names
        self._check_bucket_name(rules, payload.bucket)
        backend = self._backend(trans, authz)
        self._check_bucket(backend, payload.bucket)

        failed, sendable = [], []
        for hda in datasets:
            reason = self._not_sendable(hda, rules)
            if reason:
                failed.append(json.dumps({"object": hda.name, "error": reason}))
            else:
                sendable.append(hda)
        release_connection(trans.sa_session)  # the names are looked up in the bucket
        names = self._object_names(backend, payload.bucket, sendable, payload.overwrite_existing)
        # The date suffix may make a name too long for the cloud: such a dataset is not sent either.
        named = []
        for hda, name in zip(sendable, names, strict=True):
            if problem := rules.key_problem(name):
                failed.append(json.dumps({"object": hda.name, "error": problem}))
            else:
                named.append((hda, name))
        sendable, names = [hda for hda, _ in named], [name for _, name in named]
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

    def _datasets_to_send(self, trans, history, dataset_ids: Optional[list[int]]) -> list[HistoryDatasetAssociation]:
        stmt = select(HistoryDatasetAssociation).where(HistoryDatasetAssociation.history_id == history.id)
        if dataset_ids is None:
            stmt = stmt.where(HistoryDatasetAssociation.deleted == False, HistoryDatasetAssociation.purged == False)  # noqa: E712
            return list(trans.sa_session.scalars(stmt.order_by(HistoryDatasetAssociation.hid)))
        found = {
            hda.id: hda for hda in trans.sa_session.scalars(stmt.where(HistoryDatasetAssociation.id.in_(dataset_ids)))
        }
        strangers = [trans.security.encode_id(i) for i in dict.fromkeys(dataset_ids) if i not in found]
        if strangers:
            more = f" (and {len(strangers) - SHOWN_PROBLEMS} more)" if len(strangers) > SHOWN_PROBLEMS else ""
            raise exceptions.RequestParameterInvalidException(
                f"dataset_ids: not datasets of this history: {', '.join(strangers[:SHOWN_PROBLEMS])}{more}. "
                "Nothing was sent."
            )
        return [found[i] for i in dict.fromkeys(dataset_ids)]

    @staticmethod
    def _not_sendable(hda: HistoryDatasetAssociation, rules: NameRules) -> Optional[str]:
        if hda.purged:
            return "the dataset is purged"
        if hda.deleted:
            return "the dataset is deleted"
        if hda.state != hda.states.OK:
            return f"the dataset is '{hda.state}', not 'ok'"
        return rules.key_problem(object_name(hda.name))

    def _object_names(self, backend: StorageBackend, bucket: str, datasets, overwrite: bool) -> list[str]:
        """Dataset name with spaces as `_`; a name that is taken (in the bucket unless replacing,
        or by an earlier dataset of this request) gets the old API's date suffix, then the hid."""
        wanted = [object_name(hda.name) for hda in datasets]
        taken = (
            set()
            if overwrite
            else {n for n, info in zip(wanted, self._stat_all(backend, bucket, wanted), strict=True) if info}
        )
        suffix = datetime.now().strftime(OVERWRITE_SUFFIX)
        return unique_object_names(wanted, taken, suffix, [hda.hid for hda in datasets])

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
        for i, hda in enumerate(outputs):
            job.add_output_dataset(output_name(i), hda)
        job.set_state(job.states.NEW)
        session.flush()
        return job

    def _enqueue(self, trans, job: Job, tool) -> None:
        """Hand the job to Galaxy's handlers; Galaxy's handler assignment commits everything."""
        self.app.job_manager.enqueue(job, tool=tool)
        trans.sa_session.commit()
