"""Similarity against covariates: does a model pair's similarity follow a quantity of the pair?

A covariate is a number per pair of models (or of instances), read from a CSV file of the user's
(read_covariates) or built in: n_shared_tasks, the number of training tasks two models share (a
column of the results). Per setting (so measure), regime and layer, covariate_tests correlates the
model pairs' similarity with it, Spearman's rho, and tests it with a Mantel test (Mantel 1967):
pairs are not independent observations, since every model takes part in several of them, so the
null distribution comes from permuting the models' labels, over the rows and columns of the
covariate's model x model matrix together, not from permuting pairs. Pure functions of tables.
"""

import csv
import difflib
import io
import math
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from cka_hydra.errors import InputError
from cka_hydra.stats import on_common_pairings, unit_means

# what a pair is made of: the names a file's id columns hold, as the results name them
LEVELS = {"model": ("model_a", "model_b"), "instance": ("instance_a", "instance_b")}
# how model-level values become pair-level (covariate_rule), and how the output names the rule
RULES: dict[str, tuple[str, Callable[[float, float], float]]] = {
    "absolute_difference": ("absolute difference", lambda x, y: abs(x - y)),
    "product": ("product", lambda x, y: x * y),
}
PAIR_LEVEL = "pair-level"  # the rule of a file of pairs' values, and of the built-in covariate
BUILT_IN = "n_shared_tasks"  # a column of the results, analysed wherever it varies
GROUP = ["setting", "measure", "regime", "layer"]  # one test per group and covariate
COLUMNS = [*GROUP, "covariate", "rule", "n_pairs", "n_models", "rho", "ci_low", "ci_high", "mantel_p", "permutations",
           "seed", "note"]
# a tie of a permuted statistic with the observed one, within floating-point error, counts as one
TIE = 1e-12
_NAME = re.compile(r"[A-Za-z0-9_.-]+")  # a covariate names its figure's file
FORMATS = ("model_a,model_b (or instance_a,instance_b), values of pairs, or model (or instance), values of models, "
           "then one or more numeric columns")


def read_covariates(path: Path, results: pd.DataFrame, rule: str = "absolute_difference") -> pd.DataFrame:
    """The covariates of a CSV file as pair-level values: one row per pair (a, b, a < b), covariate
    (the column's name) and level ("model" or "instance"), with its value and `rule` (PAIR_LEVEL
    for a file of pairs; for a file of models' values, the rule's name: a pair's value is
    |x_a - x_b| or x_a * x_b, for every two models the file names).

    A file of pairs names each pair once, in either order, and must name every pair of two
    different models (or instances of two models) the results compare whose two sides it names
    elsewhere. Names are checked against the results' (model_a/model_b, instance_a/instance_b).
    Anything else is refused with one InputError line naming the file, the line (the header is
    line 1) and what was expected."""
    if rule not in RULES:
        raise InputError(f"covariate_rule={rule}: expected one of {', '.join(RULES)}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"covariates={path}: cannot read it ({getattr(err, 'strerror', None) or err}); expected "
                         f"a CSV file: {FORMATS}") from None
    reader = csv.reader(io.StringIO(text))
    lines = [(reader.line_num, [cell.strip() for cell in row]) for row in reader if any(c.strip() for c in row)]
    if not lines:
        raise InputError(f"{path}: empty file; expected a header line ({FORMATS}) and a line per pair or model")
    header, *body = lines
    level, ids = _id_columns(path, header[1])
    names = {name for column in LEVELS[level] for name in results[column]}
    values = [column for column in header[1] if column not in ids]
    table = []
    for line, row in body:
        if len(row) != len(header[1]):
            raise InputError(f"{path}, line {line}: {len(row)} fields; expected {len(header[1])} "
                             f"({','.join(header[1])})")
        cells = dict(zip(header[1], row))
        for name in (cells[column] for column in ids):
            if name not in names:
                close = difflib.get_close_matches(name, names, n=1)
                raise InputError(f"{path}, line {line}: {name!r}: not a {level} of the report's results; expected "
                                 f"one of its {level}s" + (f" (did you mean {close[0]}?)" if close else ""))
        table.append((line, [cells[column] for column in ids], [_number(path, line, column, cells[column])
                                                                for column in values]))
    if not table:
        raise InputError(f"{path}: a header and no line; expected a line per pair or model after the header")
    pairs = _pairs(path, level, table, results) if len(ids) == 2 else _pairs_of_models(path, level, table, rule)
    return (pd.DataFrame([(level, a, b, column, value, text) for (a, b, value_row, text) in pairs
                          for column, value in zip(values, value_row)],
                         columns=["level", "a", "b", "covariate", "value", "rule"])
            .sort_values(["covariate", "a", "b"], ignore_index=True))


