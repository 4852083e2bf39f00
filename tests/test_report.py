"""`python -m cka_hydra report` on real sweep folders, and its statistics on a hand-made table."""

import html
import json
import re
import shutil
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from conftest import built_once, final_rows, representations_dir, run_app, run_cli

from cka_hydra import findings
from cka_hydra.figures import files_of, timeline_curves
from cka_hydra.report import write_report
from cka_hydra.results import COLUMNS, collect, leave_out
from cka_hydra.stats import (
    INCOMPLETE, compare_kinds, compare_regimes, comparisons_that_count, final_values, group_summary,
    left_out_pairings, on_common_pairings, unit_means,
)


@pytest.fixture(scope="module")
def sweep_dir(small_store, tmp_path_factory):
    """pt1 and pt3 at layer 5, every model also against itself, full timelines: 126 runs."""
    def build(cwd):
        result = run_app("-m", "sweep", "regime=pt1,pt3", "layer=5", "hydra.sweeper.self_pairs=true",
                         "checkpoints=all", f"data.root={small_store}", "hydra.launcher.n_jobs=2", cwd=cwd)
        assert result.returncode == 0, result.stdout

    return built_once(tmp_path_factory, "report", build) / "outputs/cka"


def report(sweep_dir, cwd, *args, run=run_app):
    return run("report", f"sweep_dir={sweep_dir}", *args, cwd=cwd)


def test_report_writes_every_file(sweep_dir, tmp_path):
    out = tmp_path / "report"
    result = report(sweep_dir, tmp_path, f"out_dir={out}", run=run_cli)  # the real command, once
    assert result.returncode == 0, result.stdout
    assert f"read 126 runs from {sweep_dir}; left out: none" in result.stdout

    results = pd.read_csv(out / "cka_results.csv", dtype={"seed_a": str, "seed_b": str})
    assert list(results.columns) == COLUMNS
    assert len(results) == 126 * 3
    for run_dir, rows in results.groupby("run_dir"):
        timeline = pd.read_csv(f"{run_dir}/cka_timeline.csv")
        assert rows["step"].tolist() == timeline["step"].tolist()
        assert rows["value"].tolist() == rows["similarity"].tolist() == timeline["cka"].tolist()
        summary = json.loads(open(f"{run_dir}/summary.json").read())
        final = rows[rows["final"]]
        assert final["value"].tolist() == [summary["final_cka"]] == [summary["final_value"]]
        assert final[["model_a", "seed_a", "model_b", "seed_b"]].iloc[0].tolist() == [
            summary["model_a"], summary["seed_a"], summary["model_b"], summary["seed_b"]]
        assert summary["exp1"] == summary["model_a"] + ("" if summary["seed_a"] == "orig" else
                                                        f"_seed{summary['seed_a']}")
    assert set(results["setting"]) == {"all"}  # checkpoints=all: the run folders' label
    assert set(results["measure"]) == {"cka"} and (results["layer_b"] == 5).all()
    assert (results["n_shared_tasks"] == 0).sum() == (21 * 3 + 7 * 3) * 3  # the disjoint pairs' rows

    # named after the setting, which is not the default
    images = [f"{kind}_{regime}_layer5_all.png" for kind in ("matrix", "models") for regime in ("pt1", "pt3")]
    images += ["trends_all.png", "intra_inter_all.png", "timelines_all.png"]
    for name in images:
        image = matplotlib.image.imread(out / name)
        assert image.shape[0] >= 300 and image.shape[1] >= 400
        assert image[..., :3].std() > 0.05  # not blank
    page = (out / "index.html").read_text()
    linked = re.findall(r"<img alt='[^']+' src='([^']+)'", page)
    assert sorted(linked) == sorted(images) and all((out / name).is_file() for name in linked)  # beside it
    assert len(page.encode()) < 100_000
    # one measure: no conclusions side by side, and nothing that links to them
    assert not any((out / name).exists() for name in ("conclusions.csv", "measure_agreement.csv",
                                                      "conclusions_trends.png", "conclusions.html"))
    assert "conclusions" not in page and "conclusions" not in result.stdout
    assert not any("conclusions" in name or "agreement" in name
                   for name in json.loads((out / "report.json").read_text())["files"])

    stats = pd.read_csv(out / "stats.csv")
    groups = stats[stats["table"] == "groups"]
    assert set(zip(groups["regime"], groups["kind"])) == {
        ("pt1", "different-task"), ("pt1", "same-task cross-seed"),
        ("pt3", "different-task"), ("pt3", "same-task cross-seed")}
    assert groups["n_units"].tolist() == [3, 3, 3, 3]
    regimes = stats[stats["table"] == "regime vs regime"]
    assert regimes[["regime_a", "regime_b"]].values.tolist() == [["pt1", "pt3"]]
    assert "seed pairing" in (out / "stats.md").read_text()

    # the page leads with the findings, over models and seeds and over seed pairings, the method a click away
    said = "With this study's 3 seed pairings (1_2, orig_1, orig_2) a seed-pairing test has at most 2 degrees"
    assert said in html.unescape(page) and said in (out / "stats.md").read_text()
    assert page.index("<h2>Findings [all: cka]</h2>") < page.index("<img") < page.index("<details><summary>Method")
    lead = page[page.index("<h2>Findings"):page.index("<h2>Figures")]
    for claim in ("Trend over the number of training tasks", "Same-task cross-seed against different-task",
                  "Regime against regime"):
        assert f"<h3>{claim}" in lead
    assert "95% CI over models and seeds" in lead and "95% CI over seed pairings" in lead
    # what the study lacks, and what it needs
    assert "Similarity against task overlap (n_shared_tasks): not in this study; it needs model pairs that " \
           "share some training tasks beside pairs that share none: a sweep with allow_overlap=true." in lead
    assert "Blank cells are comparisons this study did not run: each pair of models is compared at the seed " \
           "pairings 1_2, orig_1, orig_2 only" in page
    trend = stats[stats["table"] == "trends over training tasks"].iloc[0]
    assert trend["ms_ci_low"] < trend["slope"] < trend["ms_ci_high"] and trend["n_models"] == 14


