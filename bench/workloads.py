"""The bench's workloads and their data: (a) one large object, (b) eight medium ones, (c) many
small ones, written as random bytes with their SHA-256, and where each copier sends them."""

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

KiB, MiB, GiB = 1024, 1024**2, 1024**3
# Everything goes into the one bucket the local cloud's user may use, under these prefixes: the
# sources, and per copier what it sends (the plugin's sent objects are named after their datasets,
# which the bench renames to send_key(...) before sending).
SRC_PREFIX = "bench/src/"
SEND_PREFIX = "bench/send/"


@dataclass
class SourceObject:
    key: str
    path: str
    size: int
    sha256: str
    fingerprint: Optional[str]  # what the server reports for it sent in the plugin's parts (Reference.fingerprint)


@dataclass
class Workload:
    name: str
    label: str
    count: int
    size: int
    objects: list = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.count * self.size

    @property
    def prefix(self) -> str:
        return f"{SRC_PREFIX}{self.name}/"


def workloads(scale: float, small_count: int = 200) -> list[Workload]:
    """(a) and (b) measure bandwidth: ``scale`` shrinks them. (c) measures the cost per object, so it
    stays 16 KiB objects whatever the scale (fewer of them only for a smoke test)."""
    a, b = max(1, int(GiB * scale)), max(1, int(128 * MiB * scale))
    return [
        Workload("a", f"1 x {human(a)}", 1, a),
        Workload("b", f"8 x {human(b)}", 8, b),
        Workload("c", f"{small_count} x 16 KiB", small_count, 16 * KiB),
    ]


def human(size: float) -> str:
    for unit, factor in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if size >= factor:
            return f"{size / factor:.4g} {unit}"
    return f"{size} B"


def make_file(path: str, size: int, chunk: int = 8 * MiB) -> str:
    """Random bytes (os.urandom, in chunks); returns their sha256."""
    digest = hashlib.sha256()
    with open(path, "wb") as fh:
        left = size
        while left:
            block = os.urandom(min(chunk, left))
            digest.update(block)
            fh.write(block)
            left -= len(block)
    return digest.hexdigest()


def sha256_file(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def make_data(work: Path, loads: list[Workload], tiny: int, fingerprint) -> list[SourceObject]:
    """Local files for every workload (kept: the SDK and rclone send them), plus the tiny object.
    ``fingerprint(path, size)``: what the server will report for the file (Reference.fingerprint)."""
    extra = []
    for load in loads:
        folder = work / "src" / load.name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(load.count):
            path = str(folder / f"obj-{i:03d}")
            sha = make_file(path, load.size)
            load.objects.append(
                SourceObject(f"{load.prefix}obj-{i:03d}", path, load.size, sha, fingerprint(path, load.size))
            )
    (work / "src" / "tiny").mkdir(parents=True, exist_ok=True)
    for name in ("warmup", "tiny"):
        path = str(work / "src" / "tiny" / name)
        sha = make_file(path, tiny)
        extra.append(SourceObject(f"{SRC_PREFIX}tiny/{name}", path, tiny, sha, fingerprint(path, tiny)))
    return extra


def send_key(copier: str, key: str) -> str:
    """Where ``copier`` sends the source object ``key``: bench/send/<copier>/<workload>/<name>."""
    return f"{SEND_PREFIX}{copier}/{key[len(SRC_PREFIX) :]}"
