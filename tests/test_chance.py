"""Chance levels: the exact null mean of CKA against Monte Carlo, the permutation test against a
brute-force loop, its p-values under the null, and how runs and the report carry them."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from scipy.spatial import procrustes

from cka_hydra import engine, run_folder
from cka_hydra.schema import CKAConfig, Kernel, MeasureConfig
from cka_hydra.registry import REGISTRY
from cka_hydra.stats import not_above_chance

from conftest import (
    RUN, read_json, reference_cka, reference_rbf_cka, representations_dir, run_app, save_checkpoint,
)

N_MONTE_CARLO = 10_000


def data(kind, n=30, seed=0):
    """Two representations of n cities: independent, low-rank, or with large offsets."""
    g = np.random.default_rng(seed)
    x, y = g.normal(size=(n, 6)), g.normal(size=(n, 5))
    if kind == "low-rank":
        x = g.normal(size=(n, 1)) @ g.normal(size=(1, 6)) + 0.01 * x
    if kind == "offset":
        x, y = x + 1e3, y * [1, 10, 100, 1, 1] - 5e2
    return x, y


def monte_carlo(reference, x, y, count=N_MONTE_CARLO, seed=1):
    """The mean and standard error of reference(x, y re-paired) over count random re-pairings."""
    g = np.random.default_rng(seed)
    values = np.array([reference(x, y[g.permutation(len(y))]) for _ in range(count)])
    return values.mean(), values.std(ddof=1) / np.sqrt(count)


def terms(measure="cka", **cka):
    return REGISTRY[measure].terms(CKAConfig(**cka), MeasureConfig(measure))


def exact_chance(t, x, y):
    return float(t.chance(t.prepare(torch.from_numpy(x)), t.prepare(torch.from_numpy(y))))


@pytest.mark.parametrize("kind", ["random", "low-rank", "offset"])
@pytest.mark.parametrize("estimator", ["linear", "rbf"])
def test_the_exact_null_mean_is_the_monte_carlo_mean(kind, estimator):
    x, y = data(kind)
    if estimator == "linear":
        t, reference = terms(), reference_cka
    else:
        t, reference = terms(kernel=Kernel.rbf, sigma_frac=0.8), lambda a, b: reference_rbf_cka(a, b, 0.8)
    mean, se = monte_carlo(reference, x, y)
    exact = exact_chance(t, x, y)
    assert abs(exact - mean) < 4 * se, (exact, mean, se)
    assert exact > 0.05  # biased CKA is well above 0 by chance at n = 30


@pytest.mark.parametrize("estimator", ["linear", "rbf"])
def test_the_debiased_null_mean_is_zero(estimator):
    x, y = data("random", n=40)
    if estimator == "linear":
        t, reference = terms(debiased=True), lambda a, b: reference_cka(a, b, debiased=True)
    else:
        t, reference = (terms(kernel=Kernel.rbf, sigma_frac=0.8, debiased=True),
                        lambda a, b: reference_rbf_cka(a, b, 0.8, debiased=True))
    mean, se = monte_carlo(reference, x, y)
    assert exact_chance(t, x, y) == 0.0
    assert abs(mean) < 4 * se, (mean, se)


def scipy_disparity(a, b):
    return procrustes(a, np.hstack([b, np.zeros((len(b), a.shape[1] - b.shape[1]))]))[2]


@pytest.mark.parametrize("measure, settings, reference", [
    ("cka", {}, reference_cka),
    ("cka", {"debiased": True}, lambda a, b: reference_cka(a, b, debiased=True)),
    ("cka", {"kernel": Kernel.rbf, "sigma_frac": 0.6}, lambda a, b: reference_rbf_cka(a, b, 0.6)),
    ("cka", {"kernel": Kernel.rbf, "debiased": True}, lambda a, b: reference_rbf_cka(a, b, 0.4, debiased=True)),
    ("procrustes", {}, scipy_disparity),
])
def test_the_permutation_test_equals_a_brute_force_loop(measure, settings, reference):
    """The engine's null values (batched, self-terms kept) against an independent numpy
    implementation on the same permutations."""
    x, y = data("random", n=35, seed=4)
    t = terms(measure, **settings)
    perms = engine.permutations(60, seed=7, n=35)
    ours = engine.null_values(t, t.prepare(torch.from_numpy(x)), t.prepare(torch.from_numpy(y)), perms).numpy()
    theirs = np.array([reference(x, y[p.numpy()]) for p in perms])
    assert np.abs(ours - theirs).max() < 1e-12


def test_the_permutations_are_the_seeds_and_differ_by_seed():
    first, again, other = (engine.permutations(5, seed, 40) for seed in (3, 3, 4))
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert all(sorted(p.tolist()) == list(range(40)) for p in first)


def test_p_values_are_uniform_under_the_null():
    """A representation of pure noise against a structured one: over 300 draws (fixed seeds), the
    p-values of 99 permutations each are uniform (Kolmogorov-Smirnov)."""
    t = terms()
    g = torch.Generator().manual_seed(11)
    structured = torch.randn(40, 3, generator=g, dtype=torch.float64) @ torch.randn(3, 8, generator=g,
                                                                                     dtype=torch.float64)
    x = t.prepare(structured)
    p_values = []
    for draw in range(300):
        y = t.prepare(torch.randn(40, 5, generator=g, dtype=torch.float64))
        null = engine.null_values(t, x, y, engine.permutations(99, draw, 40))
        p_values.append(engine.permutation_test(null, float(t.compare(x, y)), True)[2])
    assert stats.kstest(p_values, "uniform").pvalue > 0.01
    assert min(p_values) >= 0.01 and max(p_values) <= 1


def test_a_noisy_copy_gets_the_smallest_p_value():
    t = terms()
    g = torch.Generator().manual_seed(2)
    x = torch.randn(50, 6, generator=g, dtype=torch.float64)
    a, b = t.prepare(x), t.prepare(x + 0.1 * torch.randn(50, 6, generator=g, dtype=torch.float64))
    mean, std, p = engine.permutation_test(engine.null_values(t, a, b, engine.permutations(199, 0, 50)),
                                           float(t.compare(a, b)), True)
    assert p == 1 / 200 and mean < 0.5 and std > 0
    d = terms("procrustes")  # a distance: as extreme means as small
    a, b = d.prepare(x), d.prepare(x + 0.1 * torch.randn(50, 6, generator=g, dtype=torch.float64))
    assert engine.permutation_test(engine.null_values(d, a, b, engine.permutations(199, 0, 50)),
                                   float(d.compare(a, b)), False)[2] == 1 / 200


def test_benjamini_hochberg_over_a_figures_values():
    p = np.array([0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205, np.nan])
    # by hand: sorted p_(i) * m / i with m = 8 tested, then the running minimum from the top
    m = 8
    adjusted = np.minimum.accumulate((p[:m] * m / np.arange(1, m + 1))[::-1])[::-1]
    expected = list(adjusted > 0.05) + [False]  # no test: not marked
    assert not_above_chance(pd.DataFrame({"p_value": p})).tolist() == expected


def test_a_run_carries_its_chance_level_and_permutation_test(small_store, tmp_path):
    assert run_app(*RUN, f"data.root={small_store}", "checkpoints=all", "null.permutations=99", "null.seed=3",
                   cwd=tmp_path).returncode == 0
    (run_dir,) = [p.parent for p in tmp_path.rglob(run_folder.SUMMARY_FILE)]
    assert run_dir.name == "layer5-null99-nullseed3-all"
    timeline = pd.read_csv(run_dir / run_folder.timeline_file("cka"))
    assert list(timeline.columns) == ["step", "cka", "n_cities", "chance", "null_mean", "null_std", "p_value"]
    summary = read_json(run_dir / run_folder.SUMMARY_FILE)
    assert summary["final_chance"] == timeline["chance"].iloc[-1]
    assert (summary["permutations"], summary["final_p_value"]) == (99, timeline["p_value"].iloc[-1])
    assert summary["settings"]["null.permutations"] == 99
    # each step's chance level is its exact null mean; the permutations' mean estimates it
    assert ((timeline["null_mean"] - timeline["chance"]).abs() < 5 * timeline["null_std"] / np.sqrt(99)).all()
    # the default run has the chance level, and no null settings in its identity
    assert run_app(*RUN, f"data.root={small_store}", cwd=tmp_path).returncode == 0
    default = read_json(tmp_path / "outputs/cka/pt2/pt2-1_vs_pt2-2_seed1/layer5" / run_folder.SUMMARY_FILE)
    assert "final_chance" in default and not any(key.startswith("null") for key in default["settings"])


def test_the_report_marks_values_not_above_chance(store_copy, tmp_path):
    """One instance replaced by noise: its comparisons are at chance, the permutation test says so,
    and the report marks them (and only them); every table states the chance levels."""
    folder = representations_dir(store_copy, "revision/exp2/pt3-4_seed1", "angle", 5)
    for checkpoint in folder.iterdir():
        tensors = torch.load(checkpoint / "representations.pt", weights_only=True)
        noise = torch.randn(tensors["representations_flat"].shape, generator=torch.Generator().manual_seed(0))
        cities = json.loads((checkpoint / "metadata.json").read_text())["city_info"]
        save_checkpoint(checkpoint, {"representations_flat": noise}, cities)
    sweep = ["-m", "sweep", "regime=pt2,pt3", "layer=5", "null.permutations=99"]
    assert run_app(*sweep, f"data.root={store_copy}", cwd=tmp_path).returncode == 0
    assert run_app("report", f"data.root={store_copy}", cwd=tmp_path).returncode == 0
    out = tmp_path / "outputs/cka/report"
    results = pd.read_csv(out / "cka_results.csv")
    assert results["chance"].notna().all() and results["p_value"].notna().all()
    noisy = (results["instance_a"] == "pt3-4_seed1") | (results["instance_b"] == "pt3-4_seed1")
    flagged = not_above_chance(results)
    assert flagged[noisy].any() and not flagged[~noisy].any()
    # each value calibrated against its exact chance level: at chance 0, as similar as itself 1
    assert np.allclose(results["calibrated"], (results["value"] - results["chance"]) / (1 - results["chance"]))
    assert results.loc[noisy, "calibrated"].abs().max() < 0.05 < results.loc[~noisy, "calibrated"].min()
    groups = pd.read_csv(out / "stats.csv").query("table == 'groups'")
    assert groups["chance"].notna().all()
    counted = results[results["final"] & (results["n_shared_tasks"] == 0)]
    assert np.allclose(groups.set_index(["regime", "layer"])["calibrated"].sort_index(),
                       counted.groupby(["regime", "layer"])["calibrated"].mean().sort_index())
    assert groups["n_not_above_chance"].sum() == flagged.sum() and groups["n_tested"].sum() == len(results)
    page = (out / "index.html").read_text()
    assert "Benjamini-Hochberg" in page and "not above chance" in page
    assert (out / "trends_null99.png").is_file()  # pt3's point, where the noisy instance is, ringed
