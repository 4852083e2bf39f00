"""The measures beside CKA (principal components, Procrustes) and layer maps (layer_b).

Independent implementations: scikit-learn's PCA (exact, svd_solver="full"), scipy.spatial.procrustes
and ckatorch; then the same measures through a real run, a sweep and the report.
"""

import re

import ckatorch
import matplotlib.image
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import RUN, read_json, reference_from_files, representations_dir, run_app, compare_into, short_hash, study_rows
from hydra import compose, initialize_config_module
from scipy import stats
from scipy.spatial import procrustes
from sklearn.decomposition import PCA

from cka_hydra import identity
from cka_hydra.overrides import hydra_argv
from cka_hydra.cka import UndefinedMeasureError, linear_cka, principal_components, procrustes_disparity
from cka_hydra.app import register
from cka_hydra.identity import default_settings, settings
from cka_hydra.schema import run_config
from cka_hydra.errors import FilterError, InputError
from cka_hydra.filters import STUDY_FILTER
from cka_hydra.pairs import Comparison, valid_comparisons

FINAL = 164073  # the small store's last step of pt2


def spread(n, d, seed, offset=5.0):
    """Rows with a clearly ordered spectrum (so that the first components are well defined), a
    per-feature offset, and some shared structure with the next seed's."""
    rng = np.random.default_rng(seed)
    shared = np.random.default_rng(1000).normal(size=(n, 4))
    x = rng.normal(size=(n, d)) * np.linspace(3, 0.2, d) + shared @ rng.normal(size=(4, d))
    return x + offset * rng.normal(size=d)


def scikit_learn_scores(x, k, fit_rows):
    return PCA(k, svd_solver="full").fit(x[fit_rows]).transform(x)


# --- the math against independent implementations ---

@pytest.mark.parametrize("n, d, k", [(300, 20, 3), (40, 60, 3), (200, 8, 8), (500, 256, 5)])
def test_principal_components_equal_scikit_learns_exact_pca(n, d, k):
    x = spread(n, d, seed=n + d)
    fit_rows = np.arange(0, n, 2)  # fitted on half the rows, applied to all
    got = principal_components(torch.from_numpy(x), k, torch.from_numpy(fit_rows))
    assert got.dtype == torch.float64 and got.shape == (n, k)
    # the same signs too: both take the largest loading of each component positive
    assert np.abs(got.numpy() - scikit_learn_scores(x, k, fit_rows)).max() < 1e-8


def test_principal_components_of_float32_rows_are_computed_in_float64():
    x = spread(300, 12, seed=3, offset=1e3).astype(np.float32)
    got = principal_components(torch.from_numpy(x), 3)
    exact = scikit_learn_scores(x.astype(np.float64), 3, np.arange(300))
    assert np.abs(got.numpy() - exact).max() < 1e-8


def test_principal_components_refuse_more_components_than_rows_or_features():
    x = torch.from_numpy(spread(30, 5, seed=1))
    with pytest.raises(ValueError, match="6 principal components need at least 6 fitted rows and 6 features"):
        principal_components(x, 6)
    with pytest.raises(ValueError, match="got 4 rows"):
        principal_components(x, 5, torch.arange(4))
    with pytest.raises(ValueError):
        principal_components(x, 0)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("n, d", [(50, 3), (400, 3), (100, 10)])
def test_procrustes_disparity_equals_scipy(seed, n, d):
    x, y = spread(n, d, seed), spread(n, d, seed + 1, offset=-3.0)
    assert float(procrustes_disparity(torch.from_numpy(x), torch.from_numpy(y))) == pytest.approx(
        procrustes(x, y)[2], abs=1e-10)


def test_procrustes_disparity_properties():
    rng = np.random.default_rng(0)
    x, y = (torch.from_numpy(spread(200, 3, seed)) for seed in (1, 2))
    rotation, _ = np.linalg.qr(rng.normal(size=(3, 3)))  # a rotation or reflection
    moved = 2.5 * x @ torch.from_numpy(rotation) + torch.tensor([1.0, -4.0, 7.0])
    assert float(procrustes_disparity(x, moved)) < 1e-12  # the same shape
    assert float(procrustes_disparity(x, y)) == pytest.approx(float(procrustes_disparity(y, x)), abs=1e-14)
    values = procrustes_disparity(torch.stack([x, x, y]), torch.stack([y, moved, -x]))
    assert values.shape == (3,) and float(values[0]) == pytest.approx(float(procrustes_disparity(x, y)), abs=1e-14)
    assert all(0 <= float(v) <= 1 for v in values)
    # a narrower side counts as padded with zero columns, which scipy needs written out
    narrow = y[:, :2]
    padded = np.hstack([narrow.numpy(), np.zeros((200, 1))])
    assert float(procrustes_disparity(x, narrow)) == pytest.approx(procrustes(x.numpy(), padded)[2], abs=1e-10)
    with pytest.raises(UndefinedMeasureError, match="Procrustes is undefined: the second representation is constant"):
        procrustes_disparity(x, torch.ones(200, 3))


