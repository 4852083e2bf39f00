"""The engine: comparisons computed from prepared instances, each prepared once per process.

A prepared instance is one instance at one layer and step, read once: its rows for the compared
cities, in an order that does not depend on which side of a comparison it is on, and the state
its measure needs (registry.Terms: the centred rows and self-term for linear CKA, the centred
Gram matrix for RBF). `InstanceCache` keeps them up to a byte limit, the least recently used
going first; a comparison then costs only its cross term. `compute_ahead` computes a set of
comparisons step by step, each instance-step prepared once for all of them. Knows no Hydra: it
takes Inputs (cka_hydra.inputs) and the run's settings, and returns a `Timeline`.
"""

import dataclasses
import functools
import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cka_hydra.cities import kept_cities, paired
from cka_hydra.cka import UndefinedMeasureError, bootstrap_interval, principal_components
from cka_hydra.errors import InputError
from cka_hydra.filters import CityFilter
from cka_hydra.inputs import MIN_CITIES, Inputs, PCASpec, Side, check_device, check_pca_cities
from cka_hydra.registry import SIMILARITY, Terms, UndefinedValue
from cka_hydra.schema import RunConfig
from cka_hydra.store import (
    METADATA_FILE, READS, REPRESENTATIONS_FILE, check_id_kinds, file_stamp, load_matrix,
)

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    """One instance at one step, ready to compare: its aligned rows (for the bootstrap) and its
    measure's state."""

    rows: torch.Tensor | None  # kept for the bootstrap only
    state: Any
    nbytes: int


# the memory preparing an instance takes at its peak, in entries of the largest size met: the
# entry, the rows read (as read, and converted) and the measure's temporaries
BUILD_ROOM = 4


@dataclass
class InstanceCache:
    """Prepared instances by key, up to limit_bytes in all; the least recently used go first, and
    before an instance is prepared, enough go for it and the memory its preparing takes: a
    worker's memory stays within the limit above what its imports take. An instance larger than
    the limit is computed and not kept."""

    limit_bytes: int
    entries: "OrderedDict[Hashable, Prepared]" = field(default_factory=OrderedDict)
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    nbytes: int = 0  # of the entries kept
    largest: int = 0  # the largest entry prepared

    def get(self, key: Hashable, build: Callable[[], Prepared], count: bool = True) -> Prepared:
        """The entry of key, built now if it is not kept; count: a hit or miss in the statistics."""
        entry = self.entries.get(key)
        if entry is not None:
            self.hits += count
            self.entries.move_to_end(key)
            return entry
        self.misses += count
        self._evict(self.limit_bytes - BUILD_ROOM * self.largest)
        entry = build()
        self.largest = max(self.largest, entry.nbytes)
        if entry.nbytes <= self.limit_bytes:
            self.entries[key] = entry
            self.nbytes += entry.nbytes
            self._evict(self.limit_bytes)
        return entry

    def shrink(self, limit_bytes: int) -> None:
        """Set the limit, letting the least recently used go until the rest fit."""
        self.limit_bytes = limit_bytes
        self._evict(limit_bytes)

    def clear(self) -> None:
        self.discard(list(self.entries))

    def discard(self, keys: Iterable[Hashable]) -> None:
        """Let these entries go now: no comparison needs them again."""
        for key in keys:
            entry = self.entries.pop(key, None)
            if entry is not None:
                self.nbytes -= entry.nbytes

    def _evict(self, limit_bytes: int) -> None:
        while self.nbytes > max(0, limit_bytes) and self.entries:
            _, entry = self.entries.popitem(last=False)
            self.nbytes -= entry.nbytes
            self.evictions += 1


CACHE = InstanceCache(2048 * 2**20)


@dataclass(frozen=True)
class Timeline:
    """A comparison's values, one per step."""

    steps: list[int]
    values: list[float]
    n_cities: list[int]
    intervals: list[tuple[float, float]]  # the bootstrap's, per step; [] without one
    pca_cities: list[int] | None  # the cities each side's last PCA was fitted on
    device: str
    bytes_read: int  # from the store: none for instances the cache held
    from_cache: int  # of its 2 x steps prepared instances
    chance: list[float] | None  # the exact null mean at each step, for the measures that have one
    null: list[tuple[float, float, float]]  # the permutation test's mean, std and p-value per step; [] without
    ahead_s: float = 0.0  # seconds spent on it by compute_ahead, before its job began


