"""The measures, one object each, found by name.

A `Measure` says everything the app needs of a measure: how it is computed from prepared
instances (`terms`), its timeline's value column, whether higher values mean more alike, and
its label. The built-ins are `cka`, `pca_cka`, `procrustes` and the field's standard measures
`shape`, `svcca`, `mknn` and `rsa` (cka_hydra.measures); a user adds one with a YAML file in their
config dir, `measure/NAME.yaml`:

    _target_: mymeasures.full_procrustes   # f(x, y) -> float or 0-d tensor
    kind: distance                          # or similarity

(`user_measure`), or from Python with `register`. Imports no torch until a measure is computed:
the sweeper's process plans with this module.
"""

import functools
import importlib
import math
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, NamedTuple

from cka_hydra.errors import InputError

SIMILARITY, DISTANCE = "similarity", "distance"


@dataclass(frozen=True)
class Terms:
    """A measure as computed for one run's settings: what the engine calls.

    Attributes:
        key: what a prepared state depends on besides the rows (two Terms with one key share
            states in the engine's cache).
        prepare: one side's aligned rows, an (n, d) tensor (or its principal components) -> its
            state, computed once per instance and kept in the engine's cache.
        compare: two states -> the value (a 0-d tensor).
        function: the measure of two row sets, batched (..., n, d), for the bootstrap; None: no
            bootstrap (measure=cka's alone has one).
        permute: a state and permutations of its rows, (n,) or (B, n) -> the state of the
            permuted rows (self-terms unchanged), for the permutation test.
        batched: compare takes B permuted states at once.
        chance: two states -> the exact mean of the value under a random re-pairing of the
            cities, where the measure has one in closed form, else None.
    """

    key: tuple
    prepare: Callable[[Any], Any]
    compare: Callable[[Any, Any], Any]
    function: Callable[[Any, Any], Any] | None  # None: no bootstrap (measure=cka's alone has one)
    permute: Callable[[Any, Any], Any]
    batched: bool = True
    chance: Callable[[Any, Any], Any] = lambda a, b: None


class Needs(Enum):
    """What a measure is computed on, per instance: prepared once, shared by every measure of the
    same needs and settings (the engine's cache key)."""

    rows = "rows"  # the instance's rows of the compared cities
    pca_scores = "pca_scores"  # its first measure.components principal components (fitted on measure.pca_filter)


@dataclass(frozen=True)
class Measure:
    """A measure: everything the app needs of it, declared once (`register`).

    Attributes:
        name: the name `measure=` (or `measure.name=`) selects, and its run folders carry.
        column: the timeline's value column.
        kind: `SIMILARITY` or `DISTANCE`; the report turns a distance d into the similarity
            1 - d / distance_max.
        label: what its similarity is, for axis labels; `{k}`: the number of principal
            components.
        description: what it computes, for messages.
        terms: (the run's CKAConfig, its MeasureConfig) -> its `Terms`; None for a measure read
            from a result.
        needs: what it is computed on: `Needs.rows` or `Needs.pca_scores`.
        target: a user measure's function, as its file names it.
        record: (CKAConfig, settings, statistics) -> the keys its results' `summary.json`
            records beside the statistics.
        settings: the run's MeasureConfig -> the `measure.*` settings that decide its value
            (they name its run folders; the others are ignored, and said so).
        distance_max: a distance's largest value.
    """

    name: str
    column: str  # the timeline's value column
    kind: str  # SIMILARITY or DISTANCE: the report turns a distance d into the similarity 1 - d
    label: str  # what its similarity is, for axis labels; {k}: the number of principal components
    description: str  # what it computes, for messages
    # the run's CKAConfig and MeasureConfig -> how it is computed (None: read from a result)
    terms: Callable[[Any, Any], Terms] | None
    needs: Needs = Needs.rows
    target: str | None = None  # a user measure's function, as its file names it
    # what a result of it records beside its statistics: (the run's CKAConfig, its settings, the
    # statistics final/mean/std/min/max) -> summary.json's extra keys
    record: Callable[[Any, Mapping[str, Any], Mapping[str, float]], dict[str, Any]] = lambda cka, settings, stats: {}
    # the measure.* settings that decide its value, given the run's MeasureConfig (the others
    # are left out of its results' settings and folder names)
    settings: Callable[[Any], tuple[str, ...]] = lambda measure: ()
    distance_max: float = 1.0  # a distance's largest value: its similarity is 1 - value / distance_max

    def similarity(self, value: Any) -> Any:
        """The value as "higher is more alike", at most 1 (a number or a pandas column)."""
        return value if self.kind == SIMILARITY else 1 - value / self.distance_max

    def calibrated(self, value: Any, null_mean: Any) -> Any:
        """The similarity above chance as a share of its room above chance (Groeger et al. 2026):
        (s - s_0) / (1 - s_0), s_0 the similarity of the null mean (the same as the null mean of
        the similarity: similarity is affine)."""
        chance = self.similarity(null_mean)
        return (self.similarity(value) - chance) / (1 - chance)


