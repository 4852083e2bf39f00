"""Inference over models and seeds (cka_hydra.inference), and a simulation of whole studies that
checks its intervals' coverage and its tests' false-positive rate against the seed-pairing scheme."""

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf
from scipy import stats as scipy_stats

from cka_hydra import inference, stats

REGIMES = Path(__file__).parents[1] / "conf" / "regime"
PAIRINGS = [("orig", "1"), ("1", "2"), ("orig", "2")]  # the study's seed policy


def test_leaving_a_model_out_drops_every_comparison_it_takes_part_in():
    rows = pd.DataFrame({"model_a": ["m1", "m1", "m2", "m3"], "model_b": ["m2", "m3", "m3", "m3"],
                         "similarity": [0.1, 0.2, 0.3, 0.4]})
    models = np.array(["m1", "m2", "m3"])
    kept = np.vstack([np.ones(3, int), 1 - np.eye(3, dtype=int)])
    assert inference.weights(rows, models, kept).tolist() == [[1, 1, 1, 1], [0, 0, 1, 1], [0, 1, 0, 1],
                                                              [1, 0, 0, 0]]
    assert inference.weighted_means(rows, models, kept) == pytest.approx([0.25, 0.35, 0.3, 0.1])
    # paired: m3 against itself weighs as its comparisons with its partners (m1, m2) do together
    same = pd.DataFrame({"model_a": ["m3"], "model_b": ["m3"], "similarity": [0.9]})
    partners = rows[rows["model_a"] != rows["model_b"]]
    assert inference.weights(same, models, kept, partners).tolist() == [[2], [1], [1], [0]]


def test_slope_coefficients_give_the_least_squares_slope():
    x, y = np.array([1.0, 2.0, 3.0, 5.0]), np.array([0.2, 0.5, 0.4, 0.9])
    assert inference.slope_coefficients(x) @ y == pytest.approx(scipy_stats.linregress(x, y).slope, abs=1e-12)


def test_an_estimate_of_models_each_with_itself_is_students_t_over_the_models():
    """Each model's comparisons with itself only (a cluster per model): the jackknife's variance of
    the mean is the sample variance of the model means over n, and the interval Student's t over
    models, exactly."""
    rng = np.random.default_rng(1)
    means = rng.normal(0.5, 0.1, 8)
    rows = pd.DataFrame([dict(regime="pt1", model_a=f"m{i}", model_b=f"m{i}", similarity=m)
                         for i, m in enumerate(means) for _ in range(3)])
    estimate = inference.linear_estimate([inference.Part(rows, 1.0)])
    _, low, high = stats.mean_ci(means)
    assert estimate.value == pytest.approx(means.mean()) and estimate.df == 7 and estimate.n_models == 8
    assert (estimate.ci_low, estimate.ci_high) == pytest.approx((low, high), rel=1e-12)
    assert estimate.p == pytest.approx(scipy_stats.ttest_1samp(means, 0).pvalue, rel=1e-9)


def test_a_part_of_two_regimes_is_refused_and_too_few_models_give_no_interval():
    rows = pd.DataFrame(dict(regime=["pt1", "pt2"], model_a=["a", "b"], model_b=["c", "d"], similarity=[0.5, 0.6]))
    with pytest.raises(ValueError, match="one regime"):
        inference.linear_estimate([inference.Part(rows, 1.0)])
    one = pd.DataFrame(dict(regime=["pt1"], model_a=["a"], model_b=["a"], similarity=[0.5]))
    assert inference.linear_estimate([inference.Part(one, 1.0)]) == inference.NONE


# --- a simulation of whole studies ---

def pair_graph(regime: str) -> tuple[list[str], list[tuple[str, str]]]:
    """A regime's models and the pairs the study compares (no shared training task), read from
    its regime file."""
    models = OmegaConf.to_container(OmegaConf.load(REGIMES / f"{regime}.yaml"))["models"]
    names = {index: f"{regime}-{index}" for index in models}
    pairs = [(names[a], names[b]) for a, b in itertools.combinations(sorted(models), 2)
             if not set(models[a]) & set(models[b])]
    return sorted(names.values()), pairs


