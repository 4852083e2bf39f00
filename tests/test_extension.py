"""A timeline whose store gained checkpoints is extended, not recomputed: its old rows kept byte
for byte, its values equal a fresh computation of the whole timeline."""

import shutil

import pandas as pd
import pytest

from cka_hydra import run_folder

from conftest import jobs_csv, read_json, representations_dir, run_app, compare_into

PAIR = ["regime=pt2", "pair=1_2", "seed_pair=orig_1", "layer=5", "checkpoints=all"]
SIDES = (("pt2-1", "distance"), ("revision/exp2/pt2-2_seed1", "angle"))


def checkpoint_dirs(root, step):
    return [representations_dir(root, folder, task, 5) / f"checkpoint-{step}" for folder, task in SIDES]


def hide_last_step(store, tmp_path):
    """Move both sides' last checkpoint out of the store (as if not written yet); returns a
    function that puts them back, as training would write them."""
    step = max(int(p.name.split("-")[1]) for p in checkpoint_dirs(store, 0)[0].parent.iterdir())
    moved = []
    for i, folder in enumerate(checkpoint_dirs(store, step)):
        moved.append((tmp_path / f"held{i}", folder))
        shutil.move(folder, moved[-1][0])

    def restore():
        for held, folder in moved:
            shutil.move(held, folder)
    return step, restore


@pytest.mark.parametrize("extra", [[], ["cka.bootstrap=50", "null.permutations=30"], ["cka.kernel=rbf"]],
                         ids=["plain", "intervals", "rbf"])
def test_new_steps_are_computed_alone_and_equal_a_fresh_timeline(store_copy, tmp_path, extra):
    step, restore = hide_last_step(store_copy, tmp_path)
    run_dir = compare_into(tmp_path / "out", *PAIR, f"data.root={store_copy}", *extra)
    before = (run_dir / run_folder.timeline_file("cka")).read_text().splitlines()
    restore()
    assert compare_into(tmp_path / "out", *PAIR, f"data.root={store_copy}", *extra) == run_dir
    after = (run_dir / run_folder.timeline_file("cka")).read_text().splitlines()
    assert after[:len(before)] == before and len(after) == len(before) + 1  # old rows byte for byte
    summary = read_json(run_dir / run_folder.SUMMARY_FILE)
    assert summary["computed_steps"] == [step] and summary["steps"][-1] == step

    fresh_dir = compare_into(tmp_path / "fresh", *PAIR, f"data.root={store_copy}", *extra)
    ours, fresh = (pd.read_csv(d / run_folder.timeline_file("cka")) for d in (run_dir, fresh_dir))
    assert list(ours.columns) == list(fresh.columns)
    assert (ours - fresh).abs().max().max() < 1e-12  # intervals and p-values included: per-step streams
    fresh_summary = read_json(fresh_dir / run_folder.SUMMARY_FILE)
    for key in ("final_value", "mean_value", "std_value", "min_value", "max_value", "inputs"):
        assert summary[key] == pytest.approx(fresh_summary[key], abs=1e-12) if key != "inputs" else \
            summary[key] == fresh_summary[key]


def test_a_replaced_file_makes_the_whole_timeline_computed_again(store_copy, tmp_path):
    step, restore = hide_last_step(store_copy, tmp_path)
    run_dir = compare_into(tmp_path / "out", *PAIR, f"data.root={store_copy}")
    restore()
    first = checkpoint_dirs(store_copy, 0)[0] / "metadata.json"
    first.write_text(first.read_text())  # rewritten since: its stamp changed
    compare_into(tmp_path / "out", *PAIR, f"data.root={store_copy}")
    summary = read_json(run_dir / run_folder.SUMMARY_FILE)
    assert "computed_steps" not in summary and summary["steps"][-1] == step


def test_a_sweep_says_extended(store_copy, tmp_path):
    sweep = ["-m", "sweep", "regime=pt2", "layer=5", "pair=1_2", "seed_pair=orig_1", "checkpoints=all"]
    _, restore = hide_last_step(store_copy, tmp_path)
    assert run_app(*sweep, f"data.root={store_copy}", cwd=tmp_path).returncode == 0
    restore()
    result = run_app(*sweep, f"data.root={store_copy}", cwd=tmp_path)
    assert result.returncode == 0 and "extended 1" in result.stdout, result.stdout
    assert [row["status"] for row in jobs_csv(tmp_path)] == ["extended"]
