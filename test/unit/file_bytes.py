"""What the backend tests say about bytes: digests of data and of files, and files written for
them (random ones in bounded pieces, so a 40 MiB file never sits in the test's memory)."""

import hashlib
import os

MiB = 1024 * 1024


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def write(path, data: bytes) -> str:
    with open(path, "wb") as fh:
        fh.write(data)
    return str(path)


def random_file(path, size: int):
    with open(path, "wb") as fh:
        for start in range(0, size, 4 * MiB):
            fh.write(os.urandom(min(4 * MiB, size - start)))
    return path