def resolve_device(spec: str, job_num: int = 0) -> torch.device:
    """`auto` takes a GPU when torch sees one (spreading jobs over GPUs by job number), else the CPU."""
    if spec == "auto":
        count = torch.cuda.device_count()
        return torch.device(f"cuda:{job_num % count}") if count else torch.device("cpu")
    check_device(spec)
    return torch.device(spec)


def aligned_rows(step: int, folder_a: Path, folder_b: Path, a: Side, b: Side,
                 city_filter: CityFilter) -> tuple[tuple[int, np.ndarray], tuple[int, np.ndarray]]:
    """Each side's number of cities and its rows of the cities both keep after the filter, paired
    by city id: in file order when both city lists keep the same ids in the same order, else
    sorted by id, so that an instance's rows never depend on which side it is on."""
    kept_a, kept_b = kept_cities(folder_a, city_filter), kept_cities(folder_b, city_filter)
    check_id_kinds(kept_a.kinds, kept_b.kinds, str(folder_a / METADATA_FILE), str(folder_b / METADATA_FILE))
    rows_a, rows_b = paired(kept_a, kept_b, str(folder_a), str(folder_b))
    if len(rows_a) < MIN_CITIES:
        raise InputError(
            f"step {step}: only {len(rows_a)} cities in common after city_filter "
            f"({a.instance} keeps {len(kept_a.rows)} of {kept_a.n_cities}, {b.instance} keeps {len(kept_b.rows)} "
            f"of {kept_b.n_cities}); need at least {MIN_CITIES}"
        )
    return (kept_a.n_cities, kept_a.rows[rows_a]), (kept_b.n_cities, kept_b.rows[rows_b])


@dataclass(frozen=True)
class Instance:
    """What a prepared instance is of: one side of a comparison at one step."""

    folder: Path  # its checkpoint folder
    step: int
    side: Side
    n_cities: int  # in its city list
    rows: np.ndarray  # of the compared cities, in the comparison's order

    def key(self, pca: PCASpec | None, device: torch.device) -> Hashable:
        """Everything its rows depend on: the files as they are now, the rows compared, the PCA,
        the device."""
        return (str(self.folder), file_stamp(self.folder / REPRESENTATIONS_FILE), file_stamp(self.folder / METADATA_FILE),
                hashlib.sha1(self.rows.tobytes()).hexdigest(), pca, str(device))


def prepared(instance: Instance, pca: PCASpec | None, terms: Terms, device: torch.device,
             with_rows: bool = False) -> Prepared:
    """One side at one step, from the cache, or read and prepared now: its measure's state, and
    its rows when asked for (the bootstrap's). The rows (read, and projected on the PCA) are kept
    as an entry of their own, shared by every measure that prepares a state from them; the
    cache's hits and misses count the states."""
    key = instance.key(pca, device)

    def rows() -> torch.Tensor:
        return CACHE.get(key, lambda: _read(instance, pca, device), count=False).rows

    def build() -> Prepared:
        try:
            state = terms.prepare(rows())
        except UndefinedMeasureError as err:
            raise InputError(f"step {instance.step}, {instance.side.instance}: {err}") from None
        return Prepared(None, state, _tensor_bytes(state))

    entry = CACHE.get((*key, terms.key), build)
    return Prepared(rows() if with_rows else None, entry.state, entry.nbytes)


def _read(instance: Instance, pca: PCASpec | None, device: torch.device) -> Prepared:
    """An instance's rows of the compared cities (or their principal components), on the device."""
    folder, step, side, n_cities, rows = instance.folder, instance.step, instance.side, instance.n_cities, instance.rows
    matrix = load_matrix(folder, n_cities)
    READS.add(matrix.numel() * matrix.element_size())
    fit_rows = None if pca is None else kept_cities(folder, pca.fit).rows
    used = rows if fit_rows is None else np.union1d(rows, fit_rows)
    used_rows = matrix[torch.from_numpy(used)]
    if not torch.isfinite(used_rows.sum()):  # one pass: a NaN or Inf makes the sum one (or large values)
        bad = int((~torch.isfinite(used_rows)).sum())
        which = "compared" if pca is None else "compared or PCA-fitted"
        raise InputError(f"{folder / REPRESENTATIONS_FILE}: {bad} NaN/Inf values among the {which} cities at step "
                         f"{step}")
    if pca is None:
        return Prepared(used_rows.to(device), None, _tensor_bytes(used_rows))
    check_pca_cities(pca, len(fit_rows), n_cities, side.instance, step)
    try:
        scores = principal_components(matrix.to(device), pca.components, torch.from_numpy(fit_rows).to(device))
    except ValueError as err:
        raise InputError(f"measure.components={pca.components}: {side.instance} at step {step}: {err} "
                         "(the fitted rows: the cities measure.pca_filter keeps)") from None
    x = scores[torch.from_numpy(rows).to(device)]
    return Prepared(x, None, _tensor_bytes(x))