@pytest.mark.parametrize("k", [1, 3, 7])
def test_cka_of_principal_components_equals_ckatorch_on_scikit_learns(k):
    x, y = spread(400, 24, seed=7), spread(400, 16, seed=8)
    fit_x, fit_y = np.arange(0, 400, 3), np.arange(1, 400, 2)
    got = linear_cka(principal_components(torch.from_numpy(x), k, torch.from_numpy(fit_x)),
                     principal_components(torch.from_numpy(y), k, torch.from_numpy(fit_y)))
    expected = ckatorch.core.cka_base(torch.from_numpy(scikit_learn_scores(x, k, fit_x)),
                                      torch.from_numpy(scikit_learn_scores(y, k, fit_y)))
    assert float(got) == pytest.approx(float(expected), abs=1e-10)


def test_with_every_component_fitted_on_every_row_pca_cka_is_cka():
    # the PCA is then a rotation of the centred rows, which linear CKA does not see
    x, y = torch.from_numpy(spread(120, 9, seed=4)), torch.from_numpy(spread(120, 6, seed=5))
    assert float(linear_cka(principal_components(x, 9), principal_components(y, 6))) == pytest.approx(
        float(linear_cka(x, y)), abs=1e-12)


# --- settings, names and planning ---

def composed(*overrides):
    register()
    with initialize_config_module(config_module="cka_hydra.conf", version_base="1.3"):
        return run_config(compose("config", overrides=hydra_argv(overrides)))


def test_measure_cka_keeps_the_settings_and_folders_of_before_measures_existed():
    run = composed()
    assert not any(key.startswith("measure.") for key in settings(run))
    assert identity.subdir(run.comparison, settings(run), default_settings()) == (
        "pt2/pt2-1_vs_pt2-2_seed1/layer5")


@pytest.mark.parametrize("overrides, label", [
    (["measure=pca_cka"], "pca_cka"),
    (["measure=procrustes", "measure.components=5"], "procrustes-k5"),
    (["measure=procrustes", "city_filter=null"], "procrustes-nofilter"),  # pca_filter follows city_filter
    (["measure=pca_cka", "measure.pca_filter=null"], "pca_cka-pcanofilter"),
    # fitted on the study's cities, compared on all: not the folder of a PCA fitted on all
    (["measure=pca_cka", "city_filter=null", f"measure.pca_filter='{STUDY_FILTER}'"],
     f"pca_cka-pcafilter-{short_hash(STUDY_FILTER)}-nofilter"),
    (["measure=pca_cka", "city_filter='region:^A'", "measure.pca_filter='region:^A'"], "pca_cka-filter-"
     f"{short_hash('region:^A')}"),
    (["measure=cka", "measure.components=5"], ""),  # cannot change a CKA result
])
def test_measure_settings_name_their_run_folders(overrides, label):
    run = composed(*overrides)
    assert identity.settings_label(settings(run), default_settings()) == label


def test_pca_filter_follows_city_filter_unless_set():
    assert composed("measure=pca_cka", "city_filter='region:^A'").measure.pca_filter == "region:^A"
    run = composed("measure=pca_cka", "measure.pca_filter='region:^B'")
    assert (run.measure.pca_filter, settings(run)["measure.pca_filter"]) == ("region:^B", "region:^B")


def test_measure_refusals_name_the_setting():
    with pytest.raises(InputError, match="cka.kernel, cka.bootstrap: the cka.. settings are measure=cka's; "
                                         "measure=procrustes is the Procrustes disparity of the first principal "
                                         "components in float64, without bootstrap: leave them out, or set "
                                         r"measure=cka \(in a sweep: sweep them with measure=cka alone\)"):
        composed("measure=procrustes", "cka.kernel=rbf", "cka.bootstrap=10")
    with pytest.raises(FilterError, match="measure.pca_filter: term 'nocolon'"):
        composed("measure=pca_cka", "measure.pca_filter=nocolon")
    with pytest.raises(FilterError, match="^city_filter: term 'nocolon'"):  # the setting given, not the follower
        composed("measure=pca_cka", "city_filter=nocolon")


