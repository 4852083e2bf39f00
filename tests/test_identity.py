"""Results you can trust, through the app's entry point (run_app): every setting that decides a
result names its folder, any setting sweeps, and refused or failed runs never touch a result."""

import csv
import shutil
import time

import pytest
from conftest import built_once, read_json, representations_dir, run_app

SWEEP = ["-m", "sweep", "regime=pt3", "layer=5", "seed_pair=orig_1", "hydra/launcher=basic"]
STUDY_FOLDERS = {f"pt3/pt3-{a}_vs_pt3-{b}_seed1/layer5" for a, b in [(1, 2), (1, 7), (2, 3), (3, 4), (4, 5),
                                                                      (5, 6), (6, 7)]}


@pytest.fixture(scope="module")
def finished(small_store, tmp_path_factory):
    """A finished sweep of pt3 at layer 5 and seed pair orig_1 (7 jobs); tests work on copies."""
    def build(cwd):
        result = run_app(*SWEEP, f"data.root={small_store}", cwd=cwd)
        assert result.returncode == 0, result.stdout

    return built_once(tmp_path_factory, "finished", build)


@pytest.fixture
def cwd(finished, tmp_path):
    shutil.copytree(finished / "outputs", tmp_path / "outputs")
    return tmp_path


def snapshot(cwd):
    return {p.relative_to(cwd): p.read_bytes() for p in (cwd / "outputs/cka").rglob("*") if p.is_file()}


def run_folder_files(cwd):
    """snapshot, less the results dir's own files (jobs.csv, multirun.yaml), which a sweep rewrites."""
    return {k: v for k, v in snapshot(cwd).items() if len(k.parts) > 3}


def result_folders(cwd):
    return {str(p.parent.relative_to(cwd / "outputs/cka")) for p in (cwd / "outputs/cka").rglob("summary.json")}


def jobs(cwd):
    with open(cwd / "outputs/cka/jobs.csv") as f:
        return list(csv.DictReader(f))


def test_the_finished_sweep(finished, small_store):
    assert result_folders(finished) == STUDY_FOLDERS
    assert (finished / "outputs/cka/data_root.txt").read_text() == f"{small_store}\n"


def test_one_off_runs_and_refused_runs_leave_the_sweep_byte_identical(small_store, cwd):
    before = snapshot(cwd)
    one = ["regime=pt3", "pair=1_2", "seed_pair=orig_1", "layer=5"]
    for other in (["checkpoints=all"], ["cka.kernel=rbf"]):
        result = run_app(*one, *other, f"data.root={small_store}", cwd=cwd)
        assert result.returncode == 0, result.stdout
    refused = {
        "city_filter": (['city_filter="nosuchfield:^x"'], "city_filter: unknown field 'nosuchfield'"),
        "root": (["data.root=/no/such/store"], "data.root=/no/such/store: no such folder"),
        "overlap": (["pair=1_3"], "pair=1_3: pt3-1 and pt3-3 share the training task distance, trianglearea"),
        "model": (["pair=1_8"], "pair=1_8: regime pt3 has no model 8"),
    }
    for args, message in refused.values():
        overrides = [o for o in one if not (args[0].startswith("pair=") and o.startswith("pair="))]
        result = run_app(*overrides, *args, *([] if "data.root" in args[0] else [f"data.root={small_store}"]),
                         cwd=cwd)
        assert result.returncode == 1
        assert f"Error: {message}" in result.stdout, result.stdout
    same = run_app(*one, f"data.root={small_store}", cwd=cwd)
    assert same.returncode == 0 and "skipped" in same.stdout

    after = snapshot(cwd)
    assert {k: v for k, v in after.items() if k in before} == before
    assert result_folders(cwd) == STUDY_FOLDERS | {"pt3/pt3-1_vs_pt3-2_seed1/layer5-all",
                                                   "pt3/pt3-1_vs_pt3-2_seed1/layer5-rbf0.4"}
    assert not list((cwd / "outputs/cka").rglob("error.txt"))
    rbf = read_json(cwd / "outputs/cka/pt3/pt3-1_vs_pt3-2_seed1/layer5-rbf0.4/summary.json")
    assert rbf["settings"]["cka.kernel"] == "rbf" and rbf["label"] == "rbf0.4"