def test_default_out_dir_and_failed_runs_are_left_out(sweep_dir, tmp_path):
    copy = tmp_path / "cka"
    shutil.copytree(sweep_dir, copy)
    runs = sorted(p.parent for p in copy.rglob("summary.json"))
    (runs[0] / "summary.json").unlink()
    (runs[0] / "error.txt").write_text("failed")
    (runs[1] / "summary.json").unlink()  # killed before it finished
    result = report(copy, tmp_path)
    assert result.returncode == 0, result.stdout
    assert "read 124 runs" in result.stdout and "left out: 1 failed, 1 incomplete" in result.stdout
    assert len(pd.read_csv(copy / "report" / "cka_results.csv")) == 124 * 3
    # the report's own folder is not read as a run next time (as write_report reads the sweep)
    again, left_out, _, _ = collect(copy, exclude=copy / "report")
    assert again["run_dir"].nunique() == 124 and left_out == {"failed": 1, "incomplete": 1}


def test_settings_are_reported_separately_and_each_report_is_written_afresh(small_store, tmp_path):
    result = run_app("-m", "sweep", "regime=pt3", "layer=5", "seed_pair=orig_1", "cka.kernel=linear,rbf",
                     f"data.root={small_store}", "hydra/launcher=basic", cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    out = tmp_path / "outputs/cka/report"
    out.mkdir()
    (out / "notes.txt").write_text("the user's own file")
    result = run_app("report", f"data.root={small_store}", cwd=tmp_path)  # finds the sweep on that data root
    assert result.returncode == 0, result.stdout
    assert "setting default: 7 runs (every setting at its default)" in result.stdout
    assert "setting rbf0.4: 7 runs (cka.kernel=rbf)" in result.stdout
    assert "results of 2 settings: each is reported on its own, never pooled" in result.stdout
    suffixed = ["matrix_pt3_layer5_rbf0.4.png", "models_pt3_layer5_rbf0.4.png"]
    for name in suffixed + ["matrix_pt3_layer5.png"]:  # the default setting's have no suffix
        assert (out / name).is_file()
    groups = pd.read_csv(out / "stats.csv").query("table == 'groups'")
    assert sorted(groups["setting"]) == ["default", "rbf0.4"]
    assert groups["n_comparisons"].tolist() == [7, 7]
    found = json.loads((out / "report.json").read_text())
    assert found["settings"]["rbf0.4"] == {"runs": 7, "settings": "cka.kernel=rbf", "figures": True,
                                          "final_steps": {"164073": 7}}
    assert "cka.kernel=rbf" in (out / "index.html").read_text()

    for run_dir in (tmp_path / "outputs/cka/pt3").glob("*/layer5-rbf0.4"):
        shutil.rmtree(run_dir)
    again = run_app("report", f"sweep_dir={tmp_path / 'outputs/cka'}", cwd=tmp_path)
    assert again.returncode == 0, again.stdout
    assert not any((out / name).exists() for name in suffixed)  # no stale figure of the removed setting
    assert (out / "matrix_pt3_layer5.png").is_file()
    assert not (out / "trends.png").exists()  # one regime: nothing to draw against the number of tasks
    assert (out / "notes.txt").read_text() == "the user's own file"


def test_a_report_run_again_draws_only_what_changed_and_equals_a_fresh_one(small_store, tmp_path):
    """A figure drawn from the same rows is kept as it is (figures.reusable); one whose rows
    changed, or whose files are incomplete, is drawn again; figures no longer drawn are removed.
    The report that reuses equals, file for file and byte for byte, one written afresh."""
    result = run_app("-m", "sweep", "regime=pt1,pt3", "layer=5", "seed_pair=orig_1", f"data.root={small_store}",
                     "hydra/launcher=basic", cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    sweep, out = tmp_path / "outputs/cka", tmp_path / "out"

    def files(folder):
        return {name: (folder / name).stat().st_ino for name in json.loads((folder / "report.json").read_text())["files"]}

    assert report(sweep, tmp_path, f"out_dir={out}").returncode == 0
    first = files(out)
    figures_ = [name for name in first if f"{Path(name).stem}.png" in first]
    assert len(figures_) >= 12
    (out / "matrix_pt3_layer5.pdf").unlink()  # an incomplete figure: drawn again
    assert report(sweep, tmp_path, f"out_dir={out}").returncode == 0
    again = files(out)
    redrawn = {name for name in figures_ if again[name] != first[name]}
    assert redrawn == {"matrix_pt3_layer5.png", "matrix_pt3_layer5.pdf", "matrix_pt3_layer5.csv"}

    result = report(sweep, tmp_path, f"out_dir={out}", "exclude=[pt1-7]")  # pt1's rows change
    assert result.returncode == 0, result.stdout
    fresh = tmp_path / "fresh"
    assert report(sweep, tmp_path, f"out_dir={fresh}", "exclude=[pt1-7]").returncode == 0
    kept, written = files(out), files(fresh)
    assert set(kept) == set(written)
    for name in written:
        if name != "index.html":  # (it names its folder)
            assert (out / name).read_bytes() == (fresh / name).read_bytes(), name
    assert {name for name in figures_ if kept[name] != again[name]} >= set(files_of("matrix_pt1_layer5.png"))
    leftovers = {p.name for p in out.iterdir()} - set(kept) - {"report.json", "report.log", ".hydra"}
    assert not leftovers  # no figure of the earlier reports outlives its data


def hand_made():
    """pt2 layer 5: different-task and same-task values per seed pairing; pt3 different-task."""
    rows = []
    values = {
        ("pt2", "different"): {"orig_1": [0.5, 0.7], "orig_2": [0.8], "1_2": [0.7, 0.9]},
        ("pt2", "same"): {"orig_1": [0.9], "orig_2": [0.95], "1_2": [0.85]},
        ("pt3", "different"): {"orig_1": [0.9], "orig_2": [0.85], "1_2": [0.95]},
    }
    for (regime, kind), by_pairing in values.items():
        for pairing, ckas in by_pairing.items():
            seed_a, seed_b = pairing.split("_")
            for i, cka in enumerate(ckas):
                b = 1 if kind == "same" else 2 + i
                rows.append(dict(setting="linear", measure="cka", regime=regime, layer=5, layer_b=5,
                                 model_a=f"{regime}-1", seed_a=seed_a, model_b=f"{regime}-{b}", seed_b=seed_b,
                                 n_shared_tasks=0 if kind == "different" else 2, final=True, similarity=cka,
                                 measure_kind="similarity", chance=0.02 if kind == "same" else 0.04,
                                 null_mean=float("nan"), p_value=float("nan")))
    return final_values(pd.DataFrame(rows))


def test_statistics_equal_hand_computed_numbers():
    final = hand_made()
    groups = group_summary(final).set_index(["regime", "kind"])
    different = groups.loc[("pt2", "different-task")]
    # seed-pairing means 0.6, 0.8, 0.8: mean 0.7333, sd 0.11547, t(0.975, 2) = 4.302653
    assert different["n_comparisons"] == 5 and different["n_units"] == 3
    assert different["mean"] == pytest.approx(0.733333, abs=1e-6)
    half = 4.302653 * 0.1154701 / np.sqrt(3)
    assert different["ci_low"] == pytest.approx(0.733333 - half, abs=1e-5)
    assert different["ci_high"] == pytest.approx(0.733333 + half, abs=1e-5)
    assert different["std"] == pytest.approx(np.std([0.5, 0.7, 0.8, 0.7, 0.9], ddof=1), abs=1e-12)
    assert different["chance"] == pytest.approx(0.04) and different["n_tested"] == 0

    kinds = compare_kinds(final).iloc[0]
    # paired differences 0.3, 0.15, 0.05: mean 0.16667, sd 0.125831; d_z = 1.32453, t = 2.29416,
    # two-sided p with 2 df: 1 - t / sqrt(t^2 + 2) = 0.148741
    assert kinds["difference"] == pytest.approx(0.166667, abs=1e-6)
    assert kinds["effect_size_dz"] == pytest.approx(1.32453, abs=1e-5)
    assert kinds["t"] == pytest.approx(2.29416, abs=1e-5)
    assert kinds["p"] == pytest.approx(0.148741, abs=1e-5)
    assert (kinds["same_task_chance"], kinds["different_task_chance"]) == pytest.approx((0.02, 0.04))

    regimes = compare_regimes(final).iloc[0]
    # pt2 means 0.6, 0.8, 0.8 against pt3 0.9, 0.85, 0.95 (sd 0.05): difference -0.166667,
    # Welch t = -0.166667 / sqrt(0.0133333 / 3 + 0.0025 / 3) = -2.29416,
    # Hedges' g = -0.166667 / sqrt((0.0133333 + 0.0025) / 2) * (1 - 3 / 15) = -1.49854
    assert (regimes["regime_a"], regimes["regime_b"]) == ("pt2", "pt3")
    assert regimes["difference"] == pytest.approx(-0.166667, abs=1e-6)
    assert regimes["t"] == pytest.approx(-2.29416, abs=1e-5)
    assert regimes["hedges_g"] == pytest.approx(-1.49854, abs=1e-5)


def with_more_pairings(final):
    """hand_made's table, with pt2's different-task comparisons also measured over six more seed
    pairings (as a seed_policy=all sweep without self pairs adds)."""
    extra = final[(final["regime"] == "pt2") & (final["seed_pairing"] == "orig_1") & (final["kind"] == "different-task")]
    more = [extra.assign(seed_a=a, seed_b=b, seed_pairing=f"{a}_{b}", similarity=extra["similarity"] + 0.1)
            for a, b in (("1", "orig"), ("2", "orig"), ("2", "1"), ("orig", "orig"), ("1", "1"), ("2", "2"))]
    return pd.concat([final, *more], ignore_index=True)


def test_pairings_added_to_one_group_change_its_mean_but_no_comparison():
    """The issue's finding: after a seed_policy=matrix sweep of pt2, pt2 was tested over 9 pairings
    against pt3's 3, the trends and intra/inter points moved, and nothing said so."""
    before, after = hand_made(), with_more_pairings(hand_made())
    for table in (compare_regimes, compare_kinds):
        assert table(after).drop(columns=["left_out"], errors="ignore").equals(
            table(before).drop(columns=["left_out"], errors="ignore"))
    regimes = compare_regimes(after).iloc[0]
    assert regimes["seed_pairings"] == "1_2 orig_1 orig_2" and regimes["n_units_a"] == regimes["n_units_b"] == 3
    assert regimes["left_out"] == "1_1 1_orig 2_1 2_2 2_orig orig_orig"
    groups = group_summary(after).set_index(["regime", "kind"])
    assert groups.loc[("pt2", "different-task"), "n_units"] == 9  # its own mean, labelled with its n
    assert groups.loc[("pt2", "different-task"), "mean"] != group_summary(before).set_index(
        ["regime", "kind"]).loc[("pt2", "different-task"), "mean"]
    units = unit_means(after[after["kind"] == "different-task"], ["regime"])
    shared, common = on_common_pairings(units, ["regime"])
    assert common == ["1_2", "orig_1", "orig_2"] and len(shared) == 6


ONE_OFF_RUNS = {  # one of each kind of comparison, each in a setting of its own
    "an instance with itself": ["pair=1_1", "seed_pair=orig_orig", "layer=5", "cka.debiased=true"],
    "one model, two seeds": ["pair=1_1", "seed_pair=orig_1", "layer=5", "checkpoints=all"],
    "one instance, two layers": ["pair=1_1", "seed_pair=orig_orig", "layer=3", "layer_b=5", "measure=procrustes"],
    "a shared task": ["pair=1_3", "seed_pair=orig_1", "layer=5", "allow_overlap=true", "cka.kernel=rbf"],
    "two models, two layers": ["pair=1_2", "seed_pair=orig_1", "layer=3", "layer_b=5", "measure=pca_cka"],
}


@pytest.fixture(scope="module")
def study_with_one_offs(small_store, tmp_path_factory):
    """A narrow study (pt3 at layer 5, one seed pairing: 7 runs) and, in its folder, the one-off runs."""
    def build(cwd):
        result = run_app("-m", "sweep", "regime=pt3", "layer=5", "seed_pair=orig_1", f"data.root={small_store}",
                         "hydra/launcher=basic", cwd=cwd)
        assert result.returncode == 0, result.stdout
        runs = {}
        for kind, overrides in ONE_OFF_RUNS.items():
            result = run_app("regime=pt3", *overrides, f"data.root={small_store}", cwd=cwd)
            assert result.returncode == 0, result.stdout
            runs[kind] = re.search(r" in (\S+)$", result.stdout.strip().splitlines()[-1]).group(1)
        (cwd / "one_offs.json").write_text(json.dumps(runs))

    cwd = built_once(tmp_path_factory, "one_offs", build)
    return cwd / "outputs/cka", {kind: Path(path) for kind, path in json.loads((cwd / "one_offs.json").read_text()).items()}


def test_one_off_runs_in_a_study_folder_are_listed_without_figures(study_with_one_offs, tmp_path):
    """The issue's finding: one self comparison in the study folder broke every later report."""
    results_dir, _ = study_with_one_offs
    result = run_app("report", f"sweep_dir={results_dir}", f"out_dir={tmp_path / 'report'}", cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    found = json.loads((tmp_path / "report/report.json").read_text())
    assert {name: row["figures"] for name, row in found["settings"].items()} == {
        "default": True, "debiased": False, "all": False, "procrustes": False, "rbf0.4": False, "pca_cka": False}
    assert all("_debiased" not in name and "_procrustes" not in name for name in found["files"])
    assert "fewer than 7 runs" in (tmp_path / "report/index.html").read_text()


@pytest.mark.parametrize("kinds", [[kind] for kind in ONE_OFF_RUNS] + [list(ONE_OFF_RUNS)],
                         ids=[*ONE_OFF_RUNS, "all together"])
def test_the_report_survives_any_mix_of_one_off_runs(study_with_one_offs, tmp_path, kinds):
    """Each kind of one-off run alone in a folder, and all together, with figures forced (min_runs=1)."""
    _, runs = study_with_one_offs
    for kind in kinds:
        shutil.copytree(runs[kind], tmp_path / "cka" / runs[kind].relative_to(runs[kind].parents[2]))
    found = write_report(tmp_path / "cka", tmp_path / "report", min_runs=1)
    assert found["runs"] == len(kinds) and set(found["files"]) >= {"cka_results.csv", "stats.md", "index.html"}
    # all together, three measures: their conclusions side by side, though no comparison is in every setting
    assert ("conclusions.html" in found["files"]) == (len(kinds) > 1)
    for name in found["files"]:
        assert (tmp_path / "report" / name).is_file()


def test_timelines_follow_one_set_of_comparisons_and_reach_each_ones_last_step():
    """The curve proper is over the steps all comparisons hold; the later steps (a study still
    growing) follow one fixed set as well, those that hold the newest step, from their own value
    at the last step all hold: a change in who is averaged never shows as a change over training."""
    rows = [("r1", 0, 0.1), ("r1", 10, 0.5), ("r1", 20, 0.9), ("r2", 0, 0.3), ("r2", 10, 0.7), ("r3", 0, 0.2),
            ("r3", 10, 0.3), ("r3", 20, 0.4)]
    results = pd.DataFrame(rows, columns=["run_dir", "step", "similarity"]).assign(regime="pt2", layer=5)
    curves = timeline_curves(results)
    assert curves["step"].tolist() == [0, 10, 20] and curves["full"].tolist() == [True, True, False]
    assert curves["mean"].tolist()[:2] == pytest.approx([0.2, 0.5]) and curves["n_at"].tolist() == [3, 3, 2]
    assert curves["tail"].isna().tolist() == [True, False, False]
    assert curves["tail"].tolist()[1:] == pytest.approx([0.4, 0.65])  # r1 and r3 alone, at 10 and at 20
    assert set(curves["n_tail"]) == {2} and set(curves["n"]) == {3}
    whole = timeline_curves(results[results["run_dir"] != "r2"])  # every step held by all: no tail
    assert whole["full"].all() and whole["tail"].isna().all()


def test_matrices_say_when_final_steps_differ(store_copy, tmp_path):
    shutil.rmtree(representations_dir(store_copy, "revision/exp2/pt3-2_seed1", "compass", 5) / "checkpoint-164073")
    assert run_app("-m", "sweep", "regime=pt3", "layer=5", "seed_pair=orig_1", f"data.root={store_copy}",
                   "hydra/launcher=basic", cwd=tmp_path).returncode == 0
    result = run_app("report", f"data.root={store_copy}", cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    assert "pt3, layer 5 [default]: comparisons at different final steps: 6 at step 164073, 1 at step 82036" \
        in result.stdout
    final = pd.read_csv(tmp_path / "outputs/cka/report/cka_results.csv").query("final")
    assert sorted(final["step"].value_counts().tolist()) == [1, 6]
    report = tmp_path / "outputs/cka/report"  # the statistics say what they pool
    assert json.loads((report / "report.json").read_text())["settings"]["default"]["final_steps"] == {
        "82036": 1, "164073": 6}
    assert "- default: 1 at step 82036, 6 at step 164073 (pt3: 1 at step 82036, 6 at step 164073)" in (
        report / "stats.md").read_text()


def test_an_exclusion_reason_may_hold_semicolons_and_colons():
    """The `excluded` column joins `instance: reason` with `; `: a reason of that shape read back whole."""
    rows = pd.DataFrame({"model_a": ["pt1-1", "pt1-1"], "instance_a": ["pt1-1", "pt1-1"],
                         "model_b": ["pt1-7", "pt1-2"], "instance_b": ["pt1-7_seed1", "pt1-2"], "run_dir": ["x", "y"],
                         "excluded": ["pt1-7_seed1: failed; retried: no luck", ""]})
    kept, excluded = leave_out(rows, {})
    assert kept["run_dir"].tolist() == ["y"]
    assert excluded == {"pt1-7_seed1": {"reason": "failed; retried: no luck", "runs": 1}}


def test_one_rule_selects_the_comparisons_that_count():
    """comparisons_that_count, the report's one like-for-like rule: a pairing with fewer than half
    as many comparisons as its group's fullest, or as its matrix's fullest group's fullest, is left
    out; a sweep's pairings all count, whatever its seed policy, and a few failed runs."""
    study = [("orig_1", 0.7), ("orig_2", 0.8), ("1_2", 0.75)]
    cross = ["orig_1", "1_orig", "orig_2", "2_orig", "1_2", "2_1"]
    final = final_values(pd.DataFrame(final_rows(
        *[("default", "pt3", 5, 5, "different", p, 7, v) for p, v in study],
        *[("default", "pt3", 5, 5, "same", p, 7, 0.9) for p, _ in study],  # self_pairs=true
        ("default", "pt3", 5, 5, "different", "2_1", 1, 0.95),  # the one-off run
        ("default", "pt3", 5, 5, "shared", "2_orig", 1, 0.6),  # a one-off of another kind at a pairing none here has
        ("default", "pt3", 5, 5, "shared", "orig_1", 1, 0.6),  # and at one of the study's: a cell of its own
        ("default", "pt3", 3, 5, "different", "orig_1", 7, 0.5),  # a layer map, three runs of orig_2 failed
        ("default", "pt3", 3, 5, "different", "orig_2", 4, 0.5),
        *[("cross", "pt3", 5, 5, "different", p, 7, 0.7) for p in cross],  # seed_policy=cross, self_pairs=true:
        *[("cross", "pt3", 5, 5, "same", p, 7, 0.9) for p, _ in study],  # one model's seeds, each pair once
        *[("matrix", "pt3", 5, 5, "different", p, 7, 0.7) for p in [*cross, "1_1", "2_2"]],  # seed_policy=matrix,
        ("matrix", "pt3", 5, 5, "different", "orig_orig", 6, 0.7),  # one run failed
        *[("matrix", "pt3", 5, 5, "same", p, 7, 0.9) for p, _ in study],
    )))
    counted, left_out = comparisons_that_count(final)
    assert len(counted) + len(left_out) == len(final) and set(left_out["why"]) == {INCOMPLETE}
    assert sorted(zip(left_out["setting"], left_out["kind"], left_out["seed_pairing"])) == [
        ("default", "different-task", "2_1"), ("default", "shared-task", "2_orig")]
    pairings = counted.groupby(["setting", "layer"])["seed_pairing"].nunique().to_dict()
    assert pairings == {("cross", 5): 6, ("default", 3): 2, ("default", 5): 3, ("matrix", 5): 9}
    again, none = comparisons_that_count(counted)  # its own result is left as it is
    assert again.equals(counted) and none.empty
    assert left_out_pairings(left_out)["text"].tolist() == [
        "2_1 (1 different-task comparison of pt3 at layer 5 [default])",
        "2_orig (1 shared-task comparison of pt3 at layer 5 [default])"]

    groups = group_summary(counted, left_out).set_index(["setting", "layer", "kind"])
    assert groups.equals(group_summary(final).set_index(["setting", "layer", "kind"]))  # selected by the same rule
    different = groups.loc[("default", 5, "different-task")]
    assert (different["n_comparisons"], different["n_units"], different["seed_pairings"],
            different["incomplete_pairings"]) == (21, 3, "1_2 orig_1 orig_2", "2_1")
    assert different["std"] == pytest.approx(final.query("setting == 'default' and layer == 5 and kind == "
                                                         "'different-task' and seed_pairing != '2_1'")["similarity"]
                                             .std(ddof=1), abs=1e-15)
    assert groups.loc[("default", 5, "shared-task"), ["n_comparisons", "incomplete_pairings"]].tolist() == [1, "2_orig"]
    assert groups.loc[("cross", 5, "different-task"), "n_units"] == 6


# the one-off run, in the setting of the study below (checkpoints=all: its timelines)
ONE_OFF = ["regime=pt3", "pair=1_2", "seed_pair=2_1", "layer=5", "checkpoints=all"]


def sorted_rows(data: pd.DataFrame) -> pd.DataFrame:
    """A figure's rows in one order, whatever rows the results table held beside them."""
    by = [c for c in ("run_dir", "step", "layer", "layer_b", "regime") if c in data]
    return data.sort_values(by).reset_index(drop=True) if by else data


def test_a_one_off_run_at_another_pairing_changes_no_number_and_is_named(small_store, tmp_path, figure_data):
    """The issue's finding: one run at another seed pairing in the study's folder was left out of
    the tests as incomplete, yet the model matrix's pt3-1/pt3-2 cell averaged 4 pairings where
    every other cell averaged 3, the groups table's n_comparisons, std and chance moved with it,
    and the page said nothing. Here every figure the report draws (matrices, trends, intra/inter,
    a layer map, timelines) and every table is the same before and after, number for number."""
    result = run_app("-m", "sweep", "regime=pt2,pt3", "pair=1_2,2_3", "layer=5", "layer_b=3,5",
                     "hydra.sweeper.self_pairs=true", "checkpoints=all", f"data.root={small_store}",
                     "hydra/launcher=basic", cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    results_dir = tmp_path / "outputs/cka"
    before = write_report(results_dir, tmp_path / "before")
    drawn = dict(figure_data)
    figure_data.clear()
    result = run_app(*ONE_OFF, f"data.root={small_store}", cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    one_off = results_dir / "pt3/pt3-1_seed2_vs_pt3-2_seed1/layer5-all"
    after = write_report(results_dir, tmp_path / "after")
    assert (before["runs"], after["runs"]) == (60, 61)  # read, then left out

    images = [name for name in before["files"] if name.endswith(".png")]
    assert sorted(images) == sorted(drawn) == sorted(figure_data) == sorted(
        [f"{kind}_{regime}_layer5_all.png" for kind in ("matrix", "models") for regime in ("pt2", "pt3")]
        + ["trends_all.png", "intra_inter_all.png", "layer_map_all.png", "timelines_all.png"])
    for name in images:  # the same numbers handed to every figure, and the same figure
        pd.testing.assert_frame_equal(sorted_rows(figure_data[name]), sorted_rows(drawn[name]), check_exact=True)
        # the same pixels (the PNGs' bytes differ by the digest of the rows each was handed: figures.reusable)
        assert np.array_equal(matplotlib.image.imread(tmp_path / "after" / name),
                              matplotlib.image.imread(tmp_path / "before" / name)), name
    models = figure_data["models_pt3_layer5_all.png"]
    cell = models.loc[models.index.str.startswith("pt3-1:"), models.columns.str.startswith("pt3-2:")].iat[0, 0]
    results = pd.read_csv(tmp_path / "after/cka_results.csv", dtype={"seed_a": str, "seed_b": str})
    pair = results.query("final and model_a == 'pt3-1' and model_b == 'pt3-2' and layer == 5 and layer_b == 5")
    assert len(pair) == 4 and str(one_off) in set(pair["run_dir"])  # in the table, in no figure
    assert cell == pytest.approx(pair.loc[pair["run_dir"] != str(one_off), "similarity"].mean(), abs=1e-15)
    assert cell != pytest.approx(pair["similarity"].mean(), abs=1e-6)  # which the run would have moved

    stats_before, stats_after = (pd.read_csv(tmp_path / side / "stats.csv") for side in ("before", "after"))
    named = stats_after.pop("incomplete_pairings")
    stats_before.pop("incomplete_pairings")
    pd.testing.assert_frame_equal(stats_after, stats_before, check_exact=True)  # every table, every number
    groups = stats_after[stats_after["table"] == "groups"]
    assert groups[["n_comparisons", "std", "mean", "chance"]].notna().all().all()
    group = (groups["regime"] == "pt3") & (groups["layer"] == 5) & (groups["layer_b"] == 5) & (
        groups["kind"] == "different-task")
    assert named[group[group].index].tolist() == ["2_1"] and named.drop(group[group].index).isna().all()

    assert before["left_out_pairings"] == []
    assert after["left_out_pairings"] == [dict(setting="all", measure="cka", regime="pt3", layer=5, layer_b=5,
                                               kind="different-task", seed_pairing="2_1", comparisons=1,
                                               why=INCOMPLETE, runs=[str(one_off)])]
    assert json.loads((tmp_path / "after/report.json").read_text())["left_out_pairings"] == after["left_out_pairings"]
    said = "Left out as an incomplete seed pairing: 2_1 (1 different-task comparison of pt3 at layer 5 [all])."
    for page in ("index.html", "stats.md"):
        assert said in (tmp_path / "after" / page).read_text()
        assert "Seed pairings left out: none" in (tmp_path / "before" / page).read_text()
    assert "left out: none; 1 comparison at incomplete seed pairings (see Runs read)." in (
        tmp_path / "after/index.html").read_text()


def test_the_page_says_what_the_design_run_allows_and_what_a_missing_analysis_needs():
    final = pd.DataFrame({"seed_pairing": ["orig_1", "orig_2", "1_orig", "1_2", "2_orig", "2_1"]})
    said = findings.pairings_sentence(final)
    assert said.startswith("With this study's 6 seed pairings (1_2, 1_orig, 2_1, 2_orig, orig_1, orig_2) a "
                           "seed-pairing test has at most 5 degrees of freedom; pairings that share a seed")
    assert "single seed pairing (orig_1)" in findings.pairings_sentence(final.iloc[:1])
    none = {name: pd.DataFrame() for name in ("trends over training tasks", "same-task vs different-task",
                                              "regime vs regime")}
    lines = findings.missing(none, pd.DataFrame())
    assert "Same-task cross-seed against different-task: not in this study; it needs each model compared with " \
           "itself at another seed: add hydra.sweeper.self_pairs=true to the sweep." in lines
    assert len(lines) == 4