def test_a_model_against_itself_at_two_layers_is_one_comparison_either_way_round():
    forward = composed("pair=1_1", "seed_pair=orig_1", "layer=5", "layer_b=3")
    backward = composed("pair=1_1", "seed_pair=1_orig", "layer=3", "layer_b=5")
    assert forward.comparison == backward.comparison == Comparison("pt2", 1, 1, "orig", "1", 5, 3)
    assert composed("layer=5", "layer_b=5").comparison == composed("layer=5").comparison


def test_layer_maps_keep_both_orders_of_two_models_and_one_of_an_instance_with_itself():
    models = {1: ["a"], 2: ["b"], 3: ["a", "c"]}
    kept, removed = valid_comparisons("r", models, [3, 5], [("orig", "1")], layers_b=[3, 5])
    pairs_12 = {(c.layer, c.layer_b) for c in kept if (c.a, c.b) == (1, 2)}
    assert pairs_12 == {(3, 3), (3, 5), (5, 3), (5, 5)}  # model 1 at 3 against 2 at 5 is not 2 at 3 against 1 at 5
    assert removed["shared training task"] == 4  # (1, 3) at every layer pair

    every_seed = [(a, b) for a in ("orig", "1") for b in ("orig", "1")]
    kept, removed = valid_comparisons("r", {1: ["a"]}, [3, 5], every_seed, self_pairs=True, layers_b=[3, 5])
    sides = [frozenset({(c.seed_a, c.layer), (c.seed_b, c.layer_b)}) for c in kept]
    # the 4 (seed, layer) instances of model 1: 6 pairs and 4 with themselves, each once
    assert len(kept) == len(set(sides)) == 10 and removed["same comparison twice"] == 6


# --- through a run, a sweep and the report ---

def pca_rows(k, fit="study"):
    """A loader for reference_from_files: a folder's scikit-learn PCA scores, fitted on the cities
    the default filter keeps, with those cities' rows by id."""
    def load(folder):
        matrix, keep = study_rows(folder)
        return scikit_learn_scores(matrix, k, sorted(keep.values())), keep
    return load


def ckatorch_linear(x, y):
    return float(ckatorch.core.cka_base(torch.from_numpy(x), torch.from_numpy(y)))


REFERENCES = {"pca_cka": ckatorch_linear, "procrustes": lambda x, y: procrustes(x, y)[2]}


@pytest.mark.parametrize("measure", ["pca_cka", "procrustes"])
def test_a_run_of_each_pca_measure_equals_the_independent_implementations(small_store, tmp_path, measure):
    run_dir = compare_into(tmp_path, *RUN, f"data.root={small_store}", f"measure={measure}", "checkpoints=all")
    assert run_dir.name == f"layer5-{measure}-all"
    summary = read_json(run_dir / "summary.json")
    # named after the measure, as the research group's scripts name it (procrustes_timeline.csv)
    assert not (run_dir / "cka_timeline.csv").exists()
    timeline = pd.read_csv(run_dir / f"{measure}_timeline.csv")
    column = {"pca_cka": "pca_cka", "procrustes": "procrustes_disparity"}[measure]
    # linear CKA of the components has an exact chance level; Procrustes has none (null.permutations tests it)
    assert list(timeline.columns) == ["step", column, "n_cities", *(["chance"] if measure == "pca_cka" else [])]
    for step, value in zip(timeline["step"], timeline[column]):
        expected, n_cities = reference_from_files(
            representations_dir(small_store, "pt2-1", "distance", 5) / f"checkpoint-{step}",
            representations_dir(small_store, "revision/exp2/pt2-2_seed1", "angle", 5) / f"checkpoint-{step}",
            estimator=REFERENCES[measure], load=pca_rows(3))
        assert value == pytest.approx(expected, abs=1e-8)
    assert summary["final_value"] == timeline[column].iloc[-1]
    assert (summary["measure"], summary["components"], summary["layer"], summary["layer_b"]) == (measure, 3, 5, 5)
    assert ("final_cka" in summary) == (measure == "pca_cka") and "kernel" not in summary
    last = timeline["step"].iloc[-1]
    assert summary["pca_cities"] == [  # each side's last PCA was fitted on the cities the default filter keeps
        len(study_rows(representations_dir(small_store, instance, task, 5) / f"checkpoint-{last}")[1])
        for instance, task in (("pt2-1", "distance"), ("revision/exp2/pt2-2_seed1", "angle"))]


