"""`python -m cka_hydra -m sweep` on a small generated store: in a subprocess where only the real
command line shows it (the launcher's processes, the console, a killed worker), else in this process."""

import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import DISJOINT, Background, BlockedRead, jobs_csv, representations_dir, run_app, run_cli

from cka_hydra.__main__ import stray_word
from cka_hydra.overrides import hydra_argv

PT3_FOLDERS = {  # pt3, layer 5, the study's seed pairs: 7 disjoint pairs x 3
    f"pt3/pt3-{a}{sa}_vs_pt3-{b}{sb}/layer5"
    for a, b in DISJOINT["pt3"]
    for sa, sb in [("", "_seed1"), ("", "_seed2"), ("_seed1", "_seed2")]
}


def result_folders(cwd: Path) -> set[str]:
    base = cwd / "outputs/cka"
    return {str(p.parent.relative_to(base)) for p in base.rglob("summary.json")}


def sweep(cwd: Path, store: Path, *args: str, launcher: str = "hydra.launcher.n_jobs=2",
          run=run_app) -> subprocess.CompletedProcess:
    """pt3 at layer 5 (21 jobs) on the workers launcher with 2 workers, unless told otherwise."""
    return run("-m", "sweep", "regime=pt3", "layer=5", f"data.root={store}", launcher, *args, cwd=cwd)


def test_hydra_argv_maps_the_bare_word_and_quotes_numeric_choices():
    assert hydra_argv(["-m", "sweep", "layer=3,6", "pair=1_2", "seed_pair=1_2,orig_1", "data.root=/x"]) == [
        "-m", "--config-name=sweep", "layer='3','6'", "pair='1_2'", "seed_pair='1_2','orig_1'",
        "data.root=/x"]
    assert hydra_argv(["layer=range(3,7)", "regime=pt2"]) == ["layer=range(3,7)", "regime=pt2"]


def test_a_stray_word_is_refused_before_hydra_reads_it():
    assert stray_word(["-m", "sweep", "layer=5"]) is None
    assert stray_word(["report", "sweep_dir=x"]) is None
    assert stray_word(["--cfg", "job", "-p", "cka", "--info", "plugins", "-cn", "config"]) is None
    assert stray_word(["-m", "swep"]).startswith("Error: swep: not a command; the commands are -m sweep and report")
    assert stray_word(["reprot"]).startswith("Error: reprot: not a command")


def test_sweep_runs_exactly_the_valid_jobs_and_a_rerun_computes_nothing(small_store, tmp_path):
    result = sweep(tmp_path, small_store, run=run_cli)
    assert result.returncode == 0, result.stdout
    assert "pt3: 63 candidates; removed 42 for shared training task, 0 for same comparison twice; 21 jobs" in result.stdout
    assert re.search(r"\[21/21\] done 21, skipped 0, failed 0, lost 0 \| \d+ s elapsed", result.stdout)
    assert result_folders(tmp_path) == PT3_FOLDERS

    # the console: a progress line as each worker's chunk ends, no per-job dump from Hydra or joblib
    progress = [int(n) for n in re.findall(r"\[(\d+)/21\] done", result.stdout)]
    assert progress == sorted(set(progress)) and progress[-1] == 21 and len(progress) <= min(4, os.cpu_count())
    assert "\t#" not in result.stdout and "Joblib.Parallel" not in result.stdout and "[INFO]" not in result.stdout
    assert "Launching" not in result.stdout

    rows = jobs_csv(tmp_path)
    assert list(rows[0]) == ["regime", "pair", "seed_pair", "layer", "layer_b", "settings", "run_dir", "status", "seconds",
                             "error"]
    assert {r["status"] for r in rows} == {"done"}
    assert {r["run_dir"] for r in rows} == PT3_FOLDERS
    for folder in PT3_FOLDERS:  # each job's detail is in its own log
        assert "final cka" in (tmp_path / "outputs/cka" / folder / "cka.log").read_text()
    assert {(r["pair"], r["seed_pair"], r["layer"]) for r in rows} == {
        (f"{a}_{b}", s, "5") for a, b in DISJOINT["pt3"] for s in ("orig_1", "orig_2", "1_2")}

    summaries = {p: p.stat().st_mtime_ns for p in (tmp_path / "outputs/cka").rglob("summary.json")}
    again = sweep(tmp_path, small_store)
    assert again.returncode == 0, again.stdout
    assert "21 jobs already have results for the same settings (skipped); 0 failed before launch; 0 to run" in (
        again.stdout)
    assert "[21/21] done 0, skipped 21, failed 0, lost 0" in again.stdout
    assert {r["status"] for r in jobs_csv(tmp_path)} == {"skipped"}
    assert {p: p.stat().st_mtime_ns for p in summaries} == summaries


