"""Inference over models and seeds: intervals and tests that let the models vary too.

The report's seed-pairing tests (stats.py) take the seed pairing as the unit and the models as
fixed: their intervals say nothing about other models trained the same way. Here the models are
the unit, each with all of its seeds. A group's value is a mean over comparisons, each of two
instances (a model at a seed), and comparisons share models, so the variance comes from the
delete-one-model jackknife of dyadic data (Snijders & Borgatti 1999, "Non-parametric standard
errors and tests for network statistics"): each model of a regime left out in turn with every
comparison it takes part in, the estimate recomputed, and its variance
(n - 1) / n * sum (estimate without model i - their mean)^2 over the regime's n models.

- Seeds within their model: a left-out model takes all of its seeds with it, so the seed-to-seed
  variation is inside what the jackknife sees (the rule for two-stage data, Davison & Hinkley
  1997, section 3.8: resample the first stage; resampling the seeds again would count their
  variance twice).
- Regimes are different training runs: each regime's jackknife variance is added.
- The interval is the estimate +- t * sqrt(variance), the test two-sided t against 0, with
  n - 1 degrees of freedom for the fewest models of a regime read (rsatoolbox's rule for its
  bootstrap t-tests, min(n) - 1).

Why not a bootstrap: the two-level vertex bootstrap (models with replacement, then seeds) gave
intervals that covered 89% instead of 95% for the mean of seven models compared all with all, in
tests/test_inference.py's simulation: a model drawn twice cannot be compared with itself, which
damps exactly the draws that make the variance. The simulation checks coverage and
false-positive rates for every claim, beside the seed-pairing scheme's.

No exact test fits these comparisons: a permutation of model labels between regimes would make
pairs that were never computed (a comparison exists only within a regime), and within a regime the
two kinds of comparison are of different pairs. Pure functions of tables.
"""

from dataclasses import dataclass
from typing import NamedTuple, Optional

import numpy as np
import pandas as pd
from scipy import stats


@dataclass(frozen=True)
class Estimate:
    """A linear combination of group means, with its interval and test over models and seeds."""
    value: float
    ci_low: float
    ci_high: float
    p: float  # two-sided, against 0
    df: float
    n_models: int  # in all the regimes read

    def columns(self) -> dict[str, float]:
        """The report's columns of it: ms_ (over models and seeds) interval, p and df, and n_models."""
        return {"ms_ci_low": self.ci_low, "ms_ci_high": self.ci_high, "ms_p": self.p, "ms_df": self.df,
                "n_models": self.n_models}


NONE = Estimate(float("nan"), float("nan"), float("nan"), float("nan"), float("nan"), 0)


class Part(NamedTuple):
    """Comparisons of one regime whose mean enters an estimate times `coefficient`. With
    `partners` (comparisons of two models), a comparison of one model at two seeds weighs as much
    as that model's comparisons among the partners do (paired: see weights)."""
    rows: pd.DataFrame
    coefficient: float
    partners: Optional[pd.DataFrame] = None


def _indices(rows: pd.DataFrame, models: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each comparison's two models as indices into models (sorted)."""
    return (np.searchsorted(models, rows["model_a"].to_numpy(str)),
            np.searchsorted(models, rows["model_b"].to_numpy(str)))


def weights(rows: pd.DataFrame, models: np.ndarray, kept: np.ndarray,
            partners: Optional[pd.DataFrame] = None) -> np.ndarray:
    """Each comparison's weight, per row of kept (1 or 0 per model, models sorted): 1 where its
    models are kept, else 0. With partners, a comparison of one model at two seeds weighs as many
    as that model's kept partners, as its comparisons with them do together: a difference of the
    two kinds stays paired model by model, its models' own random effects cancelling in it as they
    do in the data."""
    a, b = _indices(rows, models)
    own = kept[:, a]
    if partners is not None:
        p, q = _indices(partners, models)
        adjacency = np.zeros((len(models), len(models)))
        np.add.at(adjacency, (p, q), 1)
        np.add.at(adjacency, (q, p), 1)
        own = own * (kept @ adjacency)[:, a]
    return np.where(a == b, own, kept[:, a] * kept[:, b])


def weighted_means(rows: pd.DataFrame, models: np.ndarray, kept: np.ndarray,
                   partners: Optional[pd.DataFrame] = None) -> np.ndarray:
    """The rows' weighted mean similarity per row of kept (weights; NaN where no comparison is
    kept)."""
    w = weights(rows, models, kept, partners).astype(float)
    total = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, w @ rows["similarity"].to_numpy(float) / total, np.nan)


def linear_estimate(parts: list[Part]) -> Estimate:
    """sum of coefficient * (weighted) mean similarity of the rows, over parts, each of one regime,
    with its interval (95%) and two-sided test against 0 over models and seeds (see the module's
    text). NONE where a part is empty, a regime has fewer than 2 models, or leaving a model out
    leaves a part without comparisons (its jackknife is undefined)."""
    parts = [Part(*part) for part in parts if part[1] != 0]
    if not parts or any(part.rows.empty for part in parts):
        return NONE
    regimes = [part.rows["regime"].unique() for part in parts]
    if any(len(r) > 1 for r in regimes):
        raise ValueError("linear_estimate: a part's rows are of one regime (split a pooled mean by regime)")
    value, variances, n_models = 0.0, [], []
    for regime in sorted({r[0] for r in regimes}):
        of_regime = [part for part, r in zip(parts, regimes) if r[0] == regime]
        models = np.unique(np.concatenate([p.rows[c].to_numpy(str) for p in of_regime for c in ("model_a", "model_b")]))
        n = len(models)
        if n < 2:
            return NONE
        kept = np.vstack([np.ones(n, int), 1 - np.eye(n, dtype=int)])  # all, then each model left out
        estimates = sum(p.coefficient * weighted_means(p.rows, models, kept, p.partners) for p in of_regime)
        if np.isnan(estimates[1:]).any():
            return NONE
        value += float(estimates[0])
        variances.append(float(np.var(estimates[1:])) * (n - 1))
        n_models.append(n)
    variance, df = sum(variances), min(n_models) - 1
    if variance <= 0:
        return Estimate(value, value, value, float("nan"), float(df), sum(n_models))
    se = np.sqrt(variance)
    half = float(stats.t.ppf(0.975, df)) * se
    return Estimate(value, value - half, value + half, float(2 * stats.t.sf(abs(value) / se, df)), float(df),
                    sum(n_models))


def slope_coefficients(x: np.ndarray) -> np.ndarray:
    """The least-squares slope of points (x, m) as a linear combination of the m: c . m."""
    centred = x - x.mean()
    return centred / (centred ** 2).sum()