class RowState(NamedTuple):
    """Linear CKA's prepared instance: the centred rows X_c, HSIC(X, X), and ||X_c||_F^2 = tr(K_c)."""

    rows: Any
    self_term: Any
    trace: Any


class GramState(NamedTuple):
    """RBF CKA's prepared instance: the centred Gram K_c, HSIC(K, K), tr(K_c)."""

    gram: Any
    self_term: Any
    trace: Any


class BlockState(NamedTuple):
    """RBF CKA's prepared instance whose Gram is too large to keep: its centred rows, from which
    each comparison builds both Grams block by block."""

    rows: Any


def _cka_terms(cka: Any, measure: Any) -> Terms:
    import torch

    from cka_hydra import cka as math_

    dtype = getattr(torch, cka.precision.value)
    if cka.kernel.value != "rbf":
        return _linear_terms(cka.debiased, dtype)

    def prepare(x: Any) -> GramState | BlockState:
        xc = math_.centred(x, dtype, "compared")
        if xc.element_size() * x.shape[0] ** 2 > math_.DEFAULT_CACHE_BYTES:
            return BlockState(xc)
        gram = math_.centred_gram(math_.rbf_gram(xc, cka.sigma_frac), cka.debiased)
        return GramState(gram, math_.gram_hsic(gram, gram), gram.diagonal().sum())

    def compare(a: Any, b: Any) -> Any:
        if isinstance(a, BlockState):
            if b.rows.dim() == 3:  # permuted rows, B at a time
                return torch.stack([compare(a, BlockState(rows)) for rows in b.rows])
            return math_.gram_cka(math_.rbf_kernel(a.rows, cka.sigma_frac), math_.rbf_kernel(b.rows, cka.sigma_frac),
                                  a.rows.shape[0], cka.debiased)
        return math_.cka_ratio(math_.gram_hsic(a.gram, b.gram), a.self_term, b.self_term)

    def permute(state: Any, perms: Any) -> Any:
        if isinstance(state, BlockState):
            return BlockState(state.rows[perms])
        return state._replace(gram=state.gram[perms[..., :, None], perms[..., None, :]])

    def chance(a: Any, b: Any) -> Any:
        if isinstance(a, BlockState):
            return None
        return _chance(a.trace, b.trace, a.self_term, b.self_term, a.gram.shape[-1], cka.debiased)

    return Terms(("rbf", cka.sigma_frac, cka.debiased, str(dtype)), prepare, compare,
                 functools.partial(math_.rbf_cka, sigma_frac=cka.sigma_frac, debiased=cka.debiased, dtype=dtype),
                 permute, chance=chance)


