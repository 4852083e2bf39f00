"""Statistics of a sweep's final values, with seeds as the unit of variation.

Every measure is read as a similarity, higher meaning more alike (the `similarity` column of
the results: CKA, or 1 - Procrustes disparity), and each setting (so each measure) on its own.
Each group states its chance level (the mean of its values' chance levels, as similarities).

Comparisons are not independent: every instance (a model at a seed) takes part in many
of them. So values are first averaged within each seed pairing (e.g. all orig-vs-seed1
comparisons of a regime and layer), and the seed pairings are the units: n is their
number, not the number of comparisons. Which comparisons count at all, in every table and
figure of the report, is decided once, by comparisons_that_count: the tables here take its
rows. Pure functions of the results table.
"""

import numpy as np
import pandas as pd
from scipy import stats

from cka_hydra import inference

# kinds of comparison
DIFFERENT_TASK = "different-task"  # two models that share no training task
SAME_TASK = "same-task cross-seed"  # one model at two seeds
SHARED_TASK = "shared-task"  # two models sharing some task (allow_overlap runs)
SAME_INSTANCE = "same instance"  # one instance with itself: similarity 1 by definition, left out
LAYERS_OF_ONE_INSTANCE = "one instance, two layers"  # a model at one seed, layer against layer_b
# the keys of a group of comparisons: every table is per setting, regime and layer pair
KEYS = ["setting", "measure", "regime", "layer", "layer_b"]


CHANCE_COLUMNS = ("measure_kind", "chance", "null_mean", "p_value")


def final_values(results: pd.DataFrame) -> pd.DataFrame:
    """One row per comparison, at its last step, with its kind and seed pairing."""
    # a table from before chance levels (an older cka_results.csv): none known
    final = results[results["final"]].reindex(columns=[*results, *(c for c in CHANCE_COLUMNS if c not in results)])
    same_model = final["model_a"] == final["model_b"]
    same_seed = final["seed_a"] == final["seed_b"]
    same_layer = final["layer"] == final["layer_b"]
    final["kind"] = np.select(
        [same_model & same_seed & same_layer, same_model & same_seed, same_model, final["n_shared_tasks"] > 0],
        [SAME_INSTANCE, LAYERS_OF_ONE_INSTANCE, SAME_TASK, SHARED_TASK], DIFFERENT_TASK,
    )
    final["seed_pairing"] = final["seed_a"] + "_" + final["seed_b"]
    if "chance_similarity" not in final:  # a table from before it was a column (all distances then were 1 - d)
        level = final["chance"].fillna(final["null_mean"])
        final["chance_similarity"] = level.where(final["measure_kind"] != "distance", 1 - level)
    return final[final["kind"] != SAME_INSTANCE]


# the level below which a value counts as above chance, after the correction for many values
ALPHA = 0.05


def not_above_chance(values: pd.DataFrame) -> pd.Series:
    """Whether each value is not above chance at the ALPHA level, its permutation test's p-value
    adjusted by Benjamini-Hochberg over the values given (a figure's cells); False where a value
    has no permutation test (null.permutations=0)."""
    tested = values["p_value"].notna()
    flags = pd.Series(False, index=values.index)
    if tested.any():
        flags[tested] = stats.false_discovery_control(values.loc[tested, "p_value"], method="bh") > ALPHA
    return flags


# why comparisons are left out of every table and figure of the report (comparisons_that_count)
INCOMPLETE = "incomplete seed pairing"


