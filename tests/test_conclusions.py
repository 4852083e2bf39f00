"""The study's conclusions side by side under each measure, and the measures' agreement, on a
hand-made table of two settings whose numbers are computed here by hand (scipy on the units)."""

import numpy as np
import pandas as pd
import pytest
from conftest import final_rows
from scipy import stats

from cka_hydra.stats import (
    CONCLUSIONS, compare_kinds, compare_regimes, comparisons_that_count, conclusions, final_values, measure_agreement,
)

PAIRINGS = ("orig_1", "orig_2", "1_2")
# different-task similarity per regime and seed pairing at layer 5: CKA rises with the number of
# training tasks, the Procrustes similarity falls
DIFFERENT = {
    "default": {"pt1": (0.30, 0.35, 0.32), "pt2": (0.40, 0.38, 0.45), "pt3": (0.55, 0.50, 0.52)},
    "shape": {"pt1": (0.80, 0.85, 0.83), "pt2": (0.74, 0.78, 0.70), "pt3": (0.66, 0.60, 0.62)},
}
SAME = {"default": (0.85, 0.90, 0.80), "shape": (0.95, 0.90, 0.93)}  # pt2's same-task, per seed pairing
MEASURES = {"default": "cka", "shape": "procrustes", "rbf": "cka"}


def shared_groups(setting):
    """The groups both settings have: pt1-pt3 different-task and pt2 same-task at layer 5, two
    comparisons per seed pairing (the pairing's mean: its value + 0.005)."""
    return [*((setting, regime, 5, 5, "different", pairing, 2, value)
              for regime, values in DIFFERENT[setting].items() for pairing, value in zip(PAIRINGS, values)),
            *((setting, "pt2", 5, 5, "same", pairing, 2, value) for pairing, value in zip(PAIRINGS, SAME[setting]))]


# only default has these: a pairing at pt1 alone (no trend point but pt1's has it) and layer 3 at pt1
DEFAULT_ONLY = [("default", "pt1", 5, 5, "different", "2_orig", 2, 0.2),
                *(("default", "pt1", 3, 3, "different", pairing, 2, 0.1) for pairing in PAIRINGS)]


def study(*extra):
    groups = [*shared_groups("default"), *shared_groups("shape"), *DEFAULT_ONLY, *extra]
    counted, left_out = comparisons_that_count(final_values(pd.DataFrame(final_rows(*groups, measures=MEASURES))))
    assert left_out.empty
    return counted


def unit(value):
    return value + 0.005  # the mean of value and value + 0.01


def test_the_trend_is_the_slope_of_the_seed_pairing_means_on_the_number_of_tasks():
    table = conclusions(study())
    assert list(table.columns) == CONCLUSIONS
    trends = table[table["claim"] == "trend over training tasks"].set_index("setting")
    assert trends.index.tolist() == ["default", "shape"]  # layer 5 alone: layer 3 has pt1 alone
    for setting in ("default", "shape"):
        row = trends.loc[setting]
        # over the seed pairings every point has: not 2_orig, which pt1 alone has
        x = [n for n in (1, 2, 3) for _ in PAIRINGS]
        y = [unit(v) for regime in ("pt1", "pt2", "pt3") for v in DIFFERENT[setting][regime]]
        fit = stats.linregress(x, y)
        half = stats.t.ppf(0.975, 9 - 2) * fit.stderr
        assert (row["layer"], row["layer_b"], row["measure"]) == (5, 5, MEASURES[setting])
        assert row["estimate"] == pytest.approx(fit.slope, abs=1e-12)
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((fit.slope - half, fit.slope + half), abs=1e-12)
        assert row["p"] == pytest.approx(fit.pvalue, rel=1e-9)
        assert row["effect_size"] == pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-12)
        assert (row["effect_size_kind"], row["estimate_kind"]) == ("r", "slope per training task")
        assert (row["n_units"], row["seed_pairings"]) == (9, "1_2 orig_1 orig_2")
        assert row["what"] == "1, 2, 3 training tasks (pt1, pt2, pt3)"
    assert trends.loc["default", "estimate"] > 0 and trends.loc["shape", "estimate"] < 0
    assert trends["direction"].tolist() == ["rises", "falls"]
    assert trends["directions_agree"].tolist() == ["no", "no"]


def test_two_means_give_a_slope_and_a_direction_but_no_interval_p_or_r():
    one_pairing = [g for g in (*shared_groups("default"), *shared_groups("shape"))
                   if g[5] == "orig_1" and g[1] in ("pt1", "pt3") and g[4] == "different"]
    final = final_values(pd.DataFrame(final_rows(*one_pairing, measures=MEASURES)))
    trends = conclusions(final).query("claim == 'trend over training tasks'").set_index("setting")
    assert trends.loc["default", "estimate"] == pytest.approx((unit(0.55) - unit(0.30)) / 2, abs=1e-12)
    assert trends[["ci_low", "ci_high", "p", "effect_size"]].isna().all().all()
    assert trends["n_units"].tolist() == [2, 2] and trends["what"].tolist() == ["1, 3 training tasks (pt1, pt3)"] * 2


