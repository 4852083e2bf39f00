"""A study that grows stays honest: stale inputs never count, a store that moves keeps its results,
overlap and self-pair sweeps inputs what they say, and settings that cannot give a meaningful
value stop before anything runs."""

import json
import os
import shutil

import pandas as pd
import pytest
import torch
from conftest import DISJOINT, read_json, representations_dir, run_app

from cka_hydra.cka import UndefinedMeasureError, rbf_cka
from cka_hydra.demo import load_regime
from cka_hydra.pairs import valid_comparisons
from cka_hydra.report import colour_scales
from cka_hydra.stats import final_values, group_summary

SWEEP = ["-m", "sweep", "regime=pt3", "layer=5", "seed_pair=orig_1", "hydra/launcher=basic"]
A_FOLDER = ("pt3-1", "distance", 5)  # pt3-1 at layer 5, in two of SWEEP's jobs (1_2 and 1_7)
FINAL = "checkpoint-164073"


def tasks(regime):
    return {int(k): v for k, v in load_regime(regime)["models"].items()}


def test_overlap_sweeps_plan_the_pairs_that_share_a_task():
    kept, removed = valid_comparisons("pt3", tasks("pt3"), [5], [("orig", "1")], allow_overlap=True)
    assert len(kept) == 21 and removed["shared training task"] == 0
    kept, removed = valid_comparisons("pt3", tasks("pt3"), [5], [("orig", "1")])
    assert len(kept) == len(DISJOINT["pt3"]) and removed["shared training task"] == 14


def test_self_pairs_with_narrowed_pairs_add_each_named_models_self_pairs():
    kept, _ = valid_comparisons("pt3", tasks("pt3"), [5], [("orig", "1"), ("1", "2")], pairs=[(1, 2)], self_pairs=True)
    assert sorted({(c.a, c.b) for c in kept}) == [(1, 1), (1, 2), (2, 2)] and len(kept) == 6