def _id_columns(path: Path, header: list[str]) -> tuple[str, list[str]]:
    """A header's level and id columns; refuses a header without them, a repeated column, a
    column the report could not name a file after, and the built-in covariate's name."""
    for column in header:
        if header.count(column) > 1:
            raise InputError(f"{path}, line 1: column {column!r} twice; expected each column once")
        if not _NAME.fullmatch(column):
            raise InputError(f"{path}, line 1: column {column!r}: expected a name of letters, digits, _ . and -")
    for level, (a, b) in LEVELS.items():
        for ids in ([a, b], [level]):
            if set(ids) <= set(header):
                if len(header) == len(ids):
                    raise InputError(f"{path}, line 1: no column of values beside {','.join(ids)}; expected "
                                     "one or more numeric columns")
                if BUILT_IN in header:
                    raise InputError(f"{path}, line 1: column {BUILT_IN}: built in (the results' number of tasks "
                                     "two models share); expected another name")
                return level, ids
    raise InputError(f"{path}, line 1: columns {','.join(header)}; expected {FORMATS}")


def _number(path: Path, line: int, column: str, cell: str) -> float:
    try:
        value = float(cell)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise InputError(f"{path}, line {line}, column {column}: {cell!r}; expected a number")
    return value


def _pairs(path: Path, level: str, table: list, results: pd.DataFrame) -> list[tuple]:
    """A file of pairs' values as (a, b, values, rule) with a < b; refuses a side twice in a
    pair, a pair twice, and a pair of the results that the file's names cover but it lacks."""
    seen: dict[tuple[str, str], int] = {}
    pairs = []
    for line, (a, b), values in table:
        if a == b:
            raise InputError(f"{path}, line {line}: {a}, {b}: a {level} with itself; expected two different "
                             f"{level}s")
        pair = (min(a, b), max(a, b))
        if pair in seen:
            raise InputError(f"{path}, line {line}: {a}, {b}: the pair of line {seen[pair]} again (in either "
                             "order); expected each pair once")
        seen[pair] = line
        pairs.append((*pair, values, PAIR_LEVEL))
    named = {name for pair in seen for name in pair}
    a, b = LEVELS[level]
    two = results[(results["model_a"] != results["model_b"]) & results[a].isin(named) & results[b].isin(named)]
    held = sorted({(min(x, y), max(x, y)) for x, y in zip(two[a], two[b])} - set(seen))
    if held:
        more = f" and {len(held) - 3} more" if len(held) > 3 else ""
        raise InputError(f"{path}: no line for {'; '.join(', '.join(pair) for pair in held[:3])}{more}; expected "
                         f"a line for every pair of two models the results compare whose {level}s the file names")
    return pairs


def _pairs_of_models(path: Path, level: str, table: list, rule: str) -> list[tuple]:
    """A file of models' (or instances') values as the values of every two of them, by the rule."""
    text, combine = RULES[rule]
    seen: dict[str, int] = {}
    for line, (name,), _ in table:
        if name in seen:
            raise InputError(f"{path}, line {line}: {name}: listed on line {seen[name]} already; expected each "
                             f"{level} once")
        seen[name] = line
    rows = sorted((name, values) for _, (name,), values in table)
    return [(a, b, [combine(x, y) for x, y in zip(values_a, values_b)], text)
            for i, (a, values_a) in enumerate(rows) for b, values_b in rows[i + 1:]]


def unlisted(covariates: pd.DataFrame, results: pd.DataFrame) -> list[str]:
    """The models (or instances, for a file of instances) of the results that read_covariates'
    table does not name: not analysed."""
    level = covariates["level"].iloc[0]
    named = {*covariates["a"], *covariates["b"]}
    return sorted({name for column in LEVELS[level] for name in results[column]} - named)


def pair_similarities(final: pd.DataFrame, level: str) -> pd.DataFrame:
    """Per group (setting, measure, regime, layer) and pair of two models (a < b), the similarity of
    a layer with the same layer, of the comparisons that count (stats.comparisons_that_count):
    at the model level, the mean over the seed pairings every model pair of the group has (like for
    like, stats.on_common_pairings); at the instance level, the mean of the instance pair's
    comparisons. Pairs of one model (at two seeds) are no pair of two models: left out."""
    a, b = LEVELS[level]
    rows = final[(final["layer"] == final["layer_b"]) & (final["model_a"] != final["model_b"])]
    rows = rows.assign(a=np.minimum(rows[a], rows[b]), b=np.maximum(rows[a], rows[b]))
    if level == "instance":
        return rows.groupby([*GROUP, "a", "b"], as_index=False)["similarity"].mean()
    parts = [on_common_pairings(units, ["a", "b"])[0]
             for _, units in unit_means(rows, [*GROUP, "a", "b"]).groupby(GROUP)]
    if not parts:
        return pd.DataFrame(columns=[*GROUP, "a", "b", "similarity"])
    return pd.concat(parts).groupby([*GROUP, "a", "b"], as_index=False)["similarity"].mean()