def test_the_other_claims_are_the_rows_of_their_tables():
    final = study()
    table = conclusions(final)

    kinds = compare_kinds(final)
    rows = table[table["claim"] == "same-task vs different-task"]
    assert len(rows) == len(kinds) == 2
    for (_, row), (_, expected) in zip(rows.iterrows(), kinds.iterrows()):
        assert (row["setting"], row["measure"], row["layer"], row["layer_b"]) == tuple(
            expected[["setting", "measure", "layer", "layer_b"]])
        assert row["what"] == "pt2: same-task cross-seed vs different-task"
        assert (row["estimate"], row["effect_size"], row["p"], row["n_units"], row["seed_pairings"]) == (
            expected["difference"], expected["effect_size_dz"], expected["p"], expected["n_units"],
            expected["seed_pairings"])
        same = [unit(v) for v in SAME[row["setting"]]]
        different = [unit(v) for v in DIFFERENT[row["setting"]]["pt2"]]
        interval = stats.ttest_rel(same, different).confidence_interval(0.95)
        assert (row["ci_low"], row["ci_high"]) == pytest.approx(tuple(interval), abs=1e-12)
        assert (row["effect_size_kind"], row["direction"], row["directions_agree"]) == ("d_z", "higher", "yes")

    regimes = compare_regimes(final)
    rows = table[table["claim"] == "regime vs regime"]
    assert len(rows) == len(regimes) == 6  # three pairs of regimes in each setting
    merged = rows.merge(regimes.assign(what=regimes["regime_a"] + " vs " + regimes["regime_b"]),
                        on=["setting", "measure", "layer", "layer_b", "what"])
    assert len(merged) == 6
    assert (merged["estimate"] == merged["difference"]).all() and (merged["p_x"] == merged["p_y"]).all()
    assert (merged["effect_size"] == merged["hedges_g"]).all()
    assert (merged["n_units"] == merged["n_units_a"] + merged["n_units_b"]).all()
    assert (merged["seed_pairings_x"] == merged["seed_pairings_y"]).all()
    row = rows[(rows["setting"] == "shape") & (rows["what"] == "pt1 vs pt3")].iloc[0]
    a, b = ([unit(v) for v in DIFFERENT["shape"][regime]] for regime in ("pt1", "pt3"))
    interval = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(tuple(interval), abs=1e-12)
    assert row["estimate"] == pytest.approx(np.mean(a) - np.mean(b), abs=1e-12)
    # CKA is higher at more tasks, Procrustes lower: the pairs disagree, and the rows of one
    # comparison stand together, setting by setting
    assert rows["what"].tolist() == ["pt1 vs pt2", "pt1 vs pt2", "pt1 vs pt3", "pt1 vs pt3", "pt2 vs pt3",
                                     "pt2 vs pt3"]
    assert rows["setting"].tolist() == ["default", "shape"] * 3
    assert rows["direction"].tolist() == ["lower", "higher"] * 3 and set(rows["directions_agree"]) == {"no"}
    assert table["claim"].drop_duplicates().tolist() == [
        "trend over training tasks", "same-task vs different-task", "regime vs regime"]


def test_agreement_is_kendalls_tau_over_the_comparisons_every_setting_has():
    agreement = measure_agreement(study())
    assert agreement[["setting_a", "measure_a", "setting_b", "measure_b"]].values.tolist() == [
        ["default", "cka", "shape", "procrustes"]]
    # matched by hand: the groups both settings have, in one order (DEFAULT_ONLY's left out)
    default, shape = ([row["similarity"] for row in final_rows(*shared_groups(setting))]
                      for setting in ("default", "shape"))
    expected = stats.kendalltau(default, shape)
    row = agreement.iloc[0]
    assert row["n"] == len(default) == 24
    assert row["tau"] == pytest.approx(expected.statistic, abs=1e-12)
    assert row["p"] == pytest.approx(expected.pvalue, rel=1e-9)
    assert row["note"] == ""


def test_agreement_needs_three_comparisons_every_setting_has():
    """A third setting with two comparisons: every pair is then over those two, and says so."""
    agreement = measure_agreement(study(("rbf", "pt3", 5, 5, "different", "orig_1", 2, 0.5)))
    assert len(agreement) == 3 and (agreement["n"] == 2).all()
    assert agreement[["tau", "p"]].isna().all().all()
    assert set(agreement["note"]) == {"fewer than 3 comparisons that every setting has (2): no tau"}
