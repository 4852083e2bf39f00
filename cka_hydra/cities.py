"""A checkpoint's city list, paid for once per distinct content.

The checkpoints of one training run list the same cities, and so, mostly, do the instances of
one study. So a city list is parsed once per distinct content this process meets (a file whose
bytes from its `city_info` on are another's is that one's: _tail), and recognised by a digest
of its entries; the city filter runs once per distinct list and filter, whichever file and
folder the list came from. A list that differs from its neighbours (cities added at a
checkpoint, their order changed) has a digest of its own and is filtered on its own: the key is
the content, never the path (a path only saves re-reading a file whose inode, size and
modification time are unchanged).
"""

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import orjson

from cka_hydra.filters import CityFilter, city_id, id_kinds
from cka_hydra.store import (
    METADATA_FILE, READS, common_rows, file_stamp, load_cities, parse_cities, read_metadata,
)

# kept at most: distinct lists parsed (a few MB each as Python objects), filtered (0.1 MB for 4500
# cities) and paired (as much); file identities (a tuple each): a timeline meets each file once
PARSED_LISTS, FILTERED_LISTS, PAIRED_LISTS, KNOWN_FILES = 4, 256, 256, 65536

T = TypeVar("T")


@dataclass(frozen=True)
class CityList:
    """A checkpoint's city list, one entry per row of its representation matrix, and the digest
    of its content."""

    cities: list[dict[str, Any]]
    digest: str


@dataclass(frozen=True)
class Kept:
    """What a city filter keeps of a city list: the list's length, the rows kept and their ids
    (as arrays), and the kinds of id the list uses (filters.id_kinds)."""

    n_cities: int
    rows: np.ndarray
    ids: np.ndarray
    kinds: frozenset[str]
    unique: bool  # no id twice (common_rows says which when not)
    key: tuple[str, str]  # the list's digest and the filter's text


_lists: "OrderedDict[str, CityList]" = OrderedDict()
_kept: "OrderedDict[tuple[str, str], Kept]" = OrderedDict()  # by the list's digest and the filter's text
_paired: "OrderedDict[tuple[tuple[str, str], tuple[str, str]], tuple[np.ndarray, np.ndarray]]" = OrderedDict()
_digests: "OrderedDict[tuple[str, tuple[int, int, int]], str]" = OrderedDict()  # a file as it is -> its list
_tails: "OrderedDict[str, str]" = OrderedDict()  # the bytes from city_info on -> the list (_tail)


def _cached(cache: "OrderedDict[Any, T]", key: Hashable, build: Callable[[], T], size: int) -> T:
    """cache[key], built first when missing; the least recently used go beyond size entries."""
    if key in cache:
        cache.move_to_end(key)
        return cache[key]
    value = cache[key] = build()
    while len(cache) > size:
        cache.popitem(last=False)
    return value


def city_list(folder: Path) -> CityList:
    """A checkpoint folder's city list: parsed when this process has met no file of the same list,
    shared with every file of the same content."""
    _, listed = _read(folder)
    return listed if listed is not None else _parsed(load_cities(folder))  # known, but let go since: read again


def _parsed(cities: list[dict[str, Any]]) -> CityList:
    """A list just parsed, known by the digest of its entries, and kept (PARSED_LISTS)."""
    listed = CityList(cities, _digest(orjson.dumps(cities)))
    return _cached(_lists, listed.digest, lambda: listed, PARSED_LISTS)


def _read(folder: Path) -> tuple[str, CityList | None]:
    """The digest of a checkpoint folder's city list, and the list where this process keeps it: a
    file met before as it is now, or one whose bytes from its city_info on are known (_tail), is
    not parsed."""
    metadata_file = folder / METADATA_FILE
    key = (str(metadata_file), file_stamp(metadata_file))
    digest = _digests.get(key)
    if digest is not None:
        _digests.move_to_end(key)
        return digest, _lists.get(digest)
    data = read_metadata(folder)
    READS.add(len(data))
    start, tail = _tail(data)
    opens = tail is not None and _opens_object(data[:start])
    digest = _tails.get(tail) if opens else None
    if digest is None:
        digest = _parsed(parse_cities(data, metadata_file)).digest
        if opens:
            _cached(_tails, tail, lambda: digest, KNOWN_FILES)
    _cached(_digests, key, lambda: digest, KNOWN_FILES)
    return digest, _lists.get(digest)


def _tail(data: bytes) -> tuple[int, str | None]:
    """Where a metadata file's `"city_info"` key is, and the digest of the bytes from there on.

    The checkpoints of a run write the same list after keys of their own (step, checkpoint_path):
    a file whose bytes from the key on are those of a file parsed before, and whose bytes before
    it open a JSON object (so that the key is the object's own), holds that file's list: the
    parser reads the same bytes in the same state. It is taken without parsing."""
    start = data.find(b'"city_info"')
    return start, (None if start < 0 else _digest(data[start:]))


def _opens_object(prefix: bytes) -> bool:
    """Whether these bytes open a JSON object, its members so far complete: then a key that follows
    them is the object's own."""
    try:
        return orjson.loads(prefix + b'"city_info":0}').get("city_info") == 0
    except (orjson.JSONDecodeError, AttributeError):
        return False


def _digest(data: bytes) -> str:
    return hashlib.sha1(data, usedforsecurity=False).hexdigest()


def kept_cities(folder: Path, city_filter: CityFilter) -> Kept:
    """What city_filter keeps of a checkpoint's city list: filtered once per distinct list."""
    digest, listed = _read(folder)
    key = (digest, city_filter.text)  # the text decides the filter (parse_filter)
    if key in _kept:
        _kept.move_to_end(key)
        return _kept[key]
    listed = listed or city_list(folder)
    return _cached(_kept, (listed.digest, city_filter.text), lambda: _filtered(listed, city_filter), FILTERED_LISTS)


def _filtered(listed: CityList, city_filter: CityFilter) -> Kept:
    cities = listed.cities
    rows = np.flatnonzero(city_filter.mask(cities))
    ids = np.array([city_id(cities[i]) for i in rows], dtype=str)
    return Kept(len(cities), rows, ids, id_kinds(cities), len(np.unique(ids)) == len(ids), (listed.digest, city_filter.text))


def paired(kept_a: Kept, kept_b: Kept, where_a: str, where_b: str) -> tuple[np.ndarray, np.ndarray]:
    """The positions, in each side's kept rows, of the cities both keep, paired by city id: in list
    order when both keep the same ids in the same order (a training run's checkpoints, and mostly
    a study's instances), else sorted by id, so that an instance's rows never depend on which side
    it is on. Worked out once per pair of distinct lists."""
    return _cached(_paired, (kept_a.key, kept_b.key), lambda: _pair(kept_a, kept_b, where_a, where_b), PAIRED_LISTS)


def _pair(kept_a: Kept, kept_b: Kept, where_a: str, where_b: str) -> tuple[np.ndarray, np.ndarray]:
    if not (kept_a.unique and kept_b.unique):
        common_rows(kept_a.ids.tolist(), kept_b.ids.tolist(), where_a, where_b)  # says which id is there twice
    if np.array_equal(kept_a.ids, kept_b.ids):
        return np.arange(len(kept_a.ids)), np.arange(len(kept_b.ids))
    _, rows_a, rows_b = np.intersect1d(kept_a.ids, kept_b.ids, assume_unique=True, return_indices=True)
    return rows_a, rows_b


def clear() -> None:
    """Forget every list: the next reads parse their files again."""
    for cache in (_lists, _kept, _paired, _digests, _tails):
        cache.clear()
