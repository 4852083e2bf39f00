"""The cluster path on one machine: hydra-submitit-launcher's own submitit_local, and
hydra/launcher=slurm_local, the launcher of hydra/launcher=slurm with submitit's local executor."""

import csv
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import Background, BlockedRead, read_json, readers_of, representations_dir, run_app, compare_into

from cka_hydra.__main__ import missing_extra

SMALL_SWEEP = ["-m", "sweep", "regime=pt3", "layer=5", "seed_pair=orig_1"]  # 7 jobs


def summaries(results_dir: Path) -> dict[str, dict]:
    return {str(p.parent.relative_to(results_dir)): read_json(p) for p in results_dir.rglob("summary.json")}


def test_hydras_submitit_launcher_gives_the_same_result(small_store, tmp_path):
    # Hydra's own plugin starts a process per job: one here
    plugin = run_app(*SMALL_SWEEP, "pair=2_3", f"data.root={small_store}", "hydra/launcher=submitit_local", cwd=tmp_path)
    assert plugin.returncode == 0, plugin.stdout
    assert "[1/1] done 1, skipped 0, failed 0, lost 0" in plugin.stdout
    by_plugin = summaries(tmp_path / "outputs/cka")
    assert by_plugin.keys() == {"pt3/pt3-2_vs_pt3-3_seed1/layer5"}
    direct = compare_into(tmp_path / "direct", "regime=pt3", "pair=2_3", "seed_pair=orig_1", "layer=5",
                            f"data.root={small_store}")
    assert by_plugin["pt3/pt3-2_vs_pt3-3_seed1/layer5"]["final_cka"] == pytest.approx(
        read_json(direct / "summary.json")["final_cka"], abs=1e-12)


FIFO_INSTANCE = ("revision/exp2/pt3-5_seed1", "perimeter", 5)  # pt3-5_seed1 is in the job (4_5, orig_1) alone


def blocked_sweep(background, store: Path, cwd: Path) -> tuple[Background, BlockedRead]:
    """A slurm_local sweep (4 jobs per array task) whose job (4_5, orig_1) blocks on a metadata file
    that is a FIFO, once a task has opened the FIFO. The jobs are launched along a trail of shared
    instances (1_2, 1_7, 6_7, 2_3 | 3_4, 4_5, 5_6): (4_5, orig_1) is the second task's second."""
    blocked = BlockedRead(representations_dir(store, *FIFO_INSTANCE) / "checkpoint-164073")
    sweep = background(Background, cwd, *SMALL_SWEEP, f"data.root={store}", "hydra/launcher=slurm_local",
                       "hydra.launcher.jobs_per_task=4")
    sweep.wait_until(blocked.reader_opened, "no array task opened the FIFO")
    return sweep, blocked


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the array task through /proc")
def test_array_tasks_fail_alone_and_a_rerun_picks_up_their_jobs(small_store, store_copy, tmp_path, background):
    """Two array tasks of up to 4 jobs. In the first, the job (1_2, orig_1) reads a broken file:
    it fails alone. The second blocks on a FIFO, and the test kills it, as a scheduler does at
    a timeout: its jobs are lost. Each job keeps its own folder, record and log."""
    broken = representations_dir(store_copy, "revision/exp2/pt3-2_seed1", "compass", 5) / "checkpoint-164073"
    (broken / "representations.pt").write_text("truncated")
    sweep, blocked = blocked_sweep(background, store_copy, tmp_path)
    blocked.kill_readers()
    blocked.release()
    output = sweep.finish()
    assert sweep.proc.returncode == 1, output
    assert "submitted 7 jobs as 2 array task(s) of up to 4 jobs" in output
    # the second task held (3_4, orig_1), which finished first, (4_5, orig_1), and (5_6, orig_1), never started
    assert "3 of 7 jobs did not finish" in output
    assert "failed pt3 pair=1_2 seed_pair=orig_1 layer=5" in output
    for pair in ("4_5", "5_6"):
        assert f"lost   pt3 pair={pair} seed_pair=orig_1 layer=5: array task" in output
    assert "ended without a result" in output
    with open(tmp_path / "outputs/cka/jobs.csv") as f:  # the killed task's finished job: its summary's seconds
        finished = next(row for row in csv.DictReader(f) if row["pair"] == "3_4")
    assert finished["status"] == "done" and float(finished["seconds"]) > 0
    results = tmp_path / "outputs/cka"
    error = (results / "pt3/pt3-1_vs_pt3-2_seed1/layer5/error.txt").read_text()
    assert "not a readable torch.save file" in error

    blocked.restore()
    shutil.copy(representations_dir(small_store, "revision/exp2/pt3-2_seed1", "compass", 5)
                / "checkpoint-164073/representations.pt", broken / "representations.pt")
    retry = run_app(*SMALL_SWEEP, f"data.root={store_copy}", "hydra/launcher=slurm_local", cwd=tmp_path)
    assert retry.returncode == 0, retry.stdout
    assert "4 jobs already have results for the same settings (skipped); 0 failed before launch; 3 to run" in (
        retry.stdout)
    found = summaries(results)
    assert len(found) == 7
    for folder, summary in found.items():  # the values of a job computed in this process
        run_dir = results / folder
        assert (run_dir / ".hydra/overrides.yaml").is_file() and summary["exp1"] in (run_dir / "cka.log").read_text()
        c = summary
        direct = compare_into(tmp_path / "direct", f"regime={c['regime']}", f"pair={c['pair']}",
                                f"seed_pair={c['seed_pair']}", f"layer={c['layer']}", f"data.root={small_store}")
        assert summary["final_cka"] == pytest.approx(read_json(direct / "summary.json")["final_cka"], abs=1e-12)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the array task through /proc")
