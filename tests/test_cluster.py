"""The cluster path on one machine: hydra-submitit-launcher's own submitit_local, and
hydra/launcher=slurm_local, the launcher of hydra/launcher=slurm with submitit's local executor."""

import csv
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import read_json, representations_dir, run_app
from test_sweep import _readers_of

from cka_hydra.__main__ import missing_extra

SMALL_SWEEP = ["-m", "sweep", "regime=pt3", "layer=5", "seed_pair=orig_1"]  # 7 jobs


def summaries(results_dir: Path) -> dict[str, dict]:
    return {str(p.parent.relative_to(results_dir)): read_json(p) for p in results_dir.rglob("summary.json")}


def test_submitit_launchers_give_the_joblib_results(small_store, store_copy, tmp_path):
    joblib = run_app(*SMALL_SWEEP, f"data.root={small_store}", "hydra.launcher.n_jobs=2", cwd=tmp_path)
    assert joblib.returncode == 0, joblib.stdout
    expected = summaries(tmp_path / "outputs/cka")
    assert len(expected) == 7

    # Hydra's own plugin starts a process per job: two of them
    plugin = run_app(*SMALL_SWEEP, "pair=1_2,2_3", f"data.root={small_store}", "hydra/launcher=submitit_local",
                     "hydra.sweep.dir=outputs/submitit", cwd=tmp_path)
    assert plugin.returncode == 0, plugin.stdout
    assert "[2/2] done 2, skipped 0, failed 0, lost 0" in plugin.stdout
    by_plugin = summaries(tmp_path / "outputs/submitit")
    assert by_plugin.keys() == {"pt3/pt3-1_vs_pt3-2_seed1/layer5", "pt3/pt3-2_vs_pt3-3_seed1/layer5"}
    for folder, summary in by_plugin.items():
        assert summary["final_cka"] == pytest.approx(expected[folder]["final_cka"], abs=1e-12)

    # three array tasks of up to 3 jobs, one of which reads a broken file: that job fails alone
    broken = representations_dir(store_copy, "revision/exp2/pt3-2_seed1", "compass", 5) / "checkpoint-164073"
    (broken / "representations.pt").write_text("truncated")
    chunked = run_app(*SMALL_SWEEP, f"data.root={store_copy}", "hydra/launcher=slurm_local",
                      "hydra.launcher.jobs_per_task=3", "hydra.sweep.dir=outputs/chunked", cwd=tmp_path)
    assert chunked.returncode == 1
    assert "submitted 7 jobs as 3 array task(s) of up to 3 jobs" in chunked.stdout
    assert "1 of 7 jobs did not finish" in chunked.stdout
    assert "failed pt3 pair=1_2 seed_pair=orig_1 layer=5" in chunked.stdout
    by_chunks = summaries(tmp_path / "outputs/chunked")
    assert by_chunks.keys() == expected.keys() - {"pt3/pt3-1_vs_pt3-2_seed1/layer5"}
    for folder, summary in by_chunks.items():  # each job in its own folder, with its own record and log
        assert summary["final_cka"] == pytest.approx(expected[folder]["final_cka"], abs=1e-12)
        run_dir = tmp_path / "outputs/chunked" / folder
        assert (run_dir / ".hydra/overrides.yaml").is_file()
        assert summary["exp1"] in (run_dir / "cka.log").read_text()
    error = (tmp_path / "outputs/chunked/pt3/pt3-1_vs_pt3-2_seed1/layer5/error.txt").read_text()
    assert "not a readable torch.save file" in error


FIFO_INSTANCE = ("revision/exp2/pt3-6_seed1", "trianglearea", 5)  # pt3-6_seed1 is in the job (5_6, orig_1) alone