def comparisons_that_count(final: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The report's like-for-like rule, in this one place: of final_values' rows, those that count
    in every table and figure, and those left out (with `why`).

    Values are averaged within each seed pairing and the pairings are the units, so a pairing with
    a few comparisons would weigh as much as a sweep's: a seed pairing is incomplete, and all its
    comparisons are left out, when it has fewer than half as many comparisons as
    - the fullest pairing of its group (setting, regime, layer pair and kind: a one-off run beside a
      sweep, at a pairing the sweep did not run); or
    - all kinds together, the fullest pairing of the fullest group of its regime and layer pair
      (the comparisons one matrix draws, whose cells are compared with each other: a one-off of
      another kind, at a pairing no other comparison there has).
    Every other pairing counts, in full: a sweep with more pairings (seed_policy=cross, all,
    matrix) is reported over all of them. Which pairings of those that count two groups share
    is for whatever compares them (on_common_pairings). Applying the rule again to its own
    result leaves it as it is."""
    group = [*KEYS, "kind"]
    counts = final.groupby([*group, "seed_pairing"], as_index=False, dropna=False).size()
    counts = counts[2 * counts["size"] >= counts.groupby(group, dropna=False)["size"].transform("max")]
    held = counts.groupby([*KEYS, "seed_pairing"], dropna=False)["size"].transform("sum")
    counts = counts[2 * held >= counts.groupby(KEYS, dropna=False)["size"].transform("max")]
    columns = [*group, "seed_pairing"]
    counted = pd.MultiIndex.from_frame(final[columns]).isin(pd.MultiIndex.from_frame(counts[columns]))
    return final[counted], final[~counted].assign(why=INCOMPLETE)


def unit_means(final: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Mean similarity per group and seed pairing: the independent units, of the comparisons
    that count (comparisons_that_count)."""
    return final.groupby([*by, "seed_pairing"], as_index=False)["similarity"].mean()[[*by, "seed_pairing",
                                                                                      "similarity"]]


def left_out_pairings(left_out: pd.DataFrame) -> pd.DataFrame:
    """What comparisons_that_count left out, one row per setting, regime, layer pair, kind and seed
    pairing: its number of comparisons, why, their run folders, and a line saying so
    ("2_1 (1 different-task comparison of pt3 at layer 5 [default])")."""
    columns = [*KEYS, "kind", "seed_pairing"]
    if left_out.empty:
        return pd.DataFrame(columns=[*columns, "comparisons", "why", "runs", "text"])
    rows = left_out.groupby(columns, as_index=False).agg(comparisons=("similarity", "size"), why=("why", "first"),
                                                         runs=("run_dir", lambda r: sorted(map(str, r))))

    def text(row: pd.Series) -> str:
        layers = f"layer {row['layer']}" + (f" against layer {row['layer_b']}" if row["layer_b"] != row["layer"]
                                            else "")
        return (f"{row['seed_pairing']} ({row['comparisons']} {row['kind']} comparison"
                f"{'' if row['comparisons'] == 1 else 's'} of {row['regime']} at {layers} [{row['setting']}])")

    return rows.assign(text=rows.apply(text, axis=1))


def on_common_pairings(units: pd.DataFrame, by: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """Like for like: the units (unit_means) of the seed pairings that every group by `by` has,
    and those pairings, sorted. A group measured over more pairings than another would otherwise
    differ by which seeds it averages, not by what it is."""
    sets = [set(group["seed_pairing"]) for _, group in units.groupby(by)]
    common = sorted(set.intersection(*sets)) if sets else []
    return units[units["seed_pairing"].isin(common)], common


def pairings_text(pairings: list[str]) -> str:
    return " ".join(pairings)


def mean_ci(values: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and t-based confidence interval over units (NaN bounds with fewer than 2)."""
    mean = float(np.mean(values))
    if len(values) < 2:
        return mean, float("nan"), float("nan")
    half = stats.t.ppf((1 + level) / 2, len(values) - 1) * np.std(values, ddof=1) / np.sqrt(len(values))
    return mean, mean - half, mean + half


def group_summary(final: pd.DataFrame, left_out: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per setting, regime, layer pair and kind: comparisons, units and which seed pairings they
    are, mean, std, chance, the mean calibrated value (results.py: where a null mean is known),
    95% CI over units, all of the comparisons that count (final:
    comparisons_that_count's, left_out: what it left out, named per group in
    incomplete_pairings; without left_out, final is every comparison and is selected here by
    that rule). Each group over all of its own pairings: tests and figures that compare groups
    restrict them to the pairings they share."""
    if left_out is None:
        final, left_out = comparisons_that_count(final)
    keys = [*KEYS, "kind"]
    units = dict(iter(unit_means(final, keys).groupby(keys)))
    left_out = {} if left_out.empty else left_out.groupby(keys)["seed_pairing"].agg(
        lambda p: pairings_text(sorted(set(p)))).to_dict()
    rows = []
    for key, group in final.groupby(keys):
        unit_values = units[key]["similarity"].to_numpy()
        mean, low, high = mean_ci(unit_values)
        over_models = inference.linear_estimate([inference.Part(group, 1.0)])
        rows.append(dict(zip(keys, key), n_comparisons=len(group), n_units=len(unit_values),
                         seed_pairings=pairings_text(sorted(units[key]["seed_pairing"])),
                         incomplete_pairings=left_out.get(key, ""), mean=mean,
                         std=float(group["similarity"].std(ddof=1)) if len(group) > 1 else float("nan"),
                         ci_low=low, ci_high=high, ms_ci_low=over_models.ci_low, ms_ci_high=over_models.ci_high,
                         n_models=over_models.n_models, chance=float(group["chance_similarity"].mean()),
                         # above chance, as a share of the room above it: comparable across measures
                         calibrated=float(group["calibrated"].mean()) if "calibrated" in group else float("nan"),
                         n_not_above_chance=int(not_above_chance(group).sum()),
                         n_tested=int(group["p_value"].notna().sum())))
    return pd.DataFrame(rows)


def hedges_g(a: np.ndarray, b: np.ndarray) -> float:
    """Standardised mean difference (a - b) with the small-sample correction."""
    n_a, n_b = len(a), len(b)
    pooled = np.sqrt(((n_a - 1) * np.var(a, ddof=1) + (n_b - 1) * np.var(b, ddof=1)) / (n_a + n_b - 2))
    return float((np.mean(a) - np.mean(b)) / pooled * (1 - 3 / (4 * (n_a + n_b) - 9)))


def compare_kinds(final: pd.DataFrame, interval: bool = False) -> pd.DataFrame:
    """Same-task cross-seed against different-task similarity (the research group's "intra-task vs
    inter-task"), per setting, regime and layer pair.

    Paired over seed pairings (both kinds' means come from the same seeds): paired t-test
    on the per-pairing differences, effect size d_z = mean difference / its std. Of the
    comparisons that count (comparisons_that_count). With interval, also the difference's 95%
    interval (difference_ci_low, difference_ci_high): the paired t-test's, over the differences.
    """
    units = unit_means(final[final["kind"].isin([SAME_TASK, DIFFERENT_TASK])], [*KEYS, "kind"])
    wide = units.pivot_table(index=[*KEYS, "seed_pairing"], columns="kind", values="similarity").dropna()
    chances = final.groupby([*KEYS, "kind"])["chance_similarity"].mean()
    rows = []
    if SAME_TASK not in wide or DIFFERENT_TASK not in wide:
        return pd.DataFrame(rows)
    comparisons = dict(iter(final.groupby([*KEYS, "kind"])))
    for key, group in wide.groupby(level=KEYS):  # the pairings both kinds have: a paired test
        diff = (group[SAME_TASK] - group[DIFFERENT_TASK]).to_numpy()
        pairings = group.index.get_level_values("seed_pairing")
        same, different = (comparisons[(*key, kind)] for kind in (SAME_TASK, DIFFERENT_TASK))
        same, different = (c[c["seed_pairing"].isin(pairings)] for c in (same, different))
        # paired model by model: each model's same-task comparisons weigh as its different-task ones
        over_models = inference.linear_estimate([inference.Part(same, 1.0, partners=different),
                                                 inference.Part(different, -1.0)])
        test = stats.ttest_rel(group[SAME_TASK], group[DIFFERENT_TASK]) if len(diff) > 1 else None
        (_, same_low, same_high), (_, diff_low, diff_high) = (mean_ci(group[kind].to_numpy())
                                                               for kind in (SAME_TASK, DIFFERENT_TASK))
        _, low, high = mean_ci(diff)
        rows.append(dict(zip(KEYS, key), n_units=len(diff),
                         seed_pairings=pairings_text(sorted(group.index.get_level_values("seed_pairing"))),
                         same_task=float(group[SAME_TASK].mean()), same_task_ci_low=same_low,
                         same_task_ci_high=same_high, same_task_chance=float(chances[(*key, SAME_TASK)]),
                         different_task=float(group[DIFFERENT_TASK].mean()),
                         different_task_ci_low=diff_low, different_task_ci_high=diff_high,
                         different_task_chance=float(chances[(*key, DIFFERENT_TASK)]),
                         difference=float(diff.mean()),
                         effect_size_dz=float(diff.mean() / np.std(diff, ddof=1)) if len(diff) > 1 else float("nan"),
                         t=float(test.statistic) if test else float("nan"),
                         p=float(test.pvalue) if test else float("nan"),
                         **(dict(difference_ci_low=low, difference_ci_high=high) if interval else {}),
                         **over_models.columns()))
    return pd.DataFrame(rows)


def compare_regimes(final: pd.DataFrame, interval: bool = False) -> pd.DataFrame:
    """Different-task similarity between each two regimes, per setting and layer pair, over the
    seed pairings both regimes have (like for like; `left_out` names the others): Welch's
    t-test on the seed-pairing means (different regimes are different training runs: unpaired),
    effect size Hedges' g. Of the comparisons that count (comparisons_that_count). With interval,
    also the difference's 95% interval (difference_ci_low, difference_ci_high): Welch's test's."""
    keys = [key for key in KEYS if key != "regime"]
    different = final[final["kind"] == DIFFERENT_TASK]
    units = unit_means(different, [*keys, "regime"])
    comparisons = dict(iter(different.groupby([*keys, "regime"])))
    chances = final[final["kind"] == DIFFERENT_TASK].groupby([*keys, "regime"])["chance_similarity"].mean()
    rows = []
    for key, group in units.groupby(keys):
        names = sorted(group["regime"].unique())
        for i, first in enumerate(names):
            for second in names[i + 1:]:
                pair = group[group["regime"].isin([first, second])]
                shared, common = on_common_pairings(pair, ["regime"])
                others = sorted(set(pair["seed_pairing"]) - set(common))
                a, b = (shared.loc[shared["regime"] == r, "similarity"].to_numpy() for r in (first, second))
                of_a, of_b = (comparisons[(*key, r)] for r in (first, second))
                over_models = inference.linear_estimate([inference.Part(of_a[of_a["seed_pairing"].isin(common)], 1.0),
                                                         inference.Part(of_b[of_b["seed_pairing"].isin(common)], -1.0)])
                testable = len(a) > 1 and len(b) > 1
                test = stats.ttest_ind(a, b, equal_var=False) if testable else None
                low, high = test.confidence_interval(0.95) if test else (float("nan"), float("nan"))
                rows.append(dict(zip(keys, key), regime_a=first, regime_b=second, n_units_a=len(a),
                                 n_units_b=len(b), seed_pairings=pairings_text(common),
                                 left_out=pairings_text(others), mean_a=float(a.mean()) if len(a) else float("nan"),
                                 mean_b=float(b.mean()) if len(b) else float("nan"),
                                 chance_a=float(chances[(*key, first)]), chance_b=float(chances[(*key, second)]),
                                 difference=float(a.mean() - b.mean()) if len(a) and len(b) else float("nan"),
                                 hedges_g=hedges_g(a, b) if testable else float("nan"),
                                 t=float(test.statistic) if test else float("nan"),
                                 p=float(test.pvalue) if test else float("nan"),
                                 **(dict(difference_ci_low=float(low), difference_ci_high=float(high))
                                    if interval else {}), **over_models.columns()))
    return pd.DataFrame(rows)


def trend_comparisons(final: pd.DataFrame) -> pd.DataFrame:
    """The comparisons the trend over training tasks reads: different-task comparisons of two models
    trained on equally many tasks (n_tasks_a == n_tasks_b), each of a layer with itself."""
    return final[(final["kind"] == DIFFERENT_TASK) & (final["n_tasks_a"] == final["n_tasks_b"])
                 & (final["layer"] == final["layer_b"])]


def trend_units(different: pd.DataFrame) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Of one setting's trend_comparisons: the mean similarity per layer, number of training tasks
    (n_tasks) and seed pairing, over the seed pairings every (layer, n_tasks) point has (like for
    like: the same seeds at every point); those pairings; and the pairings left out, held by only
    some points."""
    every = unit_means(different.rename(columns={"n_tasks_a": "n_tasks"}), ["layer", "n_tasks"])
    units, common = on_common_pairings(every, ["layer", "n_tasks"])
    return units, common, sorted(set(every["seed_pairing"]) - set(common))


def trends(final: pd.DataFrame) -> pd.DataFrame:
    """Different-task similarity against the number of training tasks, per setting and layer (what
    figures.trends_figure draws), of the comparisons that count (comparisons_that_count): the OLS
    slope of the seed-pairing means (trend_units) on the number of training tasks, its 95% t
    interval (n - 2 degrees of freedom) and two-sided p (scipy.stats.linregress), and as effect size
    Pearson's r between the number of training tasks and the means; n_units: the means (seed
    pairings x numbers of tasks), `regimes` those of each number of tasks. A layer needs two or more
    numbers of training tasks; with two means, a line fits them exactly: no interval, p or r."""
    rows = []
    for (setting, measure), different in trend_comparisons(final).groupby(["setting", "measure"]):
        units, common, _ = trend_units(different)
        for layer, points in units.groupby("layer"):
            if points["n_tasks"].nunique() < 2:
                continue
            fit = stats.linregress(points["n_tasks"], points["similarity"])
            n = len(points)
            over_models = trend_over_models(different[(different["layer"] == layer)
                                                      & different["seed_pairing"].isin(common)])
            half = stats.t.ppf(0.975, n - 2) * fit.stderr if n > 2 else float("nan")
            regimes = different[different["layer"] == layer].groupby("n_tasks_a")["regime"].agg(
                lambda r: ", ".join(sorted(set(r))))
            rows.append(dict(setting=setting, measure=measure, layer=layer, layer_b=layer,
                             n_tasks=", ".join(map(str, sorted(points["n_tasks"].unique()))),
                             regimes=", ".join(regimes[sorted(points["n_tasks"].unique())]), n_units=n,
                             seed_pairings=pairings_text(common), slope=float(fit.slope),
                             ci_low=float(fit.slope - half), ci_high=float(fit.slope + half),
                             p=float(fit.pvalue) if n > 2 else float("nan"),
                             r=float(fit.rvalue) if n > 2 else float("nan"), **over_models.columns()))
    return pd.DataFrame(rows)


def trend_over_models(rows: pd.DataFrame) -> inference.Estimate:
    """The slope of mean similarity on the number of training tasks, of one setting's and layer's
    trend comparisons (at the seed pairings every point has), over models and seeds: the least-
    squares slope through each number of tasks' mean, as a linear combination of the regimes' means
    (a number of tasks shared by regimes pools them, each by its share of the rows)."""
    tasks = np.array(sorted(rows["n_tasks_a"].unique()), dtype=float)
    slope = dict(zip(tasks, inference.slope_coefficients(tasks)))
    sizes = rows.groupby("n_tasks_a").size()
    return inference.linear_estimate([inference.Part(group, slope[float(n)] * len(group) / sizes[n])
                                      for (n, _), group in rows.groupby(["n_tasks_a", "regime"])])


# the study's claims, in the order the conclusions list them
TREND, KINDS, REGIMES = "trend over training tasks", "same-task vs different-task", "regime vs regime"
CLAIMS = (TREND, KINDS, REGIMES)
# a claim's direction for a positive, negative and zero estimate
DIRECTIONS = {TREND: ("rises", "falls", "flat"), KINDS: ("higher", "lower", "equal"),
              REGIMES: ("higher", "lower", "equal")}
CONCLUSIONS = ["claim", "setting", "measure", "layer", "layer_b", "what", "direction", "directions_agree",
               "estimate_kind", "estimate", "ci_low", "ci_high", "p", "effect_size_kind", "effect_size", "n_units",
               "seed_pairings", "ms_ci_low", "ms_ci_high", "ms_p", "n_models"]


def conclusions(final: pd.DataFrame) -> pd.DataFrame:
    """The study's three claims side by side under each setting (so each measure), one tidy table of
    the comparisons that count (comparisons_that_count), a row per claim, setting, layer pair and
    `what` is compared, each number as the claim's own table computes it:
    - trend over training tasks (trends): estimate the slope per training task, its interval and
      p, effect size r (Pearson's, n_tasks against the seed-pairing means); direction rises, falls
      or flat by the slope's sign;
    - same-task vs different-task, per regime (compare_kinds): estimate the mean paired difference
      (same-task minus different-task), the paired t-test's interval and p, effect size d_z;
    - regime vs regime (compare_regimes): estimate the difference of the means (first regime named
      minus second), Welch's interval and p, effect size Hedges' g; n_units both regimes' together.
    For the last two, direction says whether the first named is higher, lower or equal. NaN where
    the claim's table has none (a single seed pairing). directions_agree: whether every setting
    with a direction for the same claim, layer pair and `what` has the same one ("yes", "no"; NaN
    with fewer than two). Sorted by claim, layer, layer_b, what, then setting, so that the
    settings' rows of one conclusion stand together."""
    return conclusions_of(trends(final), compare_kinds(final, interval=True), compare_regimes(final, interval=True))


def conclusions_of(trend: pd.DataFrame, kinds: pd.DataFrame, regimes: pd.DataFrame) -> pd.DataFrame:
    """conclusions, of the claims' tables already computed (trends, and compare_kinds and
    compare_regimes with interval=True), as the report has them."""
    parts = []
    if len(trend):
        parts.append(trend.assign(claim=TREND, what=trend["n_tasks"] + " training tasks (" + trend["regimes"] + ")",
                                  estimate_kind="slope per training task", estimate=trend["slope"],
                                  effect_size_kind="r", effect_size=trend["r"]))
    if len(kinds):
        parts.append(kinds.assign(claim=KINDS, what=kinds["regime"] + f": {SAME_TASK} vs {DIFFERENT_TASK}",
                                  estimate_kind="difference", estimate=kinds["difference"],
                                  ci_low=kinds["difference_ci_low"], ci_high=kinds["difference_ci_high"],
                                  effect_size_kind="d_z", effect_size=kinds["effect_size_dz"]))
    if len(regimes):
        parts.append(regimes.assign(claim=REGIMES, what=regimes["regime_a"] + " vs " + regimes["regime_b"],
                                    estimate_kind="difference", estimate=regimes["difference"],
                                    ci_low=regimes["difference_ci_low"], ci_high=regimes["difference_ci_high"],
                                    effect_size_kind="hedges_g", effect_size=regimes["hedges_g"],
                                    n_units=regimes["n_units_a"] + regimes["n_units_b"]))
    if not parts:
        return pd.DataFrame(columns=CONCLUSIONS)
    table = pd.concat(parts, ignore_index=True)
    table["direction"] = [None if pd.isna(v) else DIRECTIONS[claim][0 if v > 0 else 1 if v < 0 else 2]
                          for claim, v in zip(table["claim"], table["estimate"])]
    conclusion = ["claim", "layer", "layer_b", "what"]
    table["directions_agree"] = table.groupby(conclusion)["direction"].transform(
        lambda d: None if d.notna().sum() < 2 else "yes" if d.nunique() == 1 else "no")
    table["order"] = table["claim"].map(CLAIMS.index)
    return table.sort_values(["order", *conclusion[1:], "setting"])[CONCLUSIONS].reset_index(drop=True)


# a comparison whatever its setting: the rows of two settings that measured the same thing
IDENTITY = ["regime", "instance_a", "instance_b", "layer", "layer_b"]
AGREEMENT = ["setting_a", "measure_a", "setting_b", "measure_b", "n", "tau", "p", "note"]


def measure_agreement(final: pd.DataFrame) -> pd.DataFrame:
    """Whether the settings (so the measures) rank the comparisons alike, of the comparisons that
    count (comparisons_that_count): over the comparisons (IDENTITY) that every setting has, Kendall's
    tau-b (scipy.stats.kendalltau) of each two settings' similarities, its two-sided p, and n, the
    number of those comparisons, one row per pair of settings (the report writes it as
    measure_agreement.csv, beside conclusions.csv). With fewer than 3 such comparisons, no tau and
    p: `note` says so; likewise where a setting's values there are all equal."""
    names = final.drop_duplicates("setting").sort_values("setting").set_index("setting")["measure"]
    values = final.pivot(index=IDENTITY, columns="setting", values="similarity").dropna()
    rows = []
    for i, a in enumerate(names.index):
        for b in names.index[i + 1:]:
            tau, p = stats.kendalltau(values[a], values[b]) if len(values) >= 3 else (float("nan"), float("nan"))
            note = (f"fewer than 3 comparisons that every setting has ({len(values)}): no tau" if len(values) < 3
                    else "" if not np.isnan(tau) else "a setting's values are all equal there: no tau")
            rows.append(dict(setting_a=a, measure_a=names[a], setting_b=b, measure_b=names[b], n=len(values),
                             tau=float(tau), p=float(p), note=note))
    return pd.DataFrame(rows, columns=AGREEMENT)