def test_layer_b_reads_the_second_instance_at_its_layer(small_store, tmp_path):
    run_dir = compare_into(tmp_path, *RUN[:3], "layer=3", "layer_b=5", f"data.root={small_store}")
    assert run_dir.relative_to(tmp_path).as_posix() == "pt2/pt2-1_vs_pt2-2_seed1/layer3_vs_layer5"
    summary = read_json(run_dir / "summary.json")
    expected, _ = reference_from_files(
        representations_dir(small_store, "pt2-1", "distance", 3) / f"checkpoint-{FINAL}",
        representations_dir(small_store, "revision/exp2/pt2-2_seed1", "angle", 5) / f"checkpoint-{FINAL}")
    assert summary["final_cka"] == summary["final_value"] == pytest.approx(expected, abs=1e-9)
    assert (summary["layer"], summary["layer_b"], summary["measure"]) == (3, 5, "cka")


def test_too_many_components_fail_the_job_naming_the_setting(small_store, tmp_path):
    with pytest.raises(InputError, match=r"measure.components=13: pt2-1 at step \d+: 13 principal components "
                                         r"need at least 13 fitted rows and 13 features, got \d+ rows of 12"):
        compare_into(tmp_path, *RUN, f"data.root={small_store}", "measure=pca_cka", "measure.components=13")