def built_in(final: pd.DataFrame) -> pd.DataFrame:
    """n_shared_tasks as a covariate (read_covariates' columns): its value for every pair of two
    models the results compare."""
    rows = final[final["model_a"] != final["model_b"]]
    table = pd.DataFrame({"a": np.minimum(rows["model_a"], rows["model_b"]),
                          "b": np.maximum(rows["model_a"], rows["model_b"]),
                          "value": rows[BUILT_IN].astype(float)}).drop_duplicates(["a", "b"])
    return table.assign(level="model", covariate=BUILT_IN, rule=PAIR_LEVEL)


def pair_table(final: pd.DataFrame, covariates: pd.DataFrame | None = None) -> pd.DataFrame:
    """Each group's pairs (pair_similarities) beside each covariate's value for them, the built-in
    n_shared_tasks and those of `covariates` (read_covariates'), where the covariate has one:
    GROUP, covariate, rule, a, b, similarity, value. What covariate_tests tests and
    figures.covariate_figure draws."""
    parts = [pair_similarities(final, level).merge(values.drop(columns="level"), on=["a", "b"])
             for level, values in _every(final, covariates).groupby("level")]
    columns = [*GROUP, "covariate", "rule", "a", "b", "similarity", "value"]
    return pd.concat(parts, ignore_index=True)[columns] if parts else pd.DataFrame(columns=columns)


def _every(final: pd.DataFrame, covariates: pd.DataFrame | None) -> pd.DataFrame:
    """The built-in covariate and those of a file (read_covariates'), in one table."""
    return pd.concat([built_in(final), *([covariates] if covariates is not None else [])], ignore_index=True)


def covariate_tests(final: pd.DataFrame, covariates: pd.DataFrame | None = None, permutations: int = 10000,
                    seed: int = 0) -> pd.DataFrame:
    """Per setting, measure, regime, layer (a layer against the same layer) and covariate, of the
    comparisons that count (final: stats.comparisons_that_count's rows): Spearman's rho between the
    model pairs' similarity and the covariate (pair_table), over the pairs present, their number
    (n_pairs) and that of the models in them (n_models; instances, for a file of instances), and
    the two-sided p-value of a Mantel test (mantel_test) with `permutations` permutations drawn
    by numpy.random.default_rng(seed). The built-in n_shared_tasks only where it varies; another
    covariate that is constant in a group (or a group's similarity, or fewer than 3 pairs) gets no
    rho or p, and `note` says why. Columns: COLUMNS."""
    matrices = dict(iter(_every(final, covariates).groupby(["covariate", "rule"])))
    rows = []
    for key, pairs in pair_table(final, covariates).groupby([*GROUP, "covariate", "rule"]):
        group = dict(zip([*GROUP, "covariate", "rule"], key))
        constant = pairs["value"].nunique() == 1
        if group["covariate"] == BUILT_IN and constant:
            continue
        labels = sorted({*pairs["a"], *pairs["b"]})
        note = ("fewer than 3 pairs: no rho" if len(pairs) < 3
                else "the covariate is constant here: no rho or p" if constant
                else "the similarity is constant here: no rho or p" if pairs["similarity"].nunique() == 1 else "")
        similarity, matrix = pairs["similarity"].to_numpy(float), covariate_matrix(matrices[key[-2:]], labels)
        a, b = np.searchsorted(labels, pairs["a"]), np.searchsorted(labels, pairs["b"])
        rho, p = (math.nan, math.nan) if note else mantel_test(similarity, matrix, a, b, permutations, seed)
        low, high = (math.nan, math.nan) if note else rho_interval(similarity, matrix[a, b], a, b, len(labels))
        rows.append(dict(group, n_pairs=len(pairs), n_models=len(labels), rho=rho, ci_low=low, ci_high=high,
                         mantel_p=p,
                         permutations=permutations, seed=seed, note=note))
    return pd.DataFrame(rows, columns=COLUMNS)


