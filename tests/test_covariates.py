"""Similarity against covariates: the Mantel test against a slow reference and an exact
enumeration, and the pairs it is computed over."""

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cka_hydra.covariates import covariate_tests, mantel_test, pair_similarities, read_covariates

MODELS = [f"pt3-{i}" for i in range(1, 8)]


# --- the Mantel test ---

def slow_mantel(similarity, covariate, rows, columns, orders):
    """A Mantel test written out plainly: for each order of the labels, the permuted covariate
    matrix built cell by cell, read at the pairs present (those it lacks left out), and
    scipy.stats.spearmanr; the same rules for a statistic that cannot be computed (at least as
    extreme) and for ties (within 1e-12)."""
    def statistic(order):
        n = len(order)
        permuted = np.array([[covariate[order[i], order[j]] for j in range(n)] for i in range(n)])
        kept = [(s, permuted[i, j]) for s, i, j in zip(similarity, rows, columns) if not math.isnan(permuted[i, j])]
        xs, ys = zip(*kept) if kept else ((), ())
        if len(kept) < 3 or len(set(xs)) == 1 or len(set(ys)) == 1:
            return math.nan
        return stats.spearmanr(xs, ys).statistic

    observed = statistic(range(len(covariate)))
    extreme = sum(not abs(statistic(order)) < abs(observed) - 1e-12 for order in orders)
    return observed, (1 + extreme) / (1 + len(orders))


def model_level(values):
    """A covariate matrix |x_i - x_j| of models' values."""
    values = np.asarray(values, float)
    return np.abs(values[:, None] - values[None, :])


def every_pair(n):
    rows, columns = np.array(list(itertools.combinations(range(n), 2))).T
    return rows, columns


@pytest.mark.parametrize("holes", [False, True], ids=["every pair", "pairs missing"])
def test_the_mantel_test_equals_a_slow_loop_with_the_same_permutations(holes):
    rng = np.random.default_rng(5)
    n, permutations, seed = 7, 300, 11
    rows, columns = every_pair(n)
    covariate = np.round(model_level(rng.normal(size=n)), 1)  # ties too
    similarity = rng.random(len(rows)) - 0.05 * covariate[rows, columns]
    if holes:  # pairs never run (sharing a task), and pairs a file of pairs did not list
        ran = rng.random(len(rows)) > 0.3
        rows, columns, similarity = rows[ran], columns[ran], similarity[ran]
        covariate[0, 3] = covariate[3, 0] = covariate[2, 5] = covariate[5, 2] = np.nan
    orders = np.random.default_rng(seed).permuted(np.tile(np.arange(n), (permutations, 1)), axis=1)
    rho, p = mantel_test(similarity, covariate, rows, columns, permutations, seed)
    slow_rho, slow_p = slow_mantel(similarity, covariate, rows, columns, orders)
    assert rho == pytest.approx(slow_rho, abs=1e-12) and p == slow_p
    assert 0.01 < p < 1  # a test that distinguishes


def test_the_mantel_p_agrees_with_the_exact_p_of_every_permutation():
    """Five models: all 120 orders of the labels give the exact p; 4000 random ones agree within
    Monte-Carlo error (4 standard errors)."""
    rng = np.random.default_rng(2)
    rows, columns = every_pair(5)
    covariate = model_level(rng.normal(size=5))
    similarity = rng.random(len(rows)) - 0.05 * covariate[rows, columns]
    _, exact = slow_mantel(similarity, covariate, rows, columns, list(itertools.permutations(range(5))))
    exact = (exact * 121 - 1) / 120  # of the 120 orders, the identity among them: no +1
    _, p = mantel_test(similarity, covariate, rows, columns, 4000, 0)
    assert 0.05 < exact < 0.95
    assert abs(p - exact) < 4 * math.sqrt(exact * (1 - exact) / 4000)


def test_a_monotone_covariate_gives_rho_1_and_the_smallest_p():
    n, permutations = 10, 999  # 10! orders: the identity is drawn again with chance 999 / 3628800
    rows, columns = every_pair(n)
    similarity = np.random.default_rng(0).random(len(rows))
    covariate = np.full((n, n), np.nan)
    covariate[rows, columns] = covariate[columns, rows] = np.exp(3 * similarity)
    rho, p = mantel_test(similarity, covariate, rows, columns, permutations, 0)
    assert rho == pytest.approx(1, abs=1e-12) and p == 1 / (1 + permutations)
    rho, p = mantel_test(similarity, -covariate, rows, columns, permutations, 0)  # decreasing: two-sided
    assert rho == pytest.approx(-1, abs=1e-12) and p == 1 / (1 + permutations)


