"""A get's SHA-256 of each object, kept on its dataset as a Galaxy dataset hash (``hashes`` in
``/api/datasets/{id}``), the way Galaxy keeps the hashes of its own fetch.

The job hashes every object as it streams (providers.integrity) and writes each dataset's hash
into the tool's provided metadata, galaxy.json, as Galaxy's own tools write the hashes of the
outputs they discover (``{"<output>": {"hashes": [{"hash_function", "hash_value"}]}}``). Galaxy
applies those only to discovered outputs (galaxy.model.store.discover); a get's outputs are made
before the job, so the tool's own ``exec_after_process`` hook (its code file,
tools/cloud_storage_hooks.py) reads them here, in the job handler, while Galaxy finishes the job,
and adds them to the datasets in Galaxy's finishing transaction: Galaxy's DatasetHash rows, no
table of the plugin's own.
"""

import logging
import os
import re

from galaxy.model import Dataset, DatasetHash
from galaxy.tool_util.provided_metadata import parse_tool_provided_metadata

from .providers.integrity import GALAXY_HASH_FUNCTIONS

log = logging.getLogger(__name__)

HEX = re.compile(r"^[0-9a-f]+$")


def record_dataset_hashes(app, tool, out_data: dict) -> None:
    """Add the hashes the job wrote into galaxy.json to each of ``out_data``'s datasets that
    ended ``ok`` (a failed object's dataset gets none)."""
    if not out_data:
        return
    job = next(iter(out_data.values())).creating_job
    working = app.object_store.get_filename(job, base_dir="job_work", dir_only=True, obj_dir=True)
    path = os.path.join(working, "working", tool.provided_metadata_file)
    if not os.path.exists(path):
        return  # a job that ended before writing it (its datasets are in error)
    provided = parse_tool_provided_metadata(path, provided_metadata_style=tool.provided_metadata_style)
    for name, hda in out_data.items():
        dataset = hda.dataset
        if dataset.state != Dataset.states.OK:
            continue
        known = {(entry.hash_function, entry.extra_files_path) for entry in dataset.hashes}
        for entry in provided.get_dataset_meta(name, dataset.id, dataset.uuid).get("hashes") or []:
            function, value = entry.get("hash_function"), str(entry.get("hash_value", "")).lower()
            if function not in GALAXY_HASH_FUNCTIONS or not HEX.match(value) or (function, None) in known:
                log.warning("Job %s: ignored the hash %r of its output %s", job.id, entry, name)
                continue
            dataset.hashes.append(DatasetHash(hash_function=function, hash_value=value))
            known.add((function, None))
