"""Folders of objects as Galaxy collections, and back: which objects of a folder a get takes, the
element identifiers of their collection, how reads pair up, and the keys a collection is sent to.

Element identifiers: a ``list``'s element is named by its key relative to the folder, with the
characters an identifier cannot hold percent-encoded (``IDENTIFIER_ESCAPES``): ``/`` (Galaxy joins
identifiers with it into element paths, and tools use them as file names), ``%`` itself (so the
mapping is reversible) and control characters; and ``__object__``, which Galaxy refuses in an
identifier, becomes ``%5F_object__``. ``key_for_identifier`` undoes exactly these escapes and
nothing else, so a collection got from a folder is sent back to the same keys.

Pairing (``list:paired``): first the layout a send writes, ``<pair>/forward`` and
``<pair>/reverse``; otherwise Galaxy's own rules (``galaxy.model.dataset_collections.auto_pairing``,
the ones its upload dialog applies: ``_1``/``_2``, ``_R1``/``_R2``, ``_R1_001``/``_R2_001``,
``_F``/``_R``, ``.1.fastq``/``.2.fastq``). An object without a mate, or two that claim the same
place in a pair, is an error naming them.
"""

import re
from collections import Counter
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Iterable, Optional, Sequence

from galaxy.model.dataset_collections.auto_pairing import auto_pair

#: what an element identifier cannot hold, and its escape
IDENTIFIER_ESCAPES = {"%": "%25", "/": "%2F", **{chr(c): f"%{c:02X}" for c in [*range(0x20), 0x7F]}}
_UNESCAPE = re.compile("|".join(re.escape(escape) for escape in [*IDENTIFIER_ESCAPES.values(), "%5F"]))
_ESCAPED = {escape: char for char, escape in IDENTIFIER_ESCAPES.items()} | {"%5F": "_"}
_RESERVED = "__object__"  # validate_input_element_identifiers refuses it anywhere in an identifier
FORWARD, REVERSE = "forward", "reverse"  # a paired collection's element identifiers


class FolderError(ValueError):
    """A folder that cannot become the collection asked for; ``str()`` names the objects at fault."""


class _Unpairable(Exception):
    """Keys (relative to the folder) that cannot be paired; ``message`` has a ``{keys}`` field."""

    def __init__(self, message: str, keys: Sequence[str]):
        super().__init__(message)
        self.message, self.keys = message, keys


def identifier_for_key(relative_key: str) -> str:
    identifier = "".join(IDENTIFIER_ESCAPES.get(char, char) for char in relative_key)
    return identifier.replace(_RESERVED, "%5F" + _RESERVED[1:])


def key_for_identifier(identifier: str) -> str:
    """The relative key an identifier names: the inverse of identifier_for_key; an identifier made
    in Galaxy keeps any other ``%`` as it is."""
    return _UNESCAPE.sub(lambda match: _ESCAPED[match.group(0)], identifier)


def relative_key(prefix: str, key: str) -> str:
    return key[len(prefix) :]


def is_folder_marker(key: str, size: int) -> bool:
    """The empty object some tools (the S3 console, rclone, gsutil) make to show a folder."""
    return size == 0 and key.endswith("/")


def selected(relative: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    """Whether a get of a folder takes the object: it matches one of ``include`` (all do when
    none is given) and none of ``exclude``. Patterns are shell globs (Python's ``fnmatch``, case
    sensitive) against the key relative to the folder; ``*`` matches ``/`` too, so ``*.fastq.gz``
    takes them at any depth and ``sample_*/*`` everything under ``sample_`` folders."""
    if include and not any(fnmatchcase(relative, pattern) for pattern in include):
        return False
    return not any(fnmatchcase(relative, pattern) for pattern in exclude)


@dataclass(frozen=True)
class Pair:
    name: str
    forward: str
    reverse: str


@dataclass(frozen=True, eq=False)
class _Named:
    """What Galaxy's auto_pair takes: something with a ``name``. Compared by identity: auto_pair
    removes each paired read from a list (quadratic), and a dataclass's __eq__ made that 5 s for
    10,000 reads, 0.5 s with object's own."""

    name: str


def pair_keys(relative_keys: Sequence[str], prefix: str = "") -> list[Pair]:
    """The pairs of ``relative_keys`` (relative to the folder ``prefix``), in the order of their
    first key; FolderError naming (by its full key) every key without a mate or with a rival for
    its place."""
    try:
        pairs = _sent_layout_pairs(relative_keys)
        if pairs is None:
            pairs = _galaxy_pairs(relative_keys)
    except _Unpairable as e:
        raise FolderError(e.message.format(keys=_listed([prefix + key for key in e.keys]))) from None
    if clashes := sorted(name for name, count in Counter(pair.name for pair in pairs).items() if count > 1):
        raise FolderError(f"several pairs would be named {', '.join(map(repr, clashes))}: pair these reads by hand")
    return pairs


def _sent_layout_pairs(relative_keys: Sequence[str]) -> Optional[list[Pair]]:
    """Pairs laid out as a send writes a paired collection, or None when the folder is not so."""
    halves: dict[str, dict[str, str]] = {}
    for key in relative_keys:
        name, _, half = key.rpartition("/")
        if half not in (FORWARD, REVERSE) or not name:
            return None
        halves.setdefault(name, {})[half] = key
    if lonely := [key for pair in halves.values() if len(pair) == 1 for key in pair.values()]:
        raise _Unpairable("no mate for {keys}", lonely)
    return [Pair(identifier_for_key(name), pair[FORWARD], pair[REVERSE]) for name, pair in halves.items()]


def _galaxy_pairs(relative_keys: Sequence[str]) -> list[Pair]:
    elements = [_Named(key) for key in relative_keys]
    found = auto_pair(elements)
    # auto_pair keeps the first read of a name and drops a rival silently: it must be told.
    kept = {element.name for pair in found.paired for element in (pair.forward, pair.reverse)}
    kept |= {element.name for element in found.unpaired}
    if rivals := [key for key in relative_keys if key not in kept]:
        raise _Unpairable("ambiguous pairs: {keys} would take a place in a pair that another object has", rivals)
    if found.unpaired:
        raise _Unpairable(
            "no mate for {keys} (reads pair by Galaxy's rules: _1/_2, _R1/_R2, _R1_001/_R2_001, _F/_R, "
            ".1.fastq/.2.fastq)",
            [element.name for element in found.unpaired],
        )
    order = {key: i for i, key in enumerate(relative_keys)}
    pairs = [Pair(identifier_for_key(pair.name), pair.forward.name, pair.reverse.name) for pair in found.paired]
    if empty := [pair for pair in pairs if not pair.name]:
        raise _Unpairable("no pair name can be made for {keys}", [empty[0].forward, empty[0].reverse])
    return sorted(pairs, key=lambda pair: min(order[pair.forward], order[pair.reverse]))


def _listed(keys: Iterable[str], shown: int = 10) -> str:
    keys = list(keys)
    more = f" (and {len(keys) - shown} more)" if len(keys) > shown else ""
    return ", ".join(repr(key) for key in keys[:shown]) + more


def element_key(identifiers: Sequence[str]) -> str:
    """The key, under a collection's folder, of an element reached by ``identifiers`` (one per
    nesting level): each level a folder, each identifier mapped back by key_for_identifier."""
    return "/".join(key_for_identifier(identifier) for identifier in identifiers)