def test_ctrl_c_on_the_submitting_process_ends_its_local_tasks_and_leaves_jobs_csv_true(store_copy, tmp_path,
                                                                                          background):
    sweep, blocked = blocked_sweep(background, store_copy, tmp_path)
    proc = sweep.proc
    deadline = time.monotonic() + 60  # let the other array task, and this one's first job, finish
    while len(summaries(tmp_path / "outputs/cka")) < 5 and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)  # to the submitting process alone, as `kill -INT` sends it
    returncode = proc.wait(timeout=60)
    deadline = time.monotonic() + 10
    while readers_of(blocked.path) and time.monotonic() < deadline:
        time.sleep(0.1)
    left_running = readers_of(blocked.path)
    blocked.kill_readers(wait=0)
    blocked.release()
    output = sweep.output
    assert returncode == 1, output
    assert not left_running  # the blocked task ended with the sweep
    # a local task is this machine's process: it ends with the sweep (at least the blocked one; the
    # others may still be ending when the signal comes)
    assert re.search(r"interrupted: cancelled [12] array task\(s\) still queued or running", output)
    assert "Error: interrupted: 2 launched jobs have no result (marked lost) and 0 were not launched" in output
    with open(tmp_path / "outputs/cka/jobs.csv") as f:
        statuses = {(row["pair"], row["status"]) for row in csv.DictReader(f)}
    assert {("4_5", "lost"), ("5_6", "lost")} <= statuses and sum(status == "done" for _, status in statuses) == 5


def test_a_submitit_launcher_without_the_extra_names_it(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "hydra_plugins.hydra_submitit_launcher" else real(name, *a))
    message = missing_extra(["-m", "sweep", "hydra/launcher=slurm"])
    assert message == ('Error: hydra/launcher=slurm needs hydra-submitit-launcher: pip install "cka-hydra[slurm]" '
                       '(or ".[slurm]" in a checkout)')
    assert missing_extra(["-m", "sweep", "hydra/launcher=basic"]) is None
    monkeypatch.setattr(importlib.util, "find_spec", real)
    assert missing_extra(["hydra/launcher=slurm"]) is None  # installed here


class FakeTask:
    """A submitted SLURM array task, as far as the launcher uses one: done with a result, or still
    running; the scheduler's answer to the launcher's poll is a Ctrl-C."""

    def __init__(self, job_id: str, done: bool) -> None:
        self.job_id, self._done = job_id, done
        self.paths = SimpleNamespace(result_pickle=SimpleNamespace(exists=lambda: done))
        self.watcher = SimpleNamespace(update=self.interrupt)

    def interrupt(self) -> None:
        raise KeyboardInterrupt

    def done(self) -> bool:
        return self._done

    def results(self) -> list:
        return [[]]


def test_ctrl_c_on_a_slurm_sweep_that_cannot_cancel_names_the_tasks_still_queued(monkeypatch, caplog):
    from hydra_plugins.cka_hydra_sweeper import _chunked
    from omegaconf import OmegaConf

    launcher = _chunked.ChunkedSlurmLauncher(jobs_per_task=2, submitit_folder="unused")
    launcher.config = OmegaConf.create({})
    tasks = [FakeTask("4242_0", True), FakeTask("4242_1", False), FakeTask("4242_2", False)]

    class Executor:
        def map_array(self, fn, chunks):
            assert [len(chunk) for chunk in chunks] == [2, 2, 1]
            return tasks

    monkeypatch.setattr(launcher, "_executor", lambda: Executor())
    scancel = []  # a scancel that fails (no such command, or the controller does not answer)
    monkeypatch.setattr(_chunked.subprocess, "run", lambda args, **kw: scancel.append(args) or
                        subprocess.CompletedProcess(args, 1))
    with pytest.raises(KeyboardInterrupt):
        launcher.launch([[f"job={i}"] for i in range(5)], initial_job_idx=0)
    assert scancel == [["scancel", "4242_0", "4242_1", "4242_2"]]
    assert ("interrupted: 3 array task(s) may still be queued or running; cancel them with: scancel 4242_0 4242_1 "
            "4242_2 (running the sweep again skips every job they finish)" in caplog.text)


def test_a_warning_signal_while_an_array_task_loads_is_held_not_fatal(tmp_path):
    """submitit sets its SIGUSR2 handler only once it has loaded the task's pickle, and a time limit
    shorter than signal_delay_s sends the warning at once: while the pickle loads (and imports the
    launcher's module), the signal is held, where by default it would end the task."""
    code = ("import os, signal; from hydra_plugins.cka_hydra_sweeper import _chunked; "
            "os.kill(os.getpid(), signal.SIGUSR2); print(len(_chunked.EARLY_WARNINGS))")
    task = subprocess.run([sys.executable, "-c", code], env=os.environ | {"SUBMITIT_FOLDER": str(tmp_path)},
                          capture_output=True, text=True)
    assert task.returncode == 0 and task.stdout.strip() == "1", task.stderr
    elsewhere = subprocess.run([sys.executable, "-c", code], env={k: v for k, v in os.environ.items()
                                                                  if k != "SUBMITIT_FOLDER"})
    assert elsewhere.returncode == -signal.SIGUSR2  # outside an array task nothing is changed
