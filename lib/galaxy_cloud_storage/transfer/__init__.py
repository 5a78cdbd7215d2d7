"""What runs inside the Galaxy job: moving objects between a bucket and the job's files.

``engine`` is cloud-agnostic: it plans one task per object and runs the plan on a bounded thread
pool through the ``providers.storage.StorageBackend`` interface, which streams each object (multipart,
bounded memory). Every object gets its own result, so one failure never hides the others.
``job`` is the entry point the cloud_storage_get/send tools run.
"""