def test_any_setting_sweeps_and_only_the_new_half_is_computed(small_store, cwd):
    before = run_folder_files(cwd)
    result = run_app(*SWEEP, "cka.kernel=linear,rbf", "checkpoints=final,all", f"data.root={small_store}", cwd=cwd)
    assert result.returncode == 0, result.stdout
    assert "sweep: 28 jobs (7 comparisons x 4 settings)" in result.stdout
    assert "7 jobs already have results for the same settings (skipped); 0 failed before launch; 21 to run" in (
        result.stdout)
    assert {k: v for k, v in run_folder_files(cwd).items() if k in before} == before
    rows = jobs(cwd)
    assert len(rows) == 28
    assert {(r["settings"], r["status"]) for r in rows} == {
        ("", "skipped"), ("checkpoints=all", "done"), ("cka.kernel=rbf", "done"),
        ("cka.kernel=rbf checkpoints=all", "done")}
    assert {r["run_dir"].rsplit("/", 1)[1] for r in rows} == {"layer5", "layer5-all", "layer5-rbf0.4",
                                                              "layer5-rbf0.4-all"}

    narrowed = run_app(*SWEEP, "pair=1_2", f"data.root={small_store}", cwd=cwd)  # the manifest keeps every job
    assert narrowed.returncode == 0, narrowed.stdout
    assert len(jobs(cwd)) == 28

    listed = run_app(*SWEEP, "cka.kernel=linear,rbf", "hydra.sweeper.dry_run=true", cwd=cwd)
    assert sum("cka.kernel=rbf" in line for line in listed.stdout.splitlines()) == 7
    assert "14 jobs (dry run: nothing computed)" in listed.stdout


def test_values_that_cannot_change_the_result_are_not_swept_twice(tmp_path):
    result = run_app(*SWEEP, "device=cpu,auto", "hydra.sweeper.dry_run=true", cwd=tmp_path)
    assert result.returncode == 1
    assert "two jobs would compute the same result into" in result.stdout and "Traceback" not in result.stdout
    assert ": device cannot change it." in result.stdout  # the setting that cannot, named
    twice = run_app(*SWEEP, "regime=pt3,pt3", "hydra.sweeper.dry_run=true", cwd=tmp_path)
    assert twice.returncode == 1
    assert "a value is listed twice in the sweep (regime=pt3 " in twice.stdout and "list each value once" in \
        twice.stdout


def test_another_data_root_is_refused_unless_overwrite(small_store, cwd, tmp_path_factory):
    other = tmp_path_factory.mktemp("other") / "store"
    shutil.copytree(small_store, other)
    before = snapshot(cwd)
    one = ["regime=pt3", "pair=1_2", "seed_pair=orig_1", "layer=5", f"data.root={other}"]
    single = run_app(*one, cwd=cwd)
    assert single.returncode == 1
    assert f"holds results computed from data.root={small_store}, not data.root={other}" in single.stdout
    assert "hydra.sweep.dir=" in single.stdout and "overwrite=true" in single.stdout
    start = time.perf_counter()
    swept = run_app(*SWEEP, f"data.root={other}", cwd=cwd)
    assert swept.returncode == 1 and time.perf_counter() - start < 60
    assert "holds results computed from" in swept.stdout and "Launching" not in swept.stdout
    assert snapshot(cwd) == before

    elsewhere = run_app(*one, "hydra.sweep.dir=outputs/other", cwd=cwd)
    assert elsewhere.returncode == 0, elsewhere.stdout
    assert (cwd / "outputs/other/data_root.txt").read_text() == f"{other}\n"

    replaced = run_app(*one, "overwrite=true", cwd=cwd)
    assert replaced.returncode == 0, replaced.stdout
    summary = read_json(cwd / "outputs/cka/pt3/pt3-1_vs_pt3-2_seed1/layer5/summary.json")
    assert summary["settings"]["data.root"] == str(other)
    assert (cwd / "outputs/cka/data_root.txt").read_text() == f"{other}\n"
    # the folder is now the other store's: the first store's results in it are stale, never reported
    report = run_app("report", f"data.root={other}", cwd=cwd)
    assert "read 1 runs" in report.stdout and "left out: 6 of another data root (stale)" in report.stdout
    refused = run_app("report", f"data.root={small_store}", cwd=cwd)
    assert refused.returncode == 1 and f"not data.root={small_store}" in refused.stdout
    # and a sweep on the other store replaces them without overwrite=true
    rerun = run_app(*SWEEP, f"data.root={other}", cwd=cwd)
    assert rerun.returncode == 0, rerun.stdout
    assert "1 jobs already have results for the same settings (skipped); 0 failed before launch; 6 to run" in (
        rerun.stdout)
    assert {read_json(p)["settings"]["data.root"] for p in (cwd / "outputs/cka").rglob("summary.json")} == {
        str(other)}