def test_a_measure_and_layer_map_sweep_and_its_report(small_store, tmp_path):
    sweep = ["-m", "sweep", "regime=pt3", "seed_pair=orig_1", "layer=3,5", "layer_b=5",
             "measure=pca_cka,procrustes", f"data.root={small_store}", "hydra/launcher=basic"]
    result = run_app(*sweep, cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    # 7 disjoint model pairs x 2 layer pairs, for each measure
    assert "sweep: 28 jobs (14 comparisons x 2 settings)" in result.stdout
    results_dir = tmp_path / "outputs/cka"
    cross = results_dir / "pt3/pt3-1_vs_pt3-2_seed1/layer3_vs_layer5-procrustes"
    expected, _ = reference_from_files(
        representations_dir(small_store, "pt3-1", "distance", 3) / f"checkpoint-{FINAL}",
        representations_dir(small_store, "revision/exp2/pt3-2_seed1", "compass", 5) / f"checkpoint-{FINAL}",
        estimator=REFERENCES["procrustes"], load=pca_rows(3))
    assert read_json(cross / "summary.json")["final_value"] == pytest.approx(expected, abs=1e-8)
    assert "[28/28] done 0, skipped 28" in run_app(*sweep, cwd=tmp_path).stdout
    # and one pair of pt2 (two tasks per model): a trend and a regime against another, per measure
    pt2 = ["-m", "sweep", "regime=pt2", "pair=1_2", *sweep[3:]]
    assert run_app(*pt2, cwd=tmp_path).returncode == 0

    result = run_app("report", f"data.root={small_store}", cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    out = results_dir / "report"
    for measure in ("pca_cka", "procrustes"):
        for name in (f"matrix_pt3_layer5_{measure}.png", f"models_pt3_layer5_{measure}.png",
                     f"layer_map_{measure}.png", f"trends_{measure}.png"):
            assert (out / name).is_file(), name
    results = pd.read_csv(out / "cka_results.csv", dtype={"seed_a": str, "seed_b": str})
    procrustes_rows = results[results["measure"] == "procrustes"]
    assert np.allclose(procrustes_rows["similarity"], 1 - procrustes_rows["value"])
    assert set(zip(results["layer"], results["layer_b"])) == {(3, 5), (5, 5)}
    groups = pd.read_csv(out / "stats.csv").query("table == 'groups'")
    cell = groups[(groups["measure"] == "procrustes") & (groups["regime"] == "pt3") & (groups["layer"] == 3)
                  & (groups["layer_b"] == 5)]
    units = procrustes_rows[(procrustes_rows["regime"] == "pt3") & (procrustes_rows["layer"] == 3)
                            & (procrustes_rows["layer_b"] == 5)]
    assert cell["n_comparisons"].tolist() == [7] and cell["mean"].iloc[0] == pytest.approx(units["similarity"].mean())

    # two measures: the study's conclusions under each, side by side, one seed pairing (orig_1)
    conclusions = pd.read_csv(out / "conclusions.csv")
    final = results[results["final"]]
    for measure, rows in conclusions.groupby("measure"):
        of = final[final["measure"] == measure]
        mean = of.groupby(["regime", "layer"])["similarity"].mean()  # one pairing: the unit means
        assert rows[["claim", "layer", "layer_b", "what"]].values.tolist() == [
            ["trend over training tasks", 5, 5, "2, 3 training tasks (pt2, pt3)"],
            ["regime vs regime", 3, 5, "pt2 vs pt3"], ["regime vs regime", 5, 5, "pt2 vs pt3"]]
        assert rows["estimate"].tolist() == pytest.approx([mean["pt3", 5] - mean["pt2", 5],
                                                           mean["pt2", 3] - mean["pt3", 3],
                                                           mean["pt2", 5] - mean["pt3", 5]], abs=1e-12)
        assert rows["n_units"].tolist() == [2, 2, 2] and rows["p"].isna().all()  # a single seed pairing: no test
        assert (rows["setting"] == measure).all() and (rows["seed_pairings"] == "orig_1").all()
        assert rows["direction"].tolist() == [
            {True: "rises", False: "falls"}[mean["pt3", 5] > mean["pt2", 5]],
            *({True: "higher", False: "lower"}[mean["pt2", layer] > mean["pt3", layer]] for layer in (3, 5))]
    agreement = pd.read_csv(out / "measure_agreement.csv")
    pairs = final.pivot(index=["regime", "instance_a", "instance_b", "layer", "layer_b"], columns="measure",
                        values="similarity")
    tau = stats.kendalltau(pairs["pca_cka"], pairs["procrustes"])
    assert agreement[["setting_a", "setting_b", "n"]].values.tolist() == [["pca_cka", "procrustes", 16]]
    assert agreement["tau"].iloc[0] == pytest.approx(tau.statistic, abs=1e-12)
    assert "results of 2 measures: the study's conclusions under each" in result.stdout
    page = (out / "conclusions.html").read_text()
    assert "<img alt='conclusions_trends.png'" in page and f"<td>{tau.statistic:.4g}</td>" in page
    assert "<a href='conclusions.html'>" in (out / "index.html").read_text()
    image = matplotlib.image.imread(out / "conclusions_trends.png")
    assert image.shape[1] > image.shape[0] and image[..., :3].std() > 0.05  # two panels side by side, not blank
    assert {"conclusions.csv", "measure_agreement.csv", "conclusions_trends.png", "conclusions.html"} <= set(
        read_json(out / "report.json")["files"])


@pytest.mark.parametrize("mode", ["run", "sweep"])
def test_mistakes_shared_by_every_job_stop_a_run_or_sweep_with_one_line(small_store, tmp_path, mode):
    start = ["-m", "sweep", "regime=pt3", "layer=5"] if mode == "sweep" else RUN
    refusals = [
        (["measure=pca_cka", "measure.pca_filter='region:^Atlantis'"],
         r"Error: measure.pca_filter keeps 2 of pt\d-\d\S*'s 60 cities at step \d+: a PCA of measure.components=3 "
         r"is fitted on at least 10"),
        (["measure=procrustes", "city_filter='region:^Atlantis'"],
         r"Error: city_filter keeps 2 of pt\d-\d\S*'s 60 cities at step \d+: a comparison needs at least 10"),
        (["layer_b=9"], r"Error: layer_b=9: no representation folder at .*" if mode == "run" else
         r"Error: layer_b=9: no such option; layer has: 0, 1, 2, 3, 4, 5, 6"),
    ]
    for overrides, message in refusals:
        result = run_app(*start, *overrides, f"data.root={small_store}", cwd=tmp_path)
        assert result.returncode == 1 and "Traceback" not in result.stdout, result.stdout
        errors = [line for line in result.stdout.splitlines() if "Error" in line or "[ERROR]" in line]
        assert len(errors) == 1 and re.fullmatch(message, errors[0]), result.stdout
    assert not (tmp_path / "outputs/cka/pt3").exists() and not (tmp_path / "outputs/cka/pt2").exists()
