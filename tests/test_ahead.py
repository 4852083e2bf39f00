"""A worker computes its chunk's comparisons ahead, together, step by step: each instance-step is
prepared once for all of them, and every value is the one the comparison gets computed alone."""

import csv
import json
from pathlib import Path

import torch

from cka_hydra import cities, engine, run_folder
from conftest import compare_into, jobs_csv, representations_dir, run_app, save_checkpoint

SWEEP = ["-m", "sweep", "regime=pt3", "layer=5", "checkpoints=all"]


def timeline(run_dir):
    with open(run_dir / run_folder.timeline_file("cka"), newline="") as f:
        return list(csv.DictReader(f))


def test_each_instance_step_is_prepared_once_and_every_value_is_as_computed_alone(small_store, tmp_path):
    settings = ["cka.bootstrap=20", "null.permutations=9"]
    engine.CACHE.clear()
    cities.clear()
    misses = engine.CACHE.misses
    # one worker: joblib runs the chunk in this process, where the engine's counts can be read
    result = run_app(*SWEEP, *settings, f"data.root={small_store}", "hydra.launcher.n_jobs=1", cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    rows = jobs_csv(tmp_path)
    assert len(rows) == 21 and {row["status"] for row in rows} == {"done"}
    summaries = [run_folder.read_result(tmp_path / "outputs/cka" / row["run_dir"]) for row in rows]
    instance_steps = {(summary[f"folder_{side}"], step) for summary in summaries for side in "ab"
                      for step in summary["steps"]}
    assert engine.CACHE.misses - misses == len(instance_steps)  # not 2 x 21 x steps
    # each step's instances let go once its comparisons were computed, and each job took its timeline
    assert not [key for key in engine.CACHE.entries if key[0].startswith(str(small_store))]
    assert not engine._AHEAD
    for row, summary in zip(rows, summaries):
        alone = compare_into(tmp_path / "alone", f"regime={summary['regime']}", f"pair={row['pair']}",
                             f"seed_pair={row['seed_pair']}", "layer=5", "checkpoints=all", *settings,
                             f"data.root={small_store}", "cache_mb=0")
        assert timeline(tmp_path / "outputs/cka" / row["run_dir"]) == timeline(alone), row["run_dir"]
        assert summary["seconds"] > 0


def test_a_comparison_that_fails_ahead_fails_alone_with_its_own_message(store_copy, tmp_path):
    # pt3-2_seed1 takes part in two jobs: (1_2, orig_1) and (2_3, 1_2); a NaN at its second step
    folder = sorted(representations_dir(store_copy, "revision/exp2/pt3-2_seed1", "compass", 5).iterdir())[1]
    data = torch.load(folder / "representations.pt", weights_only=True)
    flat = data["representations_flat"].clone()
    flat[3, 0] = float("nan")
    save_checkpoint(folder, {"representations_flat": flat}, json.loads((folder / "metadata.json").read_text())
                    ["city_info"])
    result = run_app(*SWEEP, f"data.root={store_copy}", "hydra.launcher.n_jobs=2", cwd=tmp_path)
    assert result.returncode == 1
    assert "2 of 21 jobs did not finish" in result.stdout
    failed = {(row["pair"], row["seed_pair"]): row["error"] for row in jobs_csv(tmp_path) if row["status"] != "done"}
    assert failed.keys() == {("1_2", "orig_1"), ("2_3", "1_2")}
    assert all("1 NaN/Inf values among the compared cities" in error for error in failed.values())


def test_the_measures_of_one_comparison_read_its_instances_once(small_store, tmp_path, monkeypatch):
    """A sweep over measures launches each comparison's measures together: every instance-step's
    rows are read once, and each measure prepares its own state from them."""
    engine.CACHE.clear()
    cities.clear()
    misses, reads = engine.CACHE.misses, []
    monkeypatch.setattr(engine, "_read", lambda instance, *args, _read=engine._read: reads.append(instance.folder)
                        or _read(instance, *args))
    result = run_app("-m", "sweep", "regime=pt3", "layer=5", "measure=cka,shape,rsa", f"data.root={small_store}",
                     "hydra.launcher.n_jobs=1", cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    rows = jobs_csv(tmp_path)
    assert len(rows) == 3 * 21 and {row["status"] for row in rows} == {"done"}
    summaries = [run_folder.read_result(tmp_path / "outputs/cka" / row["run_dir"]) for row in rows]
    assert {summary["measure"] for summary in summaries} == {"cka", "shape", "rsa"}
    checkpoints = {Path(summary["data_root"]) / summary["inputs"][f"representations_{side}"] / f"checkpoint-{step}"
                   for summary in summaries for side in "ab" for step in summary["steps"]}
    assert sorted(reads) == sorted(checkpoints)  # each instance-step's rows read once, for the three measures
    assert engine.CACHE.misses - misses == 3 * len(checkpoints)  # a state per measure and instance-step
