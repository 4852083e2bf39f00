"""A measure of the user's own, from a config dir outside the checkout: it plans, computes, fails
alone and reports like a built-in."""


import numpy as np
import pandas as pd
import pytest
from scipy.spatial import procrustes

from cka_hydra import run_folder

from conftest import jobs_csv, reference_from_files, representations_dir, run_app, run_cli

SWEEP = ["-m", "sweep", "regime=pt3", "layer=5", "seed_pair=orig_1"]
MODULE = '''
import torch


def full_procrustes(x, y):
    """Procrustes disparity of the whole representations, as scipy computes it."""
    x = x - x.mean(0)
    y = y - y.mean(0)
    x = x / torch.linalg.matrix_norm(x)
    y = y / torch.linalg.matrix_norm(y)
    return 1 - torch.linalg.matrix_norm(x.T @ y, ord="nuc") ** 2


def broken(x, y):
    raise RuntimeError("no such thing as a free lunch")


def not_finite(x, y):
    return float("nan")
'''


@pytest.fixture
def user_dir(tmp_path):
    """A working folder outside the checkout with the user's module and their conf/measure/."""
    (tmp_path / "mymeasures.py").write_text(MODULE)
    measures = tmp_path / "conf" / "measure"
    measures.mkdir(parents=True)
    for name, kind in (("full_procrustes", "distance"), ("broken", "similarity"), ("not_finite", "similarity")):
        (measures / f"{name}.yaml").write_text(f"_target_: mymeasures.{name}\nkind: {kind}\n")
    return tmp_path


def scipy_disparity(x, y):
    return procrustes(x, y)[2]


def test_a_user_measure_sweeps_fails_alone_and_reports(small_store, user_dir):
    result = run_app(*SWEEP, f"data.root={small_store}", "measure=full_procrustes,broken,not_finite",
                     "--config-dir", "conf", cwd=user_dir)
    assert result.returncode == 1, result.stdout
    rows = jobs_csv(user_dir)
    by_measure = {name: [r for r in rows if f"measure={name}" in r["settings"]]
                  for name in ("full_procrustes", "broken", "not_finite")}
    assert [r["status"] for r in by_measure["full_procrustes"]] == ["done"] * 7
    assert {r["status"] for r in by_measure["broken"] + by_measure["not_finite"]} == {"failed"}
    assert all("measure broken (_target_: mymeasures.broken) raised RuntimeError: no such thing as a free lunch"
               in r["error"] for r in by_measure["broken"])
    assert all("mymeasures.not_finite) returned nan: expected a finite number" in r["error"]
               for r in by_measure["not_finite"])

    for row in by_measure["full_procrustes"]:
        run_dir = user_dir / "outputs" / "cka" / row["run_dir"]
        assert run_dir.name.endswith("-full_procrustes")
        summary = run_folder.read_result(run_dir)
        assert (summary["measure_kind"], summary["measure_target"]) == ("distance", "mymeasures.full_procrustes")
        timeline = pd.read_csv(run_folder.timeline_path(run_dir, summary))
        step = summary["steps"][-1]
        expected, n = reference_from_files(
            *(representations_dir(small_store, folder, task, 5) / f"checkpoint-{step}"
              for folder, task in ((summary["folder_a"], summary["tasks_a"][0]),
                                   (summary["folder_b"], summary["tasks_b"][0]))),
            estimator=scipy_disparity)
        assert timeline["full_procrustes"].iloc[-1] == pytest.approx(expected, abs=1e-12)
        assert timeline["n_cities"].iloc[-1] == n

    # a re-run skips what is done, and the report needs no module to read it
    again = run_cli(*SWEEP, f"data.root={small_store}", "measure=full_procrustes", "--config-dir", "conf",
                    cwd=user_dir)
    assert again.returncode == 0 and "7 jobs already have results" in again.stdout
    (user_dir / "mymeasures.py").unlink()
    assert run_app("report", f"data.root={small_store}", cwd=user_dir).returncode == 0
    results = pd.read_csv(user_dir / "outputs" / "cka" / "report" / "cka_results.csv")
    mine = results[results["measure"] == "full_procrustes"]
    assert len(mine) == 7 and (mine["measure_kind"] == "distance").all()
    assert np.allclose(mine["similarity"], 1 - mine["value"])


@pytest.mark.parametrize("text, message", [
    ("_target_: mymeasures.nothing_here\nkind: distance\n", "cannot import it (AttributeError"),
    ("_target_: nomodule.f\nkind: distance\n", "No module named 'nomodule'"),
    ("_target_: mymeasures.full_procrustes\nkind: distant\n", "kind=distant: expected similarity or distance"),
    ("_target_: mymeasures.full_procrustes\n", "kind=None: expected similarity or distance"),
])
def test_a_bad_measure_file_is_one_line_before_anything_runs(small_store, user_dir, text, message):
    (user_dir / "conf" / "measure" / "mine.yaml").write_text(text)
    result = run_app(*SWEEP, f"data.root={small_store}", "measure=mine", "--config-dir", "conf", cwd=user_dir)
    assert result.returncode == 1 and message in result.stdout, result.stdout
    assert "measure mine (_target_:" in result.stdout
    assert not (user_dir / "outputs" / "cka").exists()


def test_a_user_measure_may_not_take_a_built_in_name(small_store, user_dir):
    (user_dir / "conf" / "measure" / "cka.yaml").write_text("_target_: mymeasures.full_procrustes\nkind: distance\n")
    result = run_app(*SWEEP, f"data.root={small_store}", "--config-dir", "conf", cwd=user_dir)
    assert result.returncode == 1 and "cka is a built-in measure's name" in result.stdout, result.stdout