def _chance(trace_k: Any, trace_l: Any, self_k: Any, self_l: Any, n: int, debiased: bool) -> Any:
    """The exact mean of biased CKA under a uniformly random re-pairing of the cities (one side's
    rows and columns permuted by P, all n! equally likely), for any kernel.

    With K, L centred (rows and columns summing to 0), E[<K, P L P^T>] = sum_i K_ii E[L_pp] +
    sum_{i != j} K_ij E[L_pq] (p != q) = tr(K) tr(L) / n + (-tr(K)) (-tr(L)) / (n (n - 1)) =
    tr(K) tr(L) / (n - 1), since the off-diagonal entries of a centred matrix sum to -its trace.
    The denominator ||K||_F ||L||_F does not change with P, so

        E[CKA] = tr(K_c) tr(L_c) / ((n - 1) ||K_c||_F ||L_c||_F)

    (for linear CKA tr(K_c) = ||X_c||_F^2 and ||K_c||_F = ||X_c^T X_c||_F). Debiased: the
    unbiased HSIC is linear in L through L's off-diagonal entries only, each term with the mean
    l of those under P, and its coefficients (1 + 1 - 2, Song et al.'s three sums) cancel: the
    null mean is exactly 0 (tests/test_chance.py checks both against Monte Carlo)."""
    import torch

    if debiased:
        return torch.zeros((), dtype=trace_k.dtype, device=trace_k.device)
    return trace_k * trace_l / ((n - 1) * torch.sqrt(self_k * self_l))


def _linear_terms(debiased: bool, dtype: Any) -> Terms:
    import torch

    from cka_hydra import cka as math_

    def prepare(x: Any) -> RowState:
        xc = math_.centred(x, dtype, "compared")
        return RowState(xc, math_.linear_hsic(xc, xc, debiased), torch.linalg.matrix_norm(xc) ** 2)  # its trace, ||X_c||_F^2

    return Terms(("linear", debiased, str(dtype)), prepare,
                 lambda a, b: math_.cka_ratio(math_.linear_hsic(a.rows, b.rows, debiased), a.self_term, b.self_term),
                 functools.partial(math_.linear_cka, debiased=debiased, dtype=dtype),
                 lambda state, perms: state._replace(rows=state.rows[perms]),
                 chance=lambda a, b: _chance(a.trace, b.trace, a.self_term, b.self_term, a.rows.shape[-2], debiased))


def _pca_cka_terms(cka: Any, measure: Any) -> Terms:
    import torch

    return _linear_terms(False, torch.float64)


def _procrustes_terms(cka: Any, measure: Any) -> Terms:
    from cka_hydra import cka as math_

    return Terms(("procrustes",), lambda x: math_.procrustes_scaled(x, side="compared"), math_.procrustes_of_scaled,
                 math_.procrustes_disparity, _permuted_rows)


def _permuted_rows(rows: Any, perms: Any) -> Any:
    return rows[perms]


def _shape_terms(cka: Any, measure: Any) -> Terms:
    from cka_hydra import measures

    return Terms(("shape", measure.alpha, measure.center),
                 lambda x: measures.shape_prepared(x, measure.alpha, measure.center, "compared"),
                 measures.angular_shape_distance, None, _permuted_rows)


def _svcca_terms(cka: Any, measure: Any) -> Terms:
    from cka_hydra import measures

    components = measure.components if measure.variance is None else None
    return Terms(("svcca", measure.variance, components),
                 lambda x: measures.svcca_basis(x, measure.variance, components, "compared"),
                 measures.mean_canonical_correlation, None, _permuted_rows)


def _mknn_terms(cka: Any, measure: Any) -> Terms:
    from cka_hydra import cka as math_, measures

    def prepare(x: Any) -> Any:
        if measure.k >= x.shape[0]:
            raise math_.UndefinedMeasureError(f"measure.k={measure.k}: expected fewer neighbours per city than the "
                                              f"{x.shape[0]} cities compared")
        return measures.nearest_neighbours(x, measure.k, measure.metric.value, "compared")

    return Terms(("mknn", measure.k, measure.metric.value), prepare,
                 measures.mutual_knn_alignment, None, measures.permuted_neighbours)


def _rsa_terms(cka: Any, measure: Any) -> Terms:
    from cka_hydra import measures

    return Terms(("rsa", measure.rdm.value), lambda x: measures.rsa_prepared(x, measure.rdm.value, "compared"),
                 measures.spearman_of_ranked, None, measures.permuted_rdm)


