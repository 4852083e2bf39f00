"""hydra/launcher=slurm on a real scheduler (`.ci/slurm start` brings up a one-node cluster; CI
starts one): the sweep's values, and what only a scheduler does to array tasks: cancel them, end
them at their time limit, report them as they end. CPU only (gpus_per_node=0)."""

import csv
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import Background, read_json, run_cli

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm")]

SWEEP = ["-m", "sweep", "regime=pt3", "layer=5"]  # 21 jobs on the small store (7 with seed_pair=orig_1)
ON_SLURM = ["hydra/launcher=slurm", "hydra.launcher.gpus_per_node=0", "hydra.launcher.cpus_per_task=1",
            "hydra.launcher.mem_gb=1"]
MODULE = '''
import os
import time


def slow_distance(x, y):
    """|mean(x) - mean(y)|, after CKA_TEST_SLEEP_S seconds."""
    time.sleep(float(os.environ.get("CKA_TEST_SLEEP_S", "0")))
    return float((x.mean() - y.mean()).abs())


def fails_once(x, y):
    """The first comparison of all raises (it creates the file CKA_TEST_MARKER); the rest compute."""
    try:
        os.close(os.open(os.environ["CKA_TEST_MARKER"], os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return float((x.mean() - y.mean()).abs())
    raise RuntimeError("the first comparison fails")
'''


@pytest.fixture
def user_dir(tmp_path):
    """A working folder with the test's measures: their module, and conf/measure/ for --config-dir."""
    (tmp_path / "slowmeasures.py").write_text(MODULE)
    (tmp_path / "conf/measure").mkdir(parents=True)
    for name in ("slow_distance", "fails_once"):
        (tmp_path / f"conf/measure/{name}.yaml").write_text(f"_target_: slowmeasures.{name}\nkind: distance\n")
    return tmp_path


class Sweep(Background):
    """A sweep on SLURM in the background: its array and its jobs.csv."""

    def array_id(self) -> str:
        pattern = r"array task\(s\) of up to \d+ jobs \(slurm job (\d+)\)"
        return self.wait_until(lambda: re.search(pattern, self.output), "no array submitted").group(1)

    def running_tasks(self, array_id: str) -> list[str]:
        """The array's running tasks, once one runs."""
        return self.wait_until(lambda: subprocess.run(["squeue", "-h", "-j", array_id, "-t", "R", "-o", "%i"],
                                                      capture_output=True, text=True).stdout.split(),
                               f"no array task of {array_id} ran")

    def wait(self, timeout: float = 300) -> int:
        return self.proc.wait(timeout=timeout)

    def jobs(self) -> list[dict]:
        path = self.cwd / "outputs/cka/jobs.csv"
        try:
            with open(path) as f:
                return list(csv.DictReader(f))
        except FileNotFoundError:
            return []


def summaries(results_dir: Path) -> dict[str, dict]:
    return {str(p.parent.relative_to(results_dir)): read_json(p) for p in results_dir.rglob("summary.json")}


def test_the_sweep_on_slurm_equals_the_workers_sweep_and_records_each_task_as_it_ends(small_store, user_dir,
                                                                                       tmp_path, background):
    """21 CKA jobs and 21 of a measure whose first comparison raises, 7 jobs an array task: 6 tasks."""
    sweep = background(Sweep, user_dir, *SWEEP, f"data.root={small_store}", "measure=cka,fails_once",
                       "--config-dir", "conf", *ON_SLURM, "hydra.launcher.jobs_per_task=7",
                       CKA_TEST_MARKER=str(tmp_path / "marker"))
    seen = set()  # the done counts jobs.csv showed while the sweep ran
    while sweep.proc.poll() is None:
        seen.add(sum(row["status"] == "done" for row in sweep.jobs()))
        time.sleep(0.1)
    assert sweep.wait() == 1, sweep.output
    assert "submitted 42 jobs as 6 array task(s) of up to 7 jobs" in sweep.output
    assert seen - {0, 41}, f"jobs.csv went from nothing to the end: {sorted(seen)}"

    rows = sweep.jobs()
    failed = [row for row in rows if row["status"] == "failed"]
    assert len(failed) == 1 and "measure=fails_once" in failed[0]["settings"], rows
    assert "measure fails_once (_target_: slowmeasures.fails_once) raised RuntimeError: the first comparison fails" \
        in failed[0]["error"]
    assert sum(row["status"] == "done" for row in rows) == 41  # its array task's 6 other jobs too
    assert "1 of 42 jobs did not finish" in sweep.output

    elsewhere = tmp_path / "workers"
    elsewhere.mkdir()
    workers = run_cli(*SWEEP, f"data.root={small_store}", cwd=elsewhere)
    assert workers.returncode == 0 and "21 to run" in workers.stdout, workers.stdout
    on_slurm = {k: v for k, v in summaries(user_dir / "outputs/cka").items() if k.endswith("layer5")}
    expected = summaries(elsewhere / "outputs/cka")
    assert on_slurm.keys() == expected.keys() and len(expected) == 21
    for folder, summary in expected.items():
        assert on_slurm[folder]["final_cka"] == summary["final_cka"], folder


