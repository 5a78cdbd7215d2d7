"""cloud_storage_get's code file (``<code file="cloud_storage_get_hooks.py"/>``): Galaxy runs its
``exec_after_process`` in the job handler as it finishes each job of the tool, before it commits.
It keeps each object's SHA-256 on its dataset (galaxy_cloud_storage.dataset_hashes)."""

from galaxy_cloud_storage.dataset_hashes import record_dataset_hashes


def exec_after_process(app, inp_data, out_data, param_dict, tool=None, stdout=None, stderr=None):
    record_dataset_hashes(app, tool, out_data)