@pytest.mark.parametrize(
    "args, count",
    [
        ([], 252),
        (["regime=pt1"], 252),
        (["regime=pt3"], 84),
        (["layer=5"], 63),
        (["layer=3,6"], 126),
        (["regime=pt2", "pair=1_2,2_3"], 24),
        (["regime=pt2", "pair=1_2,1_4", "layer=5"], 3),  # 1_4 shares distance: never launched
        (["seed_pair=orig_1"], 84),
        (["hydra.sweeper.seed_policy=cross"], 504),
        (["hydra.sweeper.seed_policy=all", "regime=pt3"], 252),
        (["hydra.sweeper.seed_policy=same", "layer=5"], 63),
        (["hydra.sweeper.self_pairs=true", "regime=pt2", "layer=5"], 42 + 21),
        (["regime=pt1", "layer=5", "hydra.sweeper.seed_policy=matrix"], 231),
    ],
)
def test_dry_run_counts_and_narrowing(tmp_path, args, count):
    result = run_app("-m", "sweep", "hydra.sweeper.dry_run=true", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    jobs = re.findall(r"\] (regime=.*)", result.stdout)
    assert len(jobs) == count
    assert len(set(jobs)) == count
    assert f"] {count} jobs (dry run: nothing computed)" in result.stdout
    assert not (tmp_path / "outputs").exists()


def test_failing_jobs_do_not_stop_the_others_and_are_retried(small_store, store_copy, tmp_path):
    # pt3-2_seed1 takes part in two jobs: (1_2, orig_1) and (2_3, 1_2)
    broken = representations_dir(store_copy, "revision/exp2/pt3-2_seed1", "compass", 5) / "checkpoint-164073"
    (broken / "representations.pt").write_text("truncated")
    result = sweep(tmp_path, store_copy, launcher="hydra/launcher=basic")
    assert result.returncode == 1
    assert "2 of 21 jobs did not finish" in result.stdout
    assert "failed pt3 pair=1_2 seed_pair=orig_1 layer=5" in result.stdout
    assert "failed pt3 pair=2_3 seed_pair=1_2 layer=5" in result.stdout

    rows = {(r["pair"], r["seed_pair"]): r for r in jobs_csv(tmp_path)}
    failed = {k for k, r in rows.items() if r["status"] == "failed"}
    assert failed == {("1_2", "orig_1"), ("2_3", "1_2")}
    assert all(r["status"] == "done" for k, r in rows.items() if k not in failed)
    for key in failed:
        assert "representations.pt: not a readable torch.save file" in rows[key]["error"]
        error = (tmp_path / "outputs/cka" / rows[key]["run_dir"] / "error.txt").read_text()
        assert "not a readable torch.save file" in error and "Traceback" in error
        assert not (tmp_path / "outputs/cka" / rows[key]["run_dir"] / "summary.json").exists()
    assert result_folders(tmp_path) == PT3_FOLDERS - {
        "pt3/pt3-1_vs_pt3-2_seed1/layer5", "pt3/pt3-2_seed1_vs_pt3-3_seed2/layer5"}

    shutil.copy(representations_dir(small_store, "revision/exp2/pt3-2_seed1", "compass", 5)
                / "checkpoint-164073/representations.pt", broken / "representations.pt")
    retry = sweep(tmp_path, store_copy)
    assert retry.returncode == 0, retry.stdout
    assert "19 jobs already have results for the same settings (skipped); 0 failed before launch; 2 to run" in (
        retry.stdout)
    statuses = {(r["pair"], r["seed_pair"]): r["status"] for r in jobs_csv(tmp_path)}
    assert {k for k, s in statuses.items() if s == "done"} == failed
    assert {s for k, s in statuses.items() if k not in failed} == {"skipped"}
    assert result_folders(tmp_path) == PT3_FOLDERS
    assert not any((tmp_path / "outputs/cka").rglob("error.txt"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the worker through /proc")
def test_a_killed_worker_loses_only_its_batch(store_copy, tmp_path, background):
    """A metadata file that is a FIFO blocks the job reading it; the test kills that worker process.

    The sweep is pt3's 7 jobs at seed pair orig_2, in batches of 4. The FIFO is pt3-6_seed2's,
    which takes part in (5_6, orig_2) alone, in the last batch: no fresh worker pool needs to
    start after the kill (and the sweeper reads only the first job's metadata before launching)."""
    blocked = BlockedRead(representations_dir(store_copy, "revision/exp2/pt3-6_seed2", "trianglearea", 5)
                          / "checkpoint-164073")
    running = background(Background, tmp_path, "-m", "sweep", "regime=pt3", "layer=5", "seed_pair=orig_2",
                       f"data.root={store_copy}", "hydra.launcher.n_jobs=2", "hydra.sweeper.batch_size=4")
    kills, seen_pending = [], []

    def kill_readers():
        while running.proc.poll() is None:
            if not blocked.reader_opened():
                time.sleep(0.05)
                continue
            seen_pending.append(sum(r["status"] == "pending" for r in jobs_csv(tmp_path)))
            kills.extend(blocked.kill_readers())
            blocked.release()
            time.sleep(0.5)  # let the killed reader go before looking again

    watcher = threading.Thread(target=kill_readers)
    watcher.start()
    output = running.finish(timeout=300)
    watcher.join()

    assert running.proc.returncode == 1, output
    assert kills, output
    assert seen_pending and seen_pending[0] > 0  # jobs.csv was there, with work left, while the sweep ran
    rows = jobs_csv(tmp_path)
    lost = [r for r in rows if r["status"] == "lost"]
    assert 1 <= len(lost) <= 3  # one job reads the FIFO: at most its batch is lost
    assert all(r["status"] == "done" for r in rows if r["status"] != "lost")
    assert all(r["run_dir"].endswith("/layer5") and "TerminatedWorkerError" in r["error"] for r in lost)
    assert ("5_6", "orig_2") in {(r["pair"], r["seed_pair"]) for r in lost}
    assert f"{len(lost)} of 7 jobs did not finish" in output
    # a lost batch's other jobs may have written their results before the worker died
    assert len(result_folders(tmp_path)) >= 7 - len(lost)

    blocked.restore()
    retry = sweep(tmp_path, store_copy, "seed_pair=orig_2")
    assert retry.returncode == 0, retry.stdout
    assert {r["status"] for r in jobs_csv(tmp_path)} <= {"done", "skipped"}
    assert result_folders(tmp_path) == {folder for folder in PT3_FOLDERS if folder.endswith("_seed2/layer5")
                                        and "_seed1_" not in folder}


def test_with_one_worker_the_progress_still_reaches_the_console(small_store, tmp_path):
    """joblib runs one worker's jobs in this process, where each job sets logging up for its folder."""
    result = sweep(tmp_path, small_store, "seed_pair=orig_1", launcher="hydra.launcher.n_jobs=1")
    assert result.returncode == 0 and "[7/7] done 7, skipped 0, failed 0, lost 0" in result.stdout, result.stdout
    assert not any("done 7" in log.read_text() for log in (tmp_path / "outputs/cka").rglob("cka.log"))


def test_unknown_choice_is_refused_before_anything_runs(tmp_path):
    result = run_app("-m", "sweep", "regime=pt2,pt9", cwd=tmp_path)
    assert result.returncode == 1
    assert "regime=pt9: no such option; regime has: pt1, pt2, pt3" in result.stdout
    assert not (tmp_path / "outputs").exists()


def test_a_sweep_of_measures_launches_each_batchs_comparisons_with_all_their_measures():
    """256 comparisons per launch by default, each with every measure swept: six measures' study
    goes out at once, not in six launches that each end waiting on their slowest worker."""
    from types import SimpleNamespace

    from hydra_plugins.cka_hydra_sweeper._launch import _batch_size

    def jobs(*measures):
        return [SimpleNamespace(overrides=[f"pair={a}_{a + 1}", *(f"measure={m}" for m in [measure] if m)])
                for a in range(300) for measure in measures]

    workers = SimpleNamespace(batch_size=None, launcher=SimpleNamespace())
    assert _batch_size(workers, jobs(None)) == _batch_size(workers, jobs("shape")) == 256
    assert _batch_size(workers, jobs("cka", "shape", "rsa")) == 3 * 256
    assert _batch_size(SimpleNamespace(batch_size=10, launcher=workers.launcher), jobs("cka", "rsa")) == 10
    array = SimpleNamespace(batch_size=None, launcher=SimpleNamespace(array_tasks_fail_alone=True))
    assert _batch_size(array, jobs("cka", "rsa")) == 600