def blocked_sweep(store: Path, cwd: Path) -> tuple[subprocess.Popen, int, Path]:
    """A slurm_local sweep (3 jobs per array task) whose job (5_6, orig_1) blocks on a metadata file
    that is a FIFO. Returns once a task has opened the FIFO: the process, the FIFO's write end
    (keep it open, or the reader sees end-of-file), and the FIFO."""
    fifo = representations_dir(store, *FIFO_INSTANCE) / "checkpoint-164073/metadata.json"
    fifo.unlink()
    os.mkfifo(fifo)
    proc = subprocess.Popen(
        [sys.executable, "-m", "cka_hydra", *SMALL_SWEEP, f"data.root={store}", "hydra/launcher=slurm_local",
         "hydra.launcher.jobs_per_task=3"], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:  # opening the write end succeeds only once a task has opened the FIFO to read
            return proc, os.open(fifo, os.O_WRONLY | os.O_NONBLOCK), fifo
        except OSError:
            time.sleep(0.05)
    proc.kill()
    pytest.fail("no array task opened the FIFO")


def kill_readers(fifo: Path, wait: float = 30) -> None:
    deadline = time.monotonic() + wait
    while not (readers := _readers_of(fifo)) and time.monotonic() < deadline:
        time.sleep(0.01)  # the reader's descriptor shows in /proc a moment after its open() returns
    for pid in readers:
        os.kill(pid, signal.SIGKILL)


def restore(fifo: Path, store: Path) -> None:
    fifo.unlink()
    fifo.write_bytes((representations_dir(store, *FIFO_INSTANCE) / "checkpoint-164073/metadata.json").read_bytes())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the array task through /proc")
def test_a_killed_array_task_loses_its_jobs_and_a_rerun_picks_them_up(small_store, store_copy, tmp_path):
    """The test kills the blocked array task, as a scheduler does at a timeout."""
    proc, writer, fifo = blocked_sweep(store_copy, tmp_path)
    kill_readers(fifo)
    os.close(writer)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1, output
    # the task held (3_4, orig_1) and (4_5, orig_1), which finished first, and (5_6, orig_1)
    assert "1 of 7 jobs did not finish" in output
    assert "lost   pt3 pair=5_6 seed_pair=orig_1 layer=5: array task" in output and "ended without a result" in output

    restore(fifo, small_store)
    retry = run_app(*SMALL_SWEEP, f"data.root={store_copy}", "hydra/launcher=slurm_local", cwd=tmp_path)
    assert retry.returncode == 0, retry.stdout
    assert "6 jobs already have results for the same settings (skipped); 0 failed before launch; 1 to run" in (
        retry.stdout)
    assert len(summaries(tmp_path / "outputs/cka")) == 7


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the array task through /proc")
def test_ctrl_c_on_the_submitting_process_ends_its_local_tasks_and_leaves_jobs_csv_true(small_store, store_copy, tmp_path):
    proc, writer, fifo = blocked_sweep(store_copy, tmp_path)
    deadline = time.monotonic() + 60  # let the other array tasks finish
    while len(summaries(tmp_path / "outputs/cka")) < 6 and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)  # to the submitting process alone, as `kill -INT` sends it
    returncode = proc.wait(timeout=60)
    deadline = time.monotonic() + 10
    while _readers_of(fifo) and time.monotonic() < deadline:
        time.sleep(0.1)
    left_running = _readers_of(fifo)
    kill_readers(fifo, wait=0)
    os.close(writer)
    output, _ = proc.communicate(timeout=60)
    assert returncode == 1, output
    assert not left_running  # the blocked task ended with the sweep
    # a local task is this machine's process: it ends with the sweep (at least the blocked one; the
    # others may still be ending when the signal comes)
    assert re.search(r"interrupted: cancelled [1-3] array task\(s\) still running", output)
    assert "Error: interrupted: 1 launched jobs have no result (marked lost) and 0 were not launched" in output
    with open(tmp_path / "outputs/cka/jobs.csv") as f:
        statuses = {(row["pair"], row["status"]) for row in csv.DictReader(f)}
    assert ("5_6", "lost") in statuses and sum(status == "done" for _, status in statuses) == 6


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
    """A submitted SLURM array task, as far as the launcher uses one."""

    def __init__(self, job_id: str, done: bool, interrupt: bool) -> None:
        self.job_id, self._done, self._interrupt = job_id, done, interrupt

    def done(self) -> bool:
        return self._done

    def results(self) -> list:
        if self._interrupt:
            raise KeyboardInterrupt
        return [[]]


def test_ctrl_c_on_a_slurm_sweep_names_the_tasks_still_queued(monkeypatch, caplog):
    from hydra_plugins.cka_hydra_sweeper._chunked import ChunkedSlurmLauncher
    from omegaconf import OmegaConf

    launcher = ChunkedSlurmLauncher(jobs_per_task=2, submitit_folder="unused")
    launcher.config = OmegaConf.create({})
    tasks = [FakeTask("4242_0", True, False), FakeTask("4242_1", False, True), FakeTask("4242_2", False, False)]

    class Executor:
        def map_array(self, fn, chunks):
            assert [len(chunk) for chunk in chunks] == [2, 2, 1]
            return tasks

    monkeypatch.setattr(launcher, "_executor", lambda: Executor())
    with pytest.raises(KeyboardInterrupt):
        launcher.launch([[f"job={i}"] for i in range(5)], initial_job_idx=0)
    assert ("interrupted: 2 array task(s) are still queued or running; cancel them with: scancel 4242_1 4242_2"
            in caplog.text)