def study_design() -> pd.DataFrame:
    """The comparisons of one simulated study: for each regime ptN (N training tasks) its
    different-task pairs at the study's three seed pairings, and each model against itself across
    seeds, as the report's statistics read them (similarity to be drawn)."""
    rows = []
    for regime in ("pt1", "pt2", "pt3"):
        models, pairs = pair_graph(regime)
        n_tasks = int(regime.removeprefix("pt"))
        for (a, b), (s, t) in itertools.product([*pairs, *((m, m) for m in models)], PAIRINGS):
            rows.append(dict(measure="cka", regime=regime, layer=5, layer_b=5, model_a=a, model_b=b, seed_a=s,
                             seed_b=t, instance_a=f"{a}_seed{s}", instance_b=f"{b}_seed{t}", n_tasks_a=n_tasks,
                             n_tasks_b=n_tasks, n_shared_tasks=n_tasks if a == b else 0, final=True,
                             measure_kind="similarity", chance=0.0, null_mean=float("nan"), p_value=float("nan"),
                             run_dir=f"{a}_{b}/{s}_{t}"))
    return pd.DataFrame(rows)


def simulated_studies(design: pd.DataFrame, draws: int, means: dict[str, float], same_task_gain: float,
                      rng: np.random.Generator, model_sd: float = 0.02, instance_sd: float = 0.01,
                      noise_sd: float = 0.005) -> pd.DataFrame:
    """`draws` studies of the design, each a setting of its own (draw000, ...): similarity = the
    regime's mean (+ same_task_gain for a model against itself) + a random effect per model of
    each side + one per instance (a model at a seed) of each side + noise, all drawn anew per
    study."""
    models = np.unique(design[["model_a", "model_b"]].to_numpy())
    a, b = (np.searchsorted(models, design[c].to_numpy(str)) for c in ("model_a", "model_b"))
    seeds = {"orig": 0, "1": 1, "2": 2}
    s, t = (design[c].map(seeds).to_numpy() for c in ("seed_a", "seed_b"))
    base = design["regime"].map(means).to_numpy() + same_task_gain * (a == b)
    model = rng.normal(0, model_sd, (draws, len(models)))
    instance = rng.normal(0, instance_sd, (draws, len(models), 3))
    values = (base + model[:, a] + model[:, b] + instance[:, a, s] + instance[:, b, t]
              + rng.normal(0, noise_sd, (draws, len(design))))
    studies = pd.concat([design] * draws, ignore_index=True)
    studies["setting"] = np.repeat([f"draw{d:03d}" for d in range(draws)], len(design))
    studies["similarity"] = values.ravel()
    studies["run_dir"] = studies["setting"] + "/" + studies["run_dir"]
    return studies


DRAWS = 300
BASE = {"pt1": 0.75, "pt2": 0.80, "pt3": 0.85}  # a slope of 0.05 per training task


def simulated(null: bool) -> pd.DataFrame:
    """DRAWS studies, each a setting of its own, so the report's statistics take them in one call:
    with null, no difference between regimes or kinds; else BASE and a same-task gain of 0.03."""
    rng = np.random.default_rng(2026 if null else 2027)
    studies = simulated_studies(study_design(), DRAWS, dict.fromkeys(BASE, 0.8) if null else BASE,
                                0.0 if null else 0.03, rng)
    final, _ = stats.comparisons_that_count(stats.final_values(studies))
    return final


def rate(hits: pd.Series, expected: float) -> tuple[float, float]:
    """The rate of hits, and how many binomial standard errors it is above expected."""
    observed = float(hits.mean())
    return observed, (observed - expected) / np.sqrt(expected * (1 - expected) / len(hits))


# the paired same-task vs different-task difference is conservative (its false-positive rate below
# 5%): its rates are checked on the safe side only
CONSERVATIVE = {"kinds"}


