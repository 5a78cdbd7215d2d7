"""What the job handler runs while it prepares a transfer job (called from the tools' Cheetah
config files, see tools/*.xml): the credentials, minted now, and the job's manifest.

The handler may be a separate Galaxy process where the plugin's routes are not mounted, so
everything here is built from Galaxy's app alone.
"""

import json
import logging

from galaxy import exceptions
from .authz.delegation import CredentialBroker
from .authz.manager import CloudAuthzManager
from .config import (
    config_file_path,
    load_config,
)
from .model import (
    CloudAuthz,
    now,
)

log = logging.getLogger(__name__)


def credential_broker(app) -> CredentialBroker:
    config = load_config(config_file_path(app.config))
    return CredentialBroker(app, config, CloudAuthzManager(config, app.vault))


def credentials_file(app_wrapper, user_wrapper, authz_id) -> str:
    """The job's credentials, as JSON: a delegation, or ``{"error": message}`` that the job reports
    on its datasets (a template that raised would hide the reason from the user)."""
    app, user = app_wrapper.obj, user_wrapper.obj
    session = app.model.session
    try:
        authz = session.get(CloudAuthz, int(str(authz_id)))
        if authz is None or user is None or authz.user_id != user.id:
            raise exceptions.ObjectNotFound("The cloud authorization of this job was deleted.")
        delegation = credential_broker(app).delegate(authz, user)
        authz.last_activity = now()
        session.commit()
        return json.dumps(delegation.to_json_dict())
    except exceptions.MessageException as e:
        return json.dumps({"error": str(e)})
    except Exception:
        log.exception("Minting cloud credentials for a transfer job failed")
        return json.dumps({"error": "Galaxy could not obtain cloud credentials (an unexpected error; see Galaxy's log)."})


def _matched(names: list, datasets: list) -> list:
    if len(names) != len(datasets):
        raise ValueError(f"the job has {len(datasets)} datasets for {len(names)} objects")
    return list(zip(names, datasets))


def get_manifest(bucket, objects, input_args, outputs, datatypes_conf) -> str:
    """What the job copies where: ``outputs`` are the job's output0, output1, ... in order."""
    items = [
        {"key": key, "path": str(output), "output": f"output{i}"}
        for i, (key, output) in enumerate(_matched(json.loads(str(objects)), outputs))
    ]
    return json.dumps(
        {
            "bucket": str(bucket),
            "items": items,
            "input_args": json.loads(str(input_args)),
            "datatypes_conf": str(datatypes_conf),
        }
    )


def send_manifest(bucket, objects, overwrite_existing, inputs) -> str:
    """What the job sends where: ``inputs`` are the job's input0, input1, ... in order."""
    items = [{"key": name, "path": str(dataset)} for name, dataset in _matched(json.loads(str(objects)), inputs)]
    return json.dumps(
        {"bucket": str(bucket), "items": items, "overwrite_existing": str(overwrite_existing).lower() == "true"}
    )