def test_under_independence_p_below_5_percent_is_5_percent_of_the_time():
    """200 independent draws of similarity and a model-level covariate: the rate of p <= 0.05 is
    within 3 binomial standard deviations (3.1 of 10) of 5%."""
    rng = np.random.default_rng(7)
    rows, columns = every_pair(7)
    below = sum(mantel_test(rng.random(len(rows)), model_level(rng.normal(size=7)), rows, columns, 199, seed)[1]
                <= 0.05 for seed in range(200))
    assert abs(below - 10) <= 3 * math.sqrt(200 * 0.05 * 0.95)


def pairs_table(similarity, pairings=("orig_1",)):
    """The final values of every pair of pt3's models (a, b) -> similarity, at each seed pairing,
    as stats.final_values gives them (n_shared_tasks 0)."""
    rows = []
    for (a, b), value in similarity.items():
        for pairing in pairings:
            seed_a, seed_b = pairing.split("_")
            rows.append(dict(setting="default", measure="cka", regime="pt3", layer=5, layer_b=5, model_a=a, model_b=b,
                             instance_a=f"{a}_{seed_a}", instance_b=f"{b}_{seed_b}", seed_pairing=pairing,
                             similarity=value, n_shared_tasks=0))
    return pd.DataFrame(rows)


def test_the_permutation_respects_models_shared_by_pairs():
    """One model apart from the others, in similarity and in the covariate: its six pairs make the
    21 pairs look strongly correlated to a test that takes pairs as independent (spearmanr's p), but
    the models' labels are what is exchangeable, and each order that keeps that model in place (1 in
    7) gives the same rho."""
    rng = np.random.default_rng(4)
    size = {model: (5 if model == "pt3-1" else 0) + 0.1 * rng.random() for model in MODELS}
    similarity = {(a, b): 0.2 if a == "pt3-1" else 0.8 for a, b in itertools.combinations(MODELS, 2)}
    covariates = pd.DataFrame([("model", a, b, "size", abs(size[a] - size[b]), "absolute difference")
                               for a, b in similarity], columns=["level", "a", "b", "covariate", "value", "rule"])
    test = covariate_tests(pairs_table(similarity), covariates, 2000, 0).iloc[0]
    naive = stats.spearmanr(list(similarity.values()), [abs(size[a] - size[b]) for a, b in similarity])
    assert test["rho"] == pytest.approx(naive.statistic, abs=1e-12) and test["rho"] < -0.6
    assert naive.pvalue < 0.001 and test["mantel_p"] > 1 / 7 - 0.03


def test_either_order_of_a_pairs_columns_gives_the_same_test(tmp_path):
    rng = np.random.default_rng(9)
    similarity = {pair: rng.random() for pair in itertools.combinations(MODELS, 2)}
    final = pairs_table(similarity)
    values = {pair: rng.random() for pair in similarity}
    tests = []
    for name, flip in (("ab.csv", lambda a, b: (a, b)), ("ba.csv", lambda a, b: (b, a))):
        path = tmp_path / name
        path.write_text("model_b,model_a,x\n" + "".join(f"{','.join(flip(a, b))},{v}\n" for (a, b), v in values.items()))
        tests.append(covariate_tests(final, read_covariates(path, final), 500, 1))
    pd.testing.assert_frame_equal(*tests)
    assert tests[0]["rho"].iloc[0] == pytest.approx(stats.spearmanr(list(similarity.values()),
                                                                    list(values.values())).statistic, abs=1e-12)


def test_a_model_pair_is_its_mean_over_the_pairings_every_pair_has_and_a_constant_covariate_is_said():
    similarity = {pair: 0.5 for pair in itertools.combinations(MODELS[:4], 2)}
    final = pairs_table(similarity, ("orig_1", "orig_2"))
    one_off = final.iloc[[0]].assign(seed_pairing="1_2", instance_a="pt3-1_1", instance_b="pt3-2_2", similarity=0.9)  # a pairing only pt3-1/pt3-2 has
    final = pd.concat([final, one_off, final.iloc[[0]].assign(model_a="pt3-2", model_b="pt3-2")])  # and one model
    pairs = pair_similarities(final, "model")
    assert len(pairs) == 6 and (pairs["similarity"] == 0.5).all()
    assert pair_similarities(final, "instance").set_index(["a", "b"]).loc[("pt3-1_1", "pt3-2_2"), "similarity"] == 0.9
    constant = pd.DataFrame([("model", a, b, "x", 1.0, "product") for a, b in similarity],
                            columns=["level", "a", "b", "covariate", "value", "rule"])
    test = covariate_tests(final, constant, 10, 0)  # n_shared_tasks, constant, has no row
    assert test[["covariate", "n_pairs", "n_models", "note"]].values.tolist() == [
        ["x", 6, 4, "the covariate is constant here: no rho or p"]]
    assert test[["rho", "mantel_p"]].isna().all(axis=None)