@pytest.fixture(scope="module")
def claims() -> dict[str, dict[str, pd.DataFrame]]:
    """The report's statistics of the simulated studies, with and without effects."""
    out = {}
    for name, null in (("null", True), ("effect", False)):
        final = simulated(null)
        different = final[final["kind"] == stats.DIFFERENT_TASK]
        # each table of the comparisons it reads (the others would only cost time)
        out[name] = dict(trend=stats.trends(different),
                         regimes=stats.compare_regimes(different[different["regime"] != "pt1"], interval=True),
                         kinds=stats.compare_kinds(final[final["regime"] == "pt2"], interval=True),
                         # the groups' coverage is read of the studies with effects only
                         groups=None if null else stats.group_summary(different))
    return out


TRUE = {"trend": 0.05, "regimes": -0.05, "kinds": 0.03}  # pt2 vs pt3; same-task minus different-task
ESTIMATE = {"trend": "slope", "regimes": "difference", "kinds": "difference"}
SEED_PAIRING_CI = {"trend": ("ci_low", "ci_high"), "regimes": ("difference_ci_low", "difference_ci_high"),
                   "kinds": ("difference_ci_low", "difference_ci_high")}


def of_interest(table: pd.DataFrame, claim: str) -> pd.DataFrame:
    if claim == "regimes":
        return table[(table["regime_a"] == "pt2") & (table["regime_b"] == "pt3")]
    if claim == "kinds":
        return table[table["regime"] == "pt2"]
    return table


@pytest.mark.parametrize("claim", ["trend", "regimes", "kinds"])
def test_over_models_and_seeds_the_tests_false_positive_rate_is_5_percent(claims, claim):
    table = of_interest(claims["null"][claim], claim)
    assert len(table) == DRAWS
    new, errors = rate(table["ms_p"] < 0.05, 0.05)
    old, _ = rate(table["p"] < 0.05, 0.05)
    print(f"{claim}: false-positive rate at 5%, {DRAWS} studies with no effect: over models and seeds "
          f"{new:.3f}, over seed pairings {old:.3f}")
    assert errors <= 3 and (claim in CONSERVATIVE or errors >= -3), (new, old)


@pytest.mark.parametrize("claim", ["trend", "regimes", "kinds"])
def test_over_models_and_seeds_the_95_percent_interval_covers_the_true_effect(claims, claim):
    table = of_interest(claims["effect"][claim], claim)
    assert len(table) == DRAWS
    truth = TRUE[claim]
    estimates = table[ESTIMATE[claim]]
    assert abs(estimates.mean() - truth) <= 4 * estimates.std() / np.sqrt(DRAWS)  # unbiased
    new, errors = rate((table["ms_ci_low"] <= truth) & (truth <= table["ms_ci_high"]), 0.95)
    low, high = SEED_PAIRING_CI[claim]
    old, _ = rate((table[low] <= truth) & (truth <= table[high]), 0.95)
    print(f"{claim}: coverage of the 95% interval, {DRAWS} studies: over models and seeds {new:.3f}, "
          f"over seed pairings {old:.3f}")
    assert errors >= -3 and (claim in CONSERVATIVE or errors <= 3), (new, old)


def test_a_group_means_interval_over_models_covers_the_regimes_mean(claims):
    groups = claims["effect"]["groups"]
    different = groups[groups["kind"] == stats.DIFFERENT_TASK]
    truth = different["regime"].map(BASE)
    for regime in BASE:
        of = different["regime"] == regime
        new, errors = rate((different.loc[of, "ms_ci_low"] <= truth[of])
                           & (truth[of] <= different.loc[of, "ms_ci_high"]), 0.95)
        old, _ = rate((different.loc[of, "ci_low"] <= truth[of]) & (truth[of] <= different.loc[of, "ci_high"]), 0.95)
        print(f"{regime} different-task mean: coverage over models and seeds {new:.3f}, over seed pairings {old:.3f}")
        assert abs(errors) <= 3, (regime, new, old)


def test_the_seed_pairing_scheme_ignores_the_models_and_is_overconfident(claims):
    """Why the page recommends the new scheme: with models that differ, the seed-pairing test
    rejects a true null far more often than 5%."""
    table = of_interest(claims["null"]["regimes"], "regimes")
    old, errors = rate(table["p"] < 0.05, 0.05)
    assert errors > 3, old
