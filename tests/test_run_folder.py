"""The run folder's files, in-process: what counts as a result, and what a failure may touch."""

import pytest

import hashlib
import json

from cka_hydra import identity, lifecycle, run_folder
from cka_hydra import results_dir as results_dirs
from cka_hydra.errors import InputError

SETTINGS = {"data.root": "/data", "checkpoints": "final"}
INPUTS = {"representations_a": "/data/a", "representations_b": "/data/b", "steps": [7]}


def write(run_dir, value=0.5, settings=SETTINGS):
    run_folder.write_result(run_dir, {"final_cka": value, "settings": settings, "inputs": INPUTS},
                            ["step", "cka", "n_cities"], [[7, value, 100]])


def test_a_written_result_reads_back_and_counts_as_finished(tmp_path):
    write(tmp_path)
    assert (tmp_path / "cka_timeline.csv").read_text() == "step,cka,n_cities\n7,0.5,100\n"
    assert run_folder.read_result(tmp_path)["final_cka"] == 0.5
    assert lifecycle.is_finished(tmp_path, SETTINGS, INPUTS)
    assert not lifecycle.is_finished(tmp_path, {**SETTINGS, "checkpoints": "all"}, INPUTS)
    assert not lifecycle.is_finished(tmp_path, SETTINGS, {**INPUTS, "steps": [8]})  # the store gained a step


def test_half_written_results_never_count(tmp_path):
    write(tmp_path)
    summary = (tmp_path / "summary.json").read_text()
    # killed between the two renames of an overwrite: a new timeline beside the old summary
    (tmp_path / "cka_timeline.csv").write_text("step,cka,n_cities\n7,0.9,100\n")
    assert run_folder.read_result(tmp_path) is None
    assert not lifecycle.is_finished(tmp_path, SETTINGS, INPUTS)
    (tmp_path / "cka_timeline.csv").unlink()
    assert run_folder.read_result(tmp_path) is None
    (tmp_path / "summary.json").write_text(summary[: len(summary) // 2])  # truncated
    assert run_folder.read_result(tmp_path) is None


def test_an_error_is_never_written_beside_a_result(tmp_path):
    write(tmp_path / "done")
    before = {p.name: p.read_bytes() for p in (tmp_path / "done").iterdir()}
    run_folder.write_error(tmp_path / "done", "boom")
    assert {p.name: p.read_bytes() for p in (tmp_path / "done").iterdir()} == before
    run_folder.write_error(tmp_path / "failed", "boom")
    assert (tmp_path / "failed" / "error.txt").read_text() == "boom"


def test_a_result_of_other_settings_is_a_conflict(tmp_path):
    assert lifecycle.conflict(tmp_path, SETTINGS) is None
    write(tmp_path)
    assert lifecycle.conflict(tmp_path, SETTINGS) is None
    reason = lifecycle.conflict(tmp_path, {**SETTINGS, "checkpoints": "all"})
    assert "holds a result of other settings (checkpoints=final)" in reason
    assert "overwrite=true" in reason and "hydra.sweep.dir" in reason
    # the data root is the results dir's to check (check_data_root): a result of another is stale, not a conflict
    assert lifecycle.conflict(tmp_path, {**SETTINGS, "data.root": "/other"}) is None


def test_one_data_root_per_results_dir(tmp_path):
    results_dirs.check_data_root(tmp_path, "/data", overwrite=False)  # nothing recorded yet
    results_dirs.record_data_root(tmp_path, "/data")
    results_dirs.check_data_root(tmp_path, "/data", overwrite=False)
    with pytest.raises(InputError, match=r"holds results computed from data.root=/data, not the built-in demo store: "
                                         r"write these elsewhere \(hydra.sweep.dir=...\), or set overwrite=true"):
        results_dirs.check_data_root(tmp_path, None, overwrite=False)
    results_dirs.check_data_root(tmp_path, None, overwrite=True)
    results_dirs.record_data_root(tmp_path, None)
    assert (tmp_path / "data_root.txt").read_text() == "demo\n"


def test_the_manifest_keeps_every_job_ever_planned(tmp_path):
    row = dict(regime="pt3", pair="1_2", seed_pair="orig_1", layer=5, settings="", status="done", seconds="1.0",
               error="")
    results_dirs.update_jobs(tmp_path, [{**row, "run_dir": "a"}, {**row, "run_dir": "b"}])
    results_dirs.update_jobs(tmp_path, [{**row, "run_dir": "b", "status": "skipped", "seconds": ""},
                                      {**row, "run_dir": "c", "settings": "checkpoints=all"}])
    jobs = results_dirs.read_jobs(tmp_path)
    assert [(j["run_dir"], j["status"]) for j in jobs] == [("a", "done"), ("b", "skipped"), ("c", "done")]
    assert list(jobs[0]) == list(results_dirs.JOBS_COLUMNS)
    assert jobs[2]["settings"] == "checkpoints=all"


def test_describe_writes_the_changed_settings_as_overrides():
    defaults = {"checkpoints": "final", "cka.kernel": "linear", "cka.sigma_frac": 0.4, "data.root": None}
    changed = {"checkpoints": [0, 7], "cka.kernel": "rbf", "cka.sigma_frac": 0.4, "data.root": "/x",
               "city_filter": "region:^Europe"}
    assert identity.describe(changed, defaults) == 'checkpoints=[0,7] cka.kernel=rbf city_filter="region:^Europe"'


def test_a_result_older_than_an_overwrite_is_not_its_own(tmp_path):
    write(tmp_path)
    written = (tmp_path / "summary.json").stat().st_mtime
    assert lifecycle.is_finished(tmp_path, SETTINGS, INPUTS, since=written)
    assert not lifecycle.is_finished(tmp_path, SETTINGS, INPUTS, since=written + 1)


def test_a_timeline_is_named_after_its_measure_and_one_written_before_still_counts(tmp_path):
    # as a version before timelines were named after their measure wrote a Procrustes result
    timeline = b"step,procrustes_disparity,n_cities\n7,0.25,100\n"
    (tmp_path / "cka_timeline.csv").write_bytes(timeline)
    (tmp_path / "summary.json").write_text(json.dumps({
        "measure": "procrustes", "settings": SETTINGS, "inputs": INPUTS,
        "timeline_sha256": hashlib.sha256(timeline).hexdigest()}))
    assert run_folder.read_result(tmp_path)["measure"] == "procrustes"
    assert lifecycle.is_finished(tmp_path, SETTINGS, INPUTS)
    # recomputed: the new name, and the old file gone with the result it held
    run_folder.write_result(tmp_path, {"measure": "procrustes", "settings": SETTINGS, "inputs": INPUTS},
                            ["step", "procrustes_disparity", "n_cities"], [[7, 0.5, 100]])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["procrustes_timeline.csv", "summary.json"]
    assert run_folder.read_result(tmp_path)["timeline_file"] == "procrustes_timeline.csv"
    # a summary may not point outside its folder
    summary = json.loads((tmp_path / "summary.json").read_text())
    (tmp_path / "summary.json").write_text(json.dumps({**summary, "timeline_file": "../procrustes_timeline.csv"}))
    assert run_folder.read_result(tmp_path) is None