def test_a_cancelled_array_task_loses_its_jobs_alone_within_30_s_and_a_rerun_completes_them(small_store, user_dir,
                                                                                            background):
    """21 jobs of 3 s each, 3 an array task: one running task is cancelled with scancel."""
    args = [*SWEEP, f"data.root={small_store}", "measure=slow_distance", "--config-dir", "conf", *ON_SLURM,
            "hydra.launcher.jobs_per_task=3"]
    sweep = background(Sweep, user_dir, *args, CKA_TEST_SLEEP_S="3")
    task = sweep.running_tasks(sweep.array_id())[0]
    subprocess.run(["scancel", task], check=True)
    cancelled = time.monotonic()
    while not any(row["status"] == "lost" for row in sweep.jobs()) and sweep.proc.poll() is None:
        time.sleep(0.1)
    noticed = time.monotonic() - cancelled
    assert sweep.wait() == 1, sweep.output
    assert noticed < 30, f"the cancelled task was noticed {noticed:.0f} s after scancel"

    rows = sweep.jobs()
    lost = [row for row in rows if row["status"] == "lost"]
    assert 1 <= len(lost) <= 3 and sum(row["status"] == "done" for row in rows) == 21 - len(lost), rows
    for row in lost:
        assert row["error"].startswith(f"array task {task} ended without a result (CANCELLED"), row

    again = run_cli(*args, cwd=user_dir)
    assert again.returncode == 0, again.stdout
    assert f"{21 - len(lost)} jobs already have results for the same settings (skipped); 0 failed before launch; " \
           f"{len(lost)} to run" in again.stdout
    with open(user_dir / "outputs/cka/jobs.csv") as f:
        assert sorted(row["status"] for row in csv.DictReader(f)) == ["done"] * len(lost) + ["skipped"] * (
            21 - len(lost))


def test_an_array_task_past_its_time_limit_loses_its_jobs_with_the_schedulers_reason(small_store, user_dir, background):
    """One array task of 7 jobs of 25 s each, and a time limit of 1 minute: submitit's warning
    signal (120 s before the limit: at once) fails no comparison, the scheduler's limit ends it."""
    sweep = background(Sweep, user_dir, *SWEEP, "seed_pair=orig_1", f"data.root={small_store}",
                       "measure=slow_distance", "--config-dir", "conf", *ON_SLURM, "hydra.launcher.jobs_per_task=7",
                       "hydra.launcher.timeout_min=1", CKA_TEST_SLEEP_S="25")
    assert sweep.wait(timeout=240) == 1, sweep.output
    rows = sweep.jobs()
    lost = [row for row in rows if row["status"] == "lost"]
    assert len(lost) >= 4 and {row["status"] for row in rows} <= {"done", "lost"}, rows
    for row in lost:
        assert re.fullmatch(r"array task \d+(_0)? ended without a result \(TIMEOUT\)", row["error"]), row
    assert not list((user_dir / "outputs").rglob("error.txt"))  # no comparison failed on the way


def test_ctrl_c_cancels_the_array_and_leaves_nothing_in_squeue(small_store, user_dir, background):
    """7 array tasks of one 10-s job: Ctrl-C once the first runs."""
    sweep = background(Sweep, user_dir, *SWEEP, "seed_pair=orig_1", f"data.root={small_store}",
                       "measure=slow_distance", "--config-dir", "conf", *ON_SLURM, "hydra.launcher.jobs_per_task=1",
                       CKA_TEST_SLEEP_S="10")
    array_id = sweep.array_id()
    sweep.running_tasks(array_id)
    sweep.proc.send_signal(signal.SIGINT)
    assert sweep.wait(timeout=60) == 1, sweep.output
    left = subprocess.run(["squeue", "-h", "-j", array_id, "-o", "%i %T"], capture_output=True, text=True)
    assert left.stdout.strip() == "", left.stdout
    assert re.search(rf"interrupted: cancelled \d array task\(s\) still queued or running \({array_id}_", sweep.output)
    assert "Error: interrupted: 7 launched jobs have no result (marked lost)" in sweep.output
    assert {row["status"] for row in sweep.jobs()} == {"lost"}