def _tensor_bytes(state: Any) -> int:
    """The bytes of the tensors in a state (a tensor, or a tuple of them and others)."""
    if isinstance(state, torch.Tensor):
        return state.numel() * state.element_size()
    if isinstance(state, (tuple, list)):
        return sum(map(_tensor_bytes, state))
    return 0


# a batch of the permutation test: permuted states of up to this many bytes at once
NULL_BATCH_BYTES = 2**28


def step_seed(seed: int, step: int) -> int:
    """The seed of one step's random stream, from the run's seed and the step alone."""
    return int(np.random.SeedSequence([seed, step]).generate_state(1, dtype=np.uint64)[0] >> 1)


def permutations(count: int, seed: int, n: int) -> torch.Tensor:
    """count random orders of n cities (count, n), from the seed alone: the same for every step of
    a run that compares n cities."""
    generator = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randperm(n, generator=generator) for _ in range(count)]) if count else \
        torch.empty((0, n), dtype=torch.int64)


@functools.lru_cache(maxsize=4)
def _orders(count: int, seed: int, n: int, device: str) -> torch.Tensor:
    """permutations() on a device, one tensor for all the comparisons that use it (a worker's
    chunk computed together: 1000 orders of 4500 cities take 36 MB)."""
    return permutations(count, seed, n).to(device)