REGISTRY: dict[str, Measure] = {}


def register(measure: Measure) -> Measure:
    """Add a measure to the registry, or replace one of the same name.

    The built-in measures are declared below, one `register(...)` each. From a config dir, a
    measure of your own is one YAML file instead (docs/regimes.md, "Your own measure"), which
    works in sweeps too; a measure registered from Python serves `compare` in that process.

    Args:
        measure: the measure to add.

    Returns:
        The measure, so that a declaration can be kept under a name.

    Example (linear CKA written out, selected by `measure.name`):

    ```python
    import torch
    from cka_hydra import compare
    from cka_hydra.registry import SIMILARITY, Measure, Terms, register

    def centred(x):
        x = x.to(torch.float64)
        return x - x.mean(0)

    def hsic_ratio(a, b):
        norm = torch.linalg.matrix_norm
        return norm(a.T @ b) ** 2 / (norm(a.T @ a) * norm(b.T @ b))

    register(Measure("my_cka", "my_cka", SIMILARITY, "my linear CKA", "linear CKA, by hand",
                     lambda cka, settings: Terms(("my_cka",), centred, hsic_ratio, None,
                                                 lambda state, perm: state[perm], batched=False)))
    mine = compare(["regime=pt3", "pair=4_5", "layer=5", "measure.name=my_cka"], write=False)
    cka = compare(["regime=pt3", "pair=4_5", "layer=5"], write=False)
    assert abs(mine["value"].iloc[-1] - cka["value"].iloc[-1]) < 1e-12
    ```
    """
    REGISTRY[measure.name] = measure
    return measure


def _cka_record(cka: Any, settings: Mapping[str, Any], statistics: Mapping[str, float]) -> dict[str, Any]:
    """CKA's results keep the names they always had: final_cka, ..., and the kernel's settings."""
    return {**_cka_statistics(cka, settings, statistics), "kernel": cka.kernel.name,
            "sigma_frac": settings.get("cka.sigma_frac"), "debiased": cka.debiased, "precision": cka.precision.name}


def _cka_statistics(cka: Any, settings: Mapping[str, Any], statistics: Mapping[str, float]) -> dict[str, Any]:
    return {f"{name}_cka": value for name, value in statistics.items()}


def _pca_settings(measure: Any) -> tuple[str, ...]:
    return ("components", "pca_filter")


# The built-in measures: one declaration each.
register(Measure("cka", "cka", SIMILARITY, "CKA", "CKA of the whole representations, as the cka.* settings say",
                 _cka_terms, record=_cka_record))
register(Measure("pca_cka", "pca_cka", SIMILARITY, "CKA of the first {k} PCs",
                 "linear CKA of the first principal components", _pca_cka_terms, Needs.pca_scores,
                 record=_cka_statistics, settings=_pca_settings))
register(Measure("procrustes", "procrustes_disparity", DISTANCE, "Procrustes similarity, 1 - disparity ({k} PCs)",
                 "the Procrustes disparity of the first principal components", _procrustes_terms, Needs.pca_scores,
                 settings=_pca_settings))
register(Measure("shape", "shape_angle", DISTANCE, "shape similarity, 1 - angle / (pi/2)",
                 "the angular Procrustes shape metric (Williams et al. 2021)", _shape_terms,
                 settings=lambda measure: ("alpha", "center"), distance_max=math.pi / 2))
register(Measure("svcca", "svcca", SIMILARITY, "SVCCA, mean canonical correlation",
                 "SVCCA (Raghu et al. 2017)", _svcca_terms,
                 settings=lambda measure: ("variance",) if measure.variance is not None else ("variance", "components")))
register(Measure("mknn", "mknn", SIMILARITY, "mutual kNN alignment",
                 "mutual k-nearest-neighbour alignment (Huh et al. 2024)", _mknn_terms,
                 settings=lambda measure: ("k", "metric")))
