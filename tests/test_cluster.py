"""The cluster path on one machine: hydra-submitit-launcher's own submitit_local, and
hydra/launcher=slurm_local, the launcher of hydra/launcher=slurm with submitit's local executor."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import read_json, representations_dir, run_cli
from test_sweep import _readers_of

from cka_hydra.__main__ import missing_extra

SMALL_SWEEP = ["-m", "sweep", "regime=pt3", "layer=5", "seed_pair=orig_1"]  # 7 jobs


def summaries(results_dir: Path) -> dict[str, dict]:
    return {str(p.parent.relative_to(results_dir)): read_json(p) for p in results_dir.rglob("summary.json")}


def test_submitit_launchers_give_the_joblib_results(small_store, store_copy, tmp_path):
    joblib = run_cli(*SMALL_SWEEP, f"data.root={small_store}", "hydra.launcher.n_jobs=2", cwd=tmp_path)
    assert joblib.returncode == 0, joblib.stdout
    expected = summaries(tmp_path / "outputs/cka")
    assert len(expected) == 7

    plugin = run_cli(*SMALL_SWEEP, f"data.root={small_store}", "hydra/launcher=submitit_local",
                     "hydra.sweep.dir=outputs/submitit", cwd=tmp_path)
    assert plugin.returncode == 0, plugin.stdout
    assert "[7/7] done 7, skipped 0, failed 0, lost 0" in plugin.stdout
    by_plugin = summaries(tmp_path / "outputs/submitit")
    assert by_plugin.keys() == expected.keys()
    for folder, summary in by_plugin.items():
        assert summary["final_cka"] == pytest.approx(expected[folder]["final_cka"], abs=1e-12)

    # three array tasks of up to 3 jobs, one of which reads a broken file: that job fails alone
    broken = representations_dir(store_copy, "revision/exp2/pt3-2_seed1", "compass", 5) / "checkpoint-164073"
    (broken / "representations.pt").write_text("truncated")
    chunked = run_cli(*SMALL_SWEEP, f"data.root={store_copy}", "hydra/launcher=slurm_local",
                      "hydra.launcher.jobs_per_task=3", "hydra.sweep.dir=outputs/chunked", cwd=tmp_path)
    assert chunked.returncode == 1
    assert "submitted 7 jobs as 3 array tasks of up to 3" in chunked.stdout
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


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the array task through /proc")
def test_a_killed_array_task_loses_its_jobs_and_a_rerun_picks_them_up(small_store, store_copy, tmp_path):
    """A metadata file that is a FIFO blocks the array task reading it; the test kills that task,
    as a scheduler does at a timeout. pt3-6_seed1 is in the job (5_6, orig_1) alone."""
    fifo = representations_dir(store_copy, "revision/exp2/pt3-6_seed1", "trianglearea", 5) / "checkpoint-164073/metadata.json"
    fifo.unlink()
    os.mkfifo(fifo)
    proc = subprocess.Popen(
        [sys.executable, "-m", "cka_hydra", *SMALL_SWEEP, f"data.root={store_copy}", "hydra/launcher=slurm_local",
         "hydra.launcher.jobs_per_task=2"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:  # opening the write end succeeds only once a task has opened the FIFO to read
            writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError:
            time.sleep(0.05)
    else:
        pytest.fail("no array task opened the FIFO")
    while not (readers := _readers_of(fifo)) and time.monotonic() < deadline:
        time.sleep(0.01)  # the reader's descriptor shows in /proc a moment after its open() returns
    for pid in readers:
        os.kill(pid, signal.SIGKILL)
    os.close(writer)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1, output
    # the task held (4_5, orig_1) and (5_6, orig_1): the first may have finished before the kill
    assert "lost   pt3 pair=5_6 seed_pair=orig_1 layer=5: array task" in output
    assert "ended without a result" in output

    fifo.unlink()
    fifo.write_bytes((representations_dir(small_store, "revision/exp2/pt3-6_seed1", "trianglearea", 5)
                      / "checkpoint-164073/metadata.json").read_bytes())
    retry = run_cli(*SMALL_SWEEP, f"data.root={store_copy}", "hydra/launcher=slurm_local", cwd=tmp_path)
    assert retry.returncode == 0, retry.stdout
    assert len(summaries(tmp_path / "outputs/cka")) == 7


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