def test_a_sweep_with_a_bad_setting_launches_nothing(tmp_path):
    for args, message in [
        (["data.root=/nonexistent"], "data.root=/nonexistent: no such folder"),
        (["+cka.kernal=rbf"], "cka.kernal: unknown setting; cka has: kernel"),
        (["cka.kernel=linear,rbf", "cka.sigma_frac=-1"], "cka.sigma_frac=-1.0: expected a positive number"),
        (['city_filter="region:("'], "city_filter: invalid regex"),
        (["hydra.launcher.n_jobs=0"], "hydra.launcher.n_jobs=0: expected a number of workers, 1 or more"),
        (["hydra.sweeper.batch_size=0"], "hydra.sweeper.batch_size=0: expected 1 or more"),
        (["hydra.sweeper.follow=abc"], "Error: hydra.sweeper.follow=abc: expected a number or null"),
        (["hydra.sweeper.batch_size=1.5"], "Error: hydra.sweeper.batch_size=1.5: expected a whole number or null"),
        (["+hydra.sweeper.folow=5"], "Error: hydra.sweeper.folow: not a setting of the cka sweeper; it has: params, "
                                     "seed_policy, self_pairs, batch_size, dry_run, follow, follow_idle"),
    ]:
        result = run_app("-m", "sweep", *args, cwd=tmp_path)
        assert result.returncode == 1
        assert message in result.stdout and "Traceback" not in result.stdout, result.stdout
        assert len(result.stdout.splitlines()) < 10
        assert not (tmp_path / "outputs").exists()


def test_a_dry_run_checks_too_and_a_sweep_of_no_job_says_so(small_store, tmp_path):
    dry = run_app(*SWEEP, "data.root=/nonexistent", "hydra.sweeper.dry_run=true", cwd=tmp_path)
    assert dry.returncode == 1 and "Error: data.root=/nonexistent: no such folder" in dry.stdout
    none = run_app(*SWEEP, "pair=1_3", f"data.root={small_store}", cwd=tmp_path)  # pt3-1 and pt3-3 share tasks
    assert none.returncode == 1
    assert "removed 1 for shared training task" in none.stdout and "Error: no valid comparison" in none.stdout
    assert not (tmp_path / "outputs").exists()


def test_a_refused_report_writes_nothing(small_store, finished, tmp_path):
    for args, message in [([], f"sweep_dir={tmp_path / 'outputs/cka_demo'}: no such folder; run a sweep first"),
                          ([f"sweep_dir={tmp_path}"], f"no results under {tmp_path}; run a sweep first"),
                          ([f"data.root={small_store}", "+data.rot=1"], "data.rot: unknown setting")]:
        result = run_app("report", *args, cwd=tmp_path)
        assert result.returncode == 1 and "Error: " in result.stdout and message in result.stdout, result.stdout
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "report").exists()
    other = run_app("report", f"sweep_dir={finished / 'outputs/cka'}", f"data.root={tmp_path}", cwd=tmp_path)
    assert other.returncode == 1 and f"not data.root={tmp_path}" in other.stdout
    assert not (finished / "outputs/cka/report").exists()


def test_an_unknown_key_added_with_plus_is_refused(small_store, tmp_path):
    result = run_app("+cka.kernal=rbf", f"data.root={small_store}", cwd=tmp_path)
    assert result.returncode == 1
    assert "Error: cka.kernal: unknown setting; cka has: kernel, sigma_frac" in result.stdout
    assert not (tmp_path / "outputs").exists()


def test_a_job_whose_inputs_are_missing_fails_without_being_launched(small_store, store_copy, tmp_path):
    # pt3-2_seed1 takes part in two of the study's pt3 jobs at layer 5: (1_2, orig_1) and (2_3, 1_2)
    shutil.rmtree(representations_dir(store_copy, "revision/exp2/pt3-2_seed1", "compass", 5))
    result = run_app("-m", "sweep", "regime=pt3", "layer=5", "hydra/launcher=basic", f"data.root={store_copy}",
                     cwd=tmp_path)
    assert result.returncode == 1
    assert "0 jobs already have results for the same settings (skipped); 2 failed before launch; 19 to run" in (
        result.stdout)
    assert "2 of 21 jobs did not finish" in result.stdout
    rows = {(r["pair"], r["seed_pair"]): r for r in jobs(tmp_path)}
    failed = {k for k, r in rows.items() if r["status"] == "failed"}
    assert failed == {("1_2", "orig_1"), ("2_3", "1_2")}
    for key in failed:
        assert "no representation folder at" in rows[key]["error"]
        assert not (tmp_path / "outputs/cka" / rows[key]["run_dir"]).exists()  # no worker ever started it
    assert all(r["status"] == "done" for k, r in rows.items() if k not in failed)


def test_help_shows_the_workflow(tmp_path):
    result = run_app("--help", cwd=tmp_path)
    assert result.returncode == 0
    for text in ("python -m cka_hydra -m sweep", "python -m cka_hydra report", "cka.kernel=linear,rbf",
                 "seed_policy=study|cross|all|same|matrix", "== Config groups", "regime: pt1, pt2, pt3",
                 "sigma_frac: 0.4"):
        assert text in result.stdout, text