def null_values(terms: Terms, x: Any, y: Any, perms: torch.Tensor) -> torch.Tensor:
    """The measure of x against y with y's cities re-paired by each permutation: for CKA only the
    cross term is computed again (the self-terms do not change). On a GPU in batches of
    NULL_BATCH_BYTES of permuted states; on a CPU one at a time, which measured faster there
    (each permuted copy stays in the cache for its product: benchmarks/bench_chance.py)."""
    if not terms.batched or perms.device.type == "cpu":
        return torch.stack([torch.as_tensor(terms.compare(x, terms.permute(y, p))) for p in perms])
    per = max(1, NULL_BATCH_BYTES // max(1, _tensor_bytes(y)))
    return torch.cat([terms.compare(x, terms.permute(y, perms[i:i + per])).reshape(-1)
                      for i in range(0, len(perms), per)])


def permutation_test(values: torch.Tensor, observed: float, higher_is_alike: bool) -> tuple[float, float, float]:
    """The null values' mean and standard deviation (n - 1), and the p-value
    (1 + #{null >= observed}) / (1 + N) (<= for a distance): the chance of a value this alike
    under a random re-pairing of the cities."""
    extreme = values >= observed if higher_is_alike else values <= observed
    std = float(values.std()) if len(values) > 1 else float("nan")
    return float(values.mean()), std, (1 + int(extreme.sum())) / (1 + len(values))


def compute(run: RunConfig, inputs: Inputs, job_num: int = 0) -> Timeline:
    """A comparison's timeline: its measure at each planned step, and the bootstrap's intervals
    (computed ahead with others of its worker's chunk where compute_ahead was given it)."""
    device = resolve_device(run.device, job_num)
    ahead = _AHEAD.pop(_ahead_key(run, inputs, device), None)
    if ahead is not None:
        return ahead
    CACHE.shrink(run.cache_mb * 2**20)
    result = _Comparison(run, inputs, device)
    for step in inputs.steps:
        result.add(step)
    return result.timeline()


# timelines computed ahead, each until its job asks for it
_AHEAD: dict[tuple[str, str, str], Timeline] = {}


def compute_ahead(plans: Sequence[tuple[RunConfig, Inputs, int]]) -> None:
    """Compute these comparisons (each a config, its inputs and its job number) together, step by
    step: at each step every instance the comparisons meet is prepared once, their measures
    computed, and the instances let go, none being needed at a later step. compute() then hands
    each its timeline, as computed alone (each step's values, bootstrap and permutations depend
    on that step alone). A comparison that fails is left to compute() to fail alone, with its
    own message; each timeline's `ahead_s` is the time spent on it here. (What an earlier call
    computed for jobs that never asked, their results there already, goes.)"""
    _AHEAD.clear()
    if not plans:
        return
    CACHE.shrink(min(run.cache_mb for run, _, _ in plans) * 2**20)
    comparisons = []
    for run, inputs, job_num in plans:
        try:
            comparisons.append(_Comparison(run, inputs, resolve_device(run.device, job_num)))
        except Exception:  # its measure or device: its job says what is wrong
            continue
    for step in sorted(set().union(*(comparison.inputs.steps for comparison in comparisons))):
        kept_before = set(CACHE.entries)
        for comparison in comparisons:
            if comparison.failed or step not in comparison.steps:
                continue
            start = time.perf_counter()
            try:
                comparison.add(step)
            except Exception:  # its job computes it again, and fails alone with its own message
                comparison.failed = True
            comparison.ahead_s += time.perf_counter() - start
        CACHE.discard(set(CACHE.entries) - kept_before)
    for comparison in comparisons:
        if not comparison.failed:
            start = time.perf_counter()
            timeline = comparison.timeline()
            timeline = dataclasses.replace(timeline, ahead_s=comparison.ahead_s + time.perf_counter() - start)
            _AHEAD[_ahead_key(comparison.run, comparison.inputs, comparison.device)] = timeline


def _ahead_key(run: RunConfig, inputs: Inputs, device: torch.device) -> tuple[str, str, str]:
    """What a timeline computed ahead is of: the settings, the inputs (folders and the identity of
    each file) and the steps, and the device."""
    return (json.dumps(inputs.settings, sort_keys=True, default=str),
            json.dumps([inputs.record, inputs.steps], sort_keys=True, default=str), str(device))


class _Comparison:
    """One comparison's timeline while it is computed, a step at a time."""

    def __init__(self, run: RunConfig, inputs: Inputs, device: torch.device) -> None:
        self.run, self.inputs, self.device = run, inputs, device
        self.steps = set(inputs.steps)
        self.measure = run.measure.registered
        self.terms = self.measure.terms(run.cka, run.measure)
        self.values: list[float] = []
        self.n_cities: list[int] = []
        self.chance: list[float] = []
        self.null: list[tuple[float, float, float]] = []
        self.intervals: list[tuple[float, float]] = []
        self.bytes_read = self.from_cache = 0
        self.ahead_s = 0.0
        self.failed = False

    def add(self, step: int) -> None:
        """The measure at one step (the steps in order)."""
        run, inputs, terms, a, b = self.run, self.inputs, self.terms, self.inputs.a, self.inputs.b
        read_before, hits_before = READS.bytes, CACHE.hits
        folder_a, folder_b = inputs.checkpoints_a[step], inputs.checkpoints_b[step]
        (n_a, rows_a), (n_b, rows_b) = aligned_rows(step, folder_a, folder_b, a, b, inputs.city_filter)
        x, y = (prepared(Instance(*instance), inputs.pca, terms, self.device, with_rows=bool(run.cka.bootstrap))
                for instance in ((folder_a, step, a, n_a, rows_a), (folder_b, step, b, n_b, rows_b)))
        self.bytes_read += READS.bytes - read_before
        self.from_cache += CACHE.hits - hits_before
        try:
            value = float(terms.compare(x.state, y.state))
            if run.null.permutations:
                orders = _orders(run.null.permutations, run.null.seed, len(rows_a), str(self.device))
                self.null.append(permutation_test(null_values(terms, x.state, y.state, orders), value,
                                                  self.measure.kind == SIMILARITY))
        except (UndefinedMeasureError, UndefinedValue) as err:
            raise InputError(f"step {step}, {a.instance} vs {b.instance}: {err}") from None
        self.values.append(value)
        level = terms.chance(x.state, y.state)
        self.chance.append(float("nan") if level is None else float(level))
        self.n_cities.append(len(rows_a))
        if run.cka.bootstrap:  # each step its own stream: an interval never depends on the steps computed with it
            self.intervals.append(bootstrap_interval(
                terms.function, x.rows, y.rows, run.cka.bootstrap, run.cka.confidence,
                torch.Generator().manual_seed(step_seed(run.cka.seed, step))))

    def timeline(self) -> Timeline:
        inputs = self.inputs
        pca_cities = None
        if inputs.pca is not None:
            pca_cities = [len(kept_cities(checkpoints[inputs.steps[-1]], inputs.pca.fit).rows)
                          for checkpoints in (inputs.checkpoints_a, inputs.checkpoints_b)]
        return Timeline(inputs.steps, self.values, self.n_cities, self.intervals, pca_cities, str(self.device),
                        self.bytes_read, self.from_cache, None if all(np.isnan(self.chance)) else self.chance,
                        self.null)