def rho_interval(similarity: np.ndarray, covariate: np.ndarray, rows: np.ndarray, columns: np.ndarray,
                 n_labels: int) -> tuple[float, float]:
    """A 95% interval of Spearman's rho over models and seeds: the delete-one-model jackknife
    (inference.py's scheme) of Fisher's z = atanh(rho), each label left out with every pair it
    is in, t with n - 1 degrees of freedom, back-transformed; NaN where leaving a label out leaves
    fewer than 3 pairs or a constant side."""
    def rho(keep: np.ndarray) -> float:
        x, y = similarity[keep], covariate[keep]
        if keep.sum() < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
            return math.nan
        return float(stats.spearmanr(x, y).statistic)

    z = np.arctanh(np.clip([rho((rows != i) & (columns != i)) for i in range(n_labels)], -0.999999, 0.999999))
    whole = np.arctanh(np.clip(rho(np.ones(len(similarity), bool)), -0.999999, 0.999999))
    if np.isnan(z).any() or np.isnan(whole):
        return math.nan, math.nan
    half = stats.t.ppf(0.975, n_labels - 1) * np.sqrt((n_labels - 1) * np.var(z))
    return float(np.tanh(whole - half)), float(np.tanh(whole + half))


def covariate_matrix(values: pd.DataFrame, labels: list[str]) -> np.ndarray:
    """A covariate's pair values (columns a, b, value) as a symmetric labels x labels matrix, NaN
    where it has none (the diagonal, and pairs a file of pairs does not list)."""
    index = {label: i for i, label in enumerate(labels)}
    matrix = np.full((len(labels), len(labels)), np.nan)
    known = values[values["a"].isin(index) & values["b"].isin(index)]
    i, j = known["a"].map(index).to_numpy(), known["b"].map(index).to_numpy()
    matrix[i, j] = matrix[j, i] = known["value"].to_numpy(float)
    return matrix


def mantel_test(similarity: np.ndarray, covariate: np.ndarray, rows: np.ndarray, columns: np.ndarray,
                permutations: int, seed: int) -> tuple[float, float]:
    """Spearman's rho between the pairs' similarity and the covariate, and its two-sided Mantel
    p-value: pair k joins labels rows[k] and columns[k]; covariate is the labels x labels matrix
    (covariate_matrix). Each permutation is one order of the labels applied to the covariate's rows
    and columns together (numpy.random.default_rng(seed).permuted on `permutations` copies of
    0..n-1, one per row), read at the pairs present; p = (1 + #{|rho_perm| >= |rho|}) /
    (1 + permutations). A permuted value the matrix lacks leaves its pair out of that permutation's
    statistic; a permutation with fewer than 3 pairs left, or constant values, has no rho and counts
    as at least as extreme (so p errs high, never low). Vectorised, Spearman's rho as the Pearson
    correlation of ranks (scipy.stats.rankdata, ties averaged), each side ranked once: the
    similarity, and where every pair of the labels is present the covariate's values (a
    permutation reorders them); else all permutations' values in one call along rows, and the
    similarity with them where a permutation leaves a pair out."""
    n = len(covariate)
    rng = np.random.default_rng(seed)
    orders = np.vstack([np.arange(n), rng.permuted(np.tile(np.arange(n), (permutations, 1)), axis=1)])
    values = covariate[orders[:, rows], orders[:, columns]]  # row 0: the labels as they are
    present = ~np.isnan(values)
    if present.all():
        x = np.broadcast_to(stats.rankdata(similarity), values.shape)
    else:
        x = stats.rankdata(np.where(present, similarity, np.nan), axis=1, nan_policy="omit")
    if present.all() and len(similarity) == n * (n - 1) // 2:
        # every pair present: each permutation reorders the same values, so their ranks too
        ranks = np.zeros_like(covariate)
        ranks[rows, columns] = ranks[columns, rows] = stats.rankdata(values[0])
        y = ranks[orders[:, rows], orders[:, columns]]
    else:
        y = stats.rankdata(values, axis=1, nan_policy="omit")
    rho = _pearson_rows(x, y, present)
    observed = rho[0]
    extreme = ~(np.abs(rho[1:]) < abs(observed) - TIE)  # NaN: at least as extreme
    return float(observed), float((1 + extreme.sum()) / (1 + permutations))


def _pearson_rows(x: np.ndarray, y: np.ndarray, present: np.ndarray) -> np.ndarray:
    """The Pearson correlation of each row of x with the same row of y over its present entries
    (NaN with fewer than 3, or where either side is constant)."""
    count = present.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        dx = np.where(present, x - np.where(present, x, 0).sum(axis=1, keepdims=True) / count[:, None], 0)
        dy = np.where(present, y - np.where(present, y, 0).sum(axis=1, keepdims=True) / count[:, None], 0)
        rho = (dx * dy).sum(axis=1) / np.sqrt((dx * dx).sum(axis=1) * (dy * dy).sum(axis=1))
    return np.where(count >= 3, rho, np.nan)
