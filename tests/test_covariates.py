"""Similarity against covariates: the covariates file's checks, the Mantel test against a slow
reference and an exact enumeration, and `report covariates=...` on an overlap sweep."""

import itertools
import json
import math
import re
import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import built_once, run_app
from scipy import stats

from cka_hydra.covariates import covariate_tests, mantel_test, pair_similarities, read_covariates, unlisted
from cka_hydra.errors import InputError
from cka_hydra.report import write_report
from cka_hydra.schema import ReportConfig

MODELS = [f"pt3-{i}" for i in range(1, 8)]


@pytest.fixture(scope="module")
def overlap_sweep(small_store, tmp_path_factory):
    """pt3 at layer 5, seed pairing orig_1, every pair of models, those that share tasks too
    (allow_overlap=true): 21 runs."""
    def build(cwd):
        result = run_app("-m", "sweep", "regime=pt3", "layer=5", "seed_pair=orig_1", "allow_overlap=true",
                         f"data.root={small_store}", "hydra/launcher=basic", cwd=cwd)
        assert result.returncode == 0, result.stdout

    return built_once(tmp_path_factory, "overlap", build) / "outputs/cka"


def test_report_tests_similarity_against_covariates(overlap_sweep, tmp_path):
    """The command line, a relative path read from the folder it is run in: the built-in
    n_shared_tasks and a file's model-level covariate, each rho that of scipy.stats.spearmanr
    over cka_results.csv's model pairs."""
    sizes = {model: float(i * i) for i, model in enumerate(MODELS[:6])}  # pt3-7 not in it: not analysed
    (tmp_path / "sizes.csv").write_text("model,size\n" + "".join(f"{m},{v}\n" for m, v in sizes.items()))
    out = tmp_path / "report"
    result = run_app("report", f"sweep_dir={overlap_sweep}", f"out_dir={out}", "covariates=sizes.csv",
                     "mantel_permutations=199", "mantel_seed=3", cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    assert f"covariates of {tmp_path / 'sizes.csv'}: 1 of the results' models not in it, not analysed" \
        in result.stdout

    table = pd.read_csv(out / "covariates.csv", keep_default_na=False, na_values=[""])
    assert list(table.columns) == ["setting", "measure", "regime", "layer", "covariate", "rule", "n_pairs",
                                   "n_models", "rho", "ci_low", "ci_high", "mantel_p", "permutations", "seed", "note"]
    rows = table.set_index("covariate")
    assert rows.loc["n_shared_tasks", ["rule", "n_pairs", "n_models", "permutations", "seed"]].tolist() == [
        "pair-level", 21, 7, 199, 3]
    assert rows.loc["size", ["rule", "n_pairs", "n_models"]].tolist() == ["absolute difference", 15, 6]
    results = pd.read_csv(out / "cka_results.csv").query("final")
    pairs = results[["model_a", "model_b", "similarity", "n_shared_tasks"]]
    assert len(pairs) == 21 and (pairs["model_a"] != pairs["model_b"]).all()
    assert rows.loc["n_shared_tasks", "rho"] == pytest.approx(
        stats.spearmanr(pairs["similarity"], pairs["n_shared_tasks"]).statistic, abs=1e-12)
    listed = pairs[pairs["model_a"].isin(sizes) & pairs["model_b"].isin(sizes)]
    difference = [abs(sizes[a] - sizes[b]) for a, b in zip(listed["model_a"], listed["model_b"])]
    assert rows.loc["size", "rho"] == pytest.approx(stats.spearmanr(listed["similarity"], difference).statistic,
                                                    abs=1e-12)
    assert ((rows["mantel_p"] >= 1 / 200) & (rows["mantel_p"] <= 1)).all()
    # rho's interval over models: the delete-one-model jackknife of Fisher's z, written here as a loop
    models = sorted({*pairs["model_a"], *pairs["model_b"]})
    z = [np.arctanh(stats.spearmanr(*pairs[(pairs["model_a"] != m) & (pairs["model_b"] != m)][
        ["similarity", "n_shared_tasks"]].to_numpy().T).statistic) for m in models]
    half = stats.t.ppf(0.975, len(models) - 1) * np.sqrt((len(models) - 1) / len(models)
                                                         * ((np.array(z) - np.mean(z)) ** 2).sum())
    whole = np.arctanh(rows.loc["n_shared_tasks", "rho"])
    assert rows.loc["n_shared_tasks", ["ci_low", "ci_high"]].tolist() == pytest.approx(
        [np.tanh(whole - half), np.tanh(whole + half)], abs=1e-6)

    images = ["covariate_n_shared_tasks.png", "covariate_size.png"]
    page = (out / "index.html").read_text()
    assert "<h2>Similarity against covariates</h2>" in page and "href='covariates.csv'" in page
    assert all(f"src='{name}'" in page and (out / name).stat().st_size > 10_000 for name in images)
    found = json.loads((out / "report.json").read_text())
    assert {"covariates.csv", *images} <= set(found["files"])
    assert found["covariates"] == {"file": str(tmp_path / "sizes.csv"), "rule": "absolute_difference",
                                   "not_analysed": ["pt3-7"]}


@pytest.fixture(scope="module")
def report_once(overlap_sweep, tmp_path_factory):
    out = tmp_path_factory.mktemp("earlier") / "report"
    write_report(overlap_sweep, out, mantel_permutations=9)
    return out


@pytest.fixture
def earlier_report(report_once, tmp_path):
    """A copy of an earlier report (n_shared_tasks only) in tmp_path/report, and every file's bytes there."""
    out = tmp_path / "report"
    shutil.copytree(report_once, out)
    return out, snapshot(out)


def snapshot(folder):
    return {path.relative_to(folder): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


PAIRS = "model_a,model_b,x\n"
BAD_FILES = {  # the file's text, what the one line says
    "an unknown name": (PAIRS + "pt3-1,pt3-2,1\npt3-1,pt3-8,2\n",
                        r", line 3: 'pt3-8': not a model of the report's results; expected one of its models "
                        r"\(did you mean pt3-\d\?\)$"),
    "a pair twice, reversed": (PAIRS + "pt3-1,pt3-2,1\npt3-2,pt3-1,2\n",
                               r", line 3: pt3-2, pt3-1: the pair of line 2 again \(in either order\); expected each "
                               "pair once$"),
    "a value that is no number": ("model,accuracy\npt3-1,0.5\npt3-2,high\n",
                                  r", line 3, column accuracy: 'high'; expected a number$"),
    "an empty value": ("model,accuracy\npt3-1,0.5\npt3-2,\n", r", line 3, column accuracy: ''; expected a number$"),
    "an empty file": ("", r": empty file; expected a header line \(model_a,model_b"),
    "no numeric column": ("model_a,model_b\npt3-1,pt3-2\n",
                          r", line 1: no column of values beside model_a,model_b; expected one or more numeric"),
    "unknown id columns": ("first,second,x\npt3-1,pt3-2,1\n",
                           r", line 1: columns first,second,x; expected model_a,model_b \(or instance_a,instance_b\)"),
    "a missing pair": (PAIRS + "pt3-1,pt3-2,1\npt3-2,pt3-3,2\n",
                       r": no line for pt3-1, pt3-3; expected a line for every pair of two models the results "
                       "compare whose models the file names$"),
    "a model listed twice": ("model,x\npt3-1,1\npt3-2,2\npt3-1,3\n",
                             r", line 4: pt3-1: listed on line 2 already; expected each model once$"),
    "a short line": (PAIRS + "pt3-1,pt3-2\n", r", line 2: 2 fields; expected 3 \(model_a,model_b,x\)$"),
    "the built-in's name": ("model,n_shared_tasks\npt3-1,1\n", r", line 1: column n_shared_tasks: built in"),
    "no line": ("model,x\n\n", r": a header and no line; expected a line per pair or model"),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_a_bad_covariates_file_is_refused_in_one_line_and_nothing_is_written(overlap_sweep, earlier_report, tmp_path,
                                                                          case):
    out, before = earlier_report
    path = tmp_path / "covariates.csv"
    text, said = BAD_FILES[case]
    path.write_text(text)
    with pytest.raises(InputError) as refused:
        write_report(overlap_sweep, out, covariates=path)
    message = str(refused.value)
    assert "\n" not in message and message.startswith(str(path)) and re.search(said, message), message
    assert snapshot(out) == before


def test_the_command_line_refuses_a_bad_file_before_hydra_writes_its_log(overlap_sweep, earlier_report, tmp_path):
    out, before = earlier_report
    (tmp_path / "bad.csv").write_text(PAIRS + "pt3-1,pt3-2,1\npt3-1,pt3-2,2\n")
    result = run_app("report", f"sweep_dir={overlap_sweep}", f"out_dir={out}", "covariates=bad.csv", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout.strip() == (f"Error: {tmp_path / 'bad.csv'}, line 3: pt3-1, pt3-2: the pair of line 2 again "
                                     "(in either order); expected each pair once")
    assert snapshot(out) == before  # no report.log, no .hydra/


@pytest.mark.parametrize("setting, said", [
    (dict(covariate_rule="sum"), "covariate_rule=sum: expected one of absolute_difference, product"),
    (dict(mantel_permutations=0), "mantel_permutations=0: expected 1 or more permutations"),
    (dict(mantel_seed=-1), "mantel_seed=-1: expected 0 or more"),
    (dict(covariates=" "), "covariates=: expected the path of a CSV file"),
])
def test_the_settings_are_checked(setting, said):
    with pytest.raises(InputError, match=re.escape(said)):
        ReportConfig(**setting)


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
        lines = [f"{','.join(flip(a, b))},{v}\n" for (a, b), v in values.items()]
        path.write_text("model_b,model_a,x\n" + "".join(lines))
        tests.append(covariate_tests(final, read_covariates(path, final), 500, 1))
    pd.testing.assert_frame_equal(*tests)
    assert tests[0]["rho"].iloc[0] == pytest.approx(stats.spearmanr(list(similarity.values()),
                                                                    list(values.values())).statistic, abs=1e-12)


def test_a_model_pair_is_its_mean_over_the_pairings_every_pair_has_and_a_constant_covariate_is_said():
    similarity = {pair: 0.5 for pair in itertools.combinations(MODELS[:4], 2)}
    final = pairs_table(similarity, ("orig_1", "orig_2"))
    # a pairing only pt3-1/pt3-2 has
    one_off = final.iloc[[0]].assign(seed_pairing="1_2", instance_a="pt3-1_1", instance_b="pt3-2_2", similarity=0.9)
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


def test_a_file_of_instances_values_tests_instance_pairs(tmp_path):
    """instance: a value per instance, the pairs' products; each instance pair's similarity its own."""
    similarity = {pair: 0.1 * i for i, pair in enumerate(itertools.combinations(MODELS[:4], 2))}
    final = pairs_table(similarity, ("orig_1", "1_orig"))
    final["similarity"] += np.where(final["seed_pairing"] == "orig_1", 0.0, 0.05)
    named = sorted({*final["instance_a"], *final["instance_b"]})[:-1]  # one instance not in it
    path = tmp_path / "instances.csv"
    path.write_text("instance,speed\n" + "".join(f"{name},{i + 1}\n" for i, name in enumerate(named)))
    covariates = read_covariates(path, final, "product")
    assert unlisted(covariates, final) == [sorted({*final["instance_a"], *final["instance_b"]})[-1]]
    test = covariate_tests(final, covariates, 99, 0).iloc[0]
    speed = {name: i + 1 for i, name in enumerate(named)}
    kept = final[final["instance_a"].isin(speed) & final["instance_b"].isin(speed)]
    assert (test["rule"], test["n_pairs"], test["n_models"]) == ("product", len(kept), len(named))
    assert test["rho"] == pytest.approx(stats.spearmanr(
        kept["similarity"], [speed[a] * speed[b] for a, b in zip(kept["instance_a"], kept["instance_b"])]).statistic,
        abs=1e-12)