register(Measure("rsa", "rsa", SIMILARITY, "RSA, Spearman correlation of RDMs",
                 "representational similarity analysis (Spearman correlation of RDMs)", _rsa_terms,
                 settings=lambda measure: ("rdm",)))
BUILT_IN = tuple(REGISTRY)


def get(name: str) -> Measure:
    """The registered measure of that name.

    Args:
        name: a measure's name: `cka`, `pca_cka`, `procrustes`, `shape`, `svcca`, `mknn`,
            `rsa`, or one registered.

    Returns:
        Its `Measure`.

    Raises:
        InputError: no measure has that name (the message lists those that do).
    """
    try:
        return REGISTRY[name]
    except KeyError:
        raise InputError(f"measure={name}: no such measure; the measures are {', '.join(REGISTRY)} "
                         "(add one with measure/NAME.yaml in your --config-dir)") from None


def user_measure(name: str, target: str, kind: str | None) -> Measure:
    """The measure of a user's `measure/NAME.yaml`: the function `target` names, f(x, y) with x, y
    (n_cities, features) float64 rows of the same cities, returning a float or a 0-d tensor."""
    where = f"measure {name} (_target_: {target})"
    if name in BUILT_IN:
        raise InputError(f"{where}: {name} is a built-in measure's name; name your measure's file otherwise")
    if kind not in (SIMILARITY, DISTANCE):
        raise InputError(f"{where}: kind={kind}: expected {SIMILARITY} or {DISTANCE} (is higher more alike, or less?)")
    function = _locate(target, where)

    def compare(x: Any, y: Any) -> Any:
        import torch

        try:
            value = float(function(x, y))
        except Exception as err:  # the user's code: any error fails this comparison alone
            raise UndefinedValue(f"{where} raised {type(err).__name__}: {(str(err).splitlines() or [''])[0]}") \
                from None
        if not math.isfinite(value):
            raise UndefinedValue(f"{where} returned {value}: expected a finite number")
        return torch.tensor(value, dtype=torch.float64)

    def prepare(x: Any) -> Any:
        import torch

        return x.to(torch.float64)

    return Measure(name, name, kind, _user_label(name, kind), f"the user measure {target}",
                   lambda cka, settings: Terms(("user", target), prepare, compare, compare, _permuted_rows,
                                               batched=False), target=target)


class UndefinedValue(InputError):
    """A user measure that raised or gave no finite value."""


def _locate(target: str, where: str) -> Callable[..., Any]:
    module_name, _, attribute = target.rpartition(".")
    if not module_name:
        raise InputError(f"{where}: expected module.function, e.g. mymeasures.full_procrustes")
    try:
        function = getattr(_import(module_name), attribute)
    except (ImportError, AttributeError) as err:
        raise InputError(f"{where}: cannot import it ({type(err).__name__}: {err}); the module must be importable "
                         "from the folder you run in, or on PYTHONPATH") from None
    if not callable(function):
        raise InputError(f"{where}: {target} is not a function")
    return function


def _import(module_name: str) -> Any:
    """A module, from the import path or else the working directory (as `python -m` finds it;
    a script's or the API's process may not have it on its path)."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name != module_name.split(".")[0] or os.getcwd() in sys.path:
            raise
        sys.path.insert(0, os.getcwd())
        return importlib.import_module(module_name)


def of_summary(summary: Mapping[str, Any]) -> Measure:
    """The measure a result was computed with (see of_result); results written before measures
    existed are CKA."""
    return of_result(summary.get("measure", "cka"), summary.get("measure_kind"), summary.get("measure_target"))


def of_result(name: str, kind: str | None = None, target: str | None = None) -> Measure:
    """A measure as a result records it: a built-in by name, a user measure by its kind and
    function (the report may run without the user's module, and computes nothing)."""
    if name in BUILT_IN or kind is None:
        return get(name)
    return Measure(name, name, kind, _user_label(name, kind), f"the user measure {target}", None, target=target)


def _user_label(name: str, kind: str) -> str:
    return name if kind == SIMILARITY else f"1 - {name}"