def test_an_overlap_sweep_runs_and_is_reported_as_shared_task(small_store, tmp_path):
    result = run_app(*SWEEP, "pair=1_4", "allow_overlap=true", f"data.root={small_store}", cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    assert "1 jobs (1 of them share a training task: allow_overlap=true)" in result.stdout
    assert run_app("report", f"data.root={small_store}", "min_runs=1", cwd=tmp_path).returncode == 0
    stats = (tmp_path / "outputs/cka/report/stats.md").read_text()
    assert "shared-task" in stats


def test_a_city_filter_that_keeps_too_few_cities_stops_the_sweep(small_store, tmp_path):
    result = run_app(*SWEEP, "city_filter='name:City 12$'", f"data.root={small_store}", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout.strip().splitlines()[-1] == (
        "Error: city_filter keeps 0 of pt3-1's 60 cities at step 164073: a comparison needs at least 10")
    assert not (tmp_path / "outputs/cka").exists()


def test_a_step_list_that_fits_no_job_is_one_error(small_store, tmp_path):
    result = run_app(*SWEEP, "checkpoints=[0,82036,164073,5]", f"data.root={small_store}", cwd=tmp_path)
    assert result.returncode == 1
    errors = [line for line in result.stdout.splitlines() if line.startswith("Error")]
    assert errors == ["Error: checkpoints: steps [5] are not held by both pt3-1 and pt3-2_seed1; common steps: [0, "
                      "82036, 164073] (and so for every one of the 7 pt3 jobs with checkpoints=[0,5,82036,164073]: "
                      "nothing was launched)"]


def test_a_dry_run_with_jobs_that_would_fail_exits_as_the_sweep_would(small_store, store_copy, tmp_path):
    shutil.rmtree(representations_dir(store_copy, "revision/exp2/pt3-7_seed1", "inside", 5))
    result = run_app(*SWEEP, "hydra.sweeper.dry_run=true", f"data.root={store_copy}", cwd=tmp_path)
    assert result.returncode == 1 and "Error: 2 of 7 jobs would fail before launch" in result.stdout  # 1_7, 6_7


def test_an_rbf_bandwidth_that_makes_the_kernel_the_identity_is_refused():
    x, y = torch.randn(50, 4, dtype=torch.float64), torch.randn(50, 4, dtype=torch.float64)
    with pytest.raises(UndefinedMeasureError, match="the RBF kernel is numerically the identity at sigma_frac=0.0001"):
        rbf_cka(x, y, sigma_frac=1e-4)
    assert 0 < float(rbf_cka(x, y, sigma_frac=0.4)) < 1


def test_the_issues_degenerate_settings_are_refused(small_store, tmp_path):
    run = ["regime=pt2", "pair=1_2", "seed_pair=orig_1", "layer=5", f"data.root={small_store}"]
    result = run_app(*run, "cka.kernel=rbf", "cka.sigma_frac=0.0001", cwd=tmp_path)
    assert result.returncode == 1 and "the RBF kernel is numerically the identity at sigma_frac=0.0001" in result.stdout
    result = run_app(*run, "cka.bootstrap=1", cwd=tmp_path)
    assert result.returncode == 1 and "Error: cka.bootstrap=1: expected 0 (no interval) or a number of resamples, " \
        "2 or more" in result.stdout
    result = run_app(*run, "cka.bootstrap=20", cwd=tmp_path)
    assert result.returncode == 0 and "cka.bootstrap=20: a percentile interval from fewer than 100 resamples is " \
        "rough" in result.stdout
    summary = read_json(next(tmp_path.rglob("layer5-boot20/summary.json")))
    low, high = summary["final_cka_ci"]
    assert low < high


def sweep_and_report(store, cwd):
    swept = run_app(*SWEEP, f"data.root={store}", cwd=cwd)
    reported = run_app("report", f"data.root={store}", cwd=cwd)
    return swept, reported, json.loads((cwd / "outputs/cka/report/report.json").read_text())


def test_a_file_replaced_in_place_makes_its_results_stale(store_copy, tmp_path):
    """The issue's finding: a NaN put into a checkpoint, then overwrite=true: the run failed, but the old
    result kept counting, in sweeps and in the report."""
    swept, _, found = sweep_and_report(store_copy, tmp_path)
    assert swept.returncode == 0 and found["runs"] == 7
    tensor = representations_dir(store_copy, *A_FOLDER) / FINAL / "representations.pt"
    data = torch.load(tensor, weights_only=True)
    data["representations_flat"][0, 0] = float("nan")
    torch.save(data, tensor)
    run_dir = tmp_path / "outputs/cka/pt3/pt3-1_vs_pt3-2_seed1/layer5"
    before = (run_dir / "summary.json").read_bytes()
    failed = run_app("regime=pt3", "pair=1_2", "seed_pair=orig_1", "layer=5", f"data.root={store_copy}",
                     "overwrite=true", cwd=tmp_path)
    assert failed.returncode == 1 and "NaN/Inf" in failed.stdout
    assert (run_dir / "summary.json").read_bytes() == before  # a failure never touches a result

    swept, reported, found = sweep_and_report(store_copy, tmp_path)
    assert swept.returncode == 1 and "2 of 7 jobs did not finish" in swept.stdout  # not skipped as done
    assert "5 jobs already have results for the same settings (skipped)" in swept.stdout
    assert found["runs"] == 5 and found["left_out"] == {"failed": 2}  # as the sweep counts them
    assert "recomputing layer5: 1 of its input files changed since (pt3-1/analysis_higher/" in (
        run_dir / "cka.log").read_text()
    assert (run_dir / "error.txt").exists()  # the recompute failed beside a stale result: said there too
    stale = {row["run_dir"]: row["detail"] for row in found["left_out_runs"]}
    assert set(stale) == {"pt3/pt3-1_vs_pt3-2_seed1/layer5", "pt3/pt3-1_vs_pt3-7_seed1/layer5"}
    assert "pt3-1/analysis_higher/distance_firstcity_last_and_trans_l5/representations/checkpoint-164073/" \
           "representations.pt" in stale["pt3/pt3-1_vs_pt3-2_seed1/layer5"]


def test_a_store_that_moves_keeps_its_results(store_copy, tmp_path):
    swept, _, _ = sweep_and_report(store_copy, tmp_path)
    assert swept.returncode == 0
    moved = store_copy.with_name("moved")
    store_copy.rename(moved)
    store_copy.symlink_to(moved)  # a link left at the old place: the same store
    swept, reported, found = sweep_and_report(store_copy, tmp_path)
    assert swept.returncode == 0 and "7 jobs already have results for the same settings (skipped)" in swept.stdout
    assert found["runs"] == 7
    assert (tmp_path / "outputs/cka/data_root.txt").read_text() == f"{moved}\nmoved from: {store_copy}\n"

    store_copy.unlink()
    again = moved.with_name("again")
    moved.rename(again)  # moved again, nothing left behind
    swept, reported, found = sweep_and_report(again, tmp_path)
    assert swept.returncode == 0 and "7 jobs already have results for the same settings (skipped)" in swept.stdout
    assert f"its results were computed from {moved}, which is now {again} (the same files)" in swept.stdout
    assert found["runs"] == 7 and found["left_out"] == {}

    other = again.with_name("other")  # another store at a place of the old one's: refused
    shutil.copytree(again, other)
    for tensor in representations_dir(other, *A_FOLDER).glob("*/representations.pt"):
        os.utime(tensor, ns=(0, 0))
    result = run_app(*SWEEP, f"data.root={other}", cwd=tmp_path)
    assert result.returncode == 1 and f"holds results computed from data.root={again}, not data.root={other}" in \
        result.stdout


def test_the_report_names_every_left_out_run_and_counts_failures_as_the_sweep_does(small_store, store_copy, tmp_path):
    shutil.rmtree(representations_dir(store_copy, "revision/exp2/pt3-7_seed1", "inside", 5))  # fails before launch
    tensor = representations_dir(store_copy, "revision/exp2/pt3-3_seed1", "crossing", 5) / FINAL / "representations.pt"
    data = torch.load(tensor, weights_only=True)
    data["representations_flat"][:] = 1.0  # constant: its job fails when it runs
    torch.save(data, tensor)
    swept = run_app(*SWEEP, f"data.root={store_copy}", cwd=tmp_path)
    assert swept.returncode == 1 and "3 of 7 jobs did not finish" in swept.stdout
    result = run_app("report", f"data.root={store_copy}", cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    found = json.loads((tmp_path / "outputs/cka/report/report.json").read_text())
    assert found["runs"] == 4 and found["left_out"] == {"failed": 3}
    reasons = {row["run_dir"]: (row["reason"], row["detail"]) for row in found["left_out_runs"]}
    assert reasons["pt3/pt3-6_vs_pt3-7_seed1/layer5"][1].startswith("before launch: no representation folder")
    assert "constant" in reasons["pt3/pt3-2_vs_pt3-3_seed1/layer5"][1]
    refused = run_app("report", f"data.root={small_store}", cwd=tmp_path)
    assert refused.returncode == 1 and f"report on these with data.root={store_copy} or sweep_dir=" in refused.stdout
    assert "hydra.sweep.dir" not in refused.stdout and "overwrite" not in refused.stdout


def test_cfg_with_a_sweep_shows_its_config(tmp_path):
    result = run_app("-m", "sweep", "--cfg", "hydra", cwd=tmp_path)
    assert result.returncode == 0 and "Traceback" not in result.stdout, result.stdout
    assert "regime: pt2,pt3" in result.stdout  # the study's params


def test_one_colour_scale_per_measure_across_settings_and_regimes():
    """Regimes side by side: one colour is one value; another measure has its own scale."""
    final = pd.DataFrame({"setting": ["default", "rbf0.4", "default", "procrustes"],
                          "measure": ["cka", "cka", "cka", "procrustes"], "regime": ["pt2", "pt2", "pt1", "pt2"],
                          "layer": 5, "layer_b": 5, "similarity": [0.62, 0.93, 0.31, 0.5]})
    assert colour_scales(final) == {("cka", "pt1"): (0.3, 0.95), ("cka", "pt2"): (0.3, 0.95),
                                     ("procrustes", "pt2"): (0.5, 0.5)}


def test_order_and_report_mistakes(small_store, tmp_path):
    two_one = run_app("regime=pt3", "pair=2_1", "seed_pair=orig_1", "layer=5", f"data.root={small_store}",
                      cwd=tmp_path)
    assert two_one.returncode == 0, two_one.stdout
    assert [p.parent.relative_to(tmp_path / "outputs/cka").as_posix() for p in tmp_path.rglob("summary.json")] == [
        "pt3/pt3-1_seed1_vs_pt3-2/layer5"]  # pair=1_2 seed_pair=1_orig: the one folder of that comparison
    result = run_app("report", "regime=pt3", cwd=tmp_path)
    assert result.returncode == 1 and "Error: regime: not a setting of the report; it takes data, sweep_dir" in \
        result.stdout
    result = run_app("report", "data.root=/nonexistent", cwd=tmp_path)
    assert result.returncode == 1 and "Error: data.root=/nonexistent: no such folder" in result.stdout
    inside = tmp_path / "outputs/cka/pt3"
    result = run_app("-m", "sweep", "regime=pt3", "layer=5", f"data.root={small_store}", cwd=inside)
    assert result.returncode == 1 and f"Error: this folder is inside the results dir {tmp_path / 'outputs/cka'}" in \
        result.stdout
    assert not (inside / "outputs").exists()
    result = run_app("regime=pt3", "city_filter='region:^Europe & city_id:^1'", f"data.root={small_store}",
                     cwd=tmp_path)
    assert result.returncode == 1 and "'&' in term 'region:^Europe & city_id:^1' joins nothing" in result.stdout


def test_a_pairing_of_a_few_one_off_runs_is_no_unit():
    """One comparison at a pairing beside a sweep's seven would weigh as much as they do."""
    rows = [dict(setting="default", measure="cka", regime="pt3", layer=5, layer_b=5, model_a="pt3-1", seed_a=a,
                 model_b=f"pt3-{b}", seed_b=s, n_shared_tasks=0, final=True, similarity=v)
            for (a, s), n, v in ((("orig", "1"), 7, 0.8), (("orig", "2"), 7, 0.9), (("1", "orig"), 1, 0.2))
            for b in range(2, 2 + n)]
    groups = group_summary(final_values(pd.DataFrame(rows))).iloc[0]
    assert (groups["n_units"], groups["seed_pairings"], groups["incomplete_pairings"]) == (2, "orig_1 orig_2",
                                                                                          "1_orig")
    assert groups["mean"] == pytest.approx(0.85)
