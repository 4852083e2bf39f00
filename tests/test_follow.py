"""Following a store while training writes it (hydra.sweeper.follow): each round extends the
timelines whose instances gained a settled checkpoint, runs the comparisons whose instances
appeared, leaves a checkpoint still being written (or rewritten) for a later round, and stops cleanly."""

import re
import shutil
import signal
import time

import pandas as pd
import pytest

from cka_hydra import run_folder

from conftest import Background, jobs_csv, read_json, representations_dir, run_app, compare_into

POLL_S = 0.5
SWEEP = ["-m", "sweep", "regime=pt2", "layer=5", "seed_pair=orig_1", "pair=1_2,1_3", "checkpoints=all"]
STEPS = (0, 82036, 164073)  # the small store's
A, B = ("pt2-1", "distance"), ("revision/exp2/pt2-2_seed1", "angle")  # the pair 1_2's sides
C = "revision/exp2/pt2-3_seed1"  # pair 1_3's second instance
FOLDERS = {"1_2": "pt2/pt2-1_vs_pt2-2_seed1/layer5-all", "1_3": "pt2/pt2-1_vs_pt2-3_seed1/layer5-all"}


def checkpoint(store, side, step):
    return representations_dir(store, *side, 5) / f"checkpoint-{step}"


def move(source, target):
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(source, target)


class Following(Background):
    """The follow sweep in the background; its round lines."""

    def rounds(self):
        return re.findall(r"round (\d+): (.*)", self.output)

    def wait_for(self, pattern):
        self.wait_until(lambda: re.search(pattern, self.output), f"no line {pattern!r}")

    def wait_for_round(self, line, after):
        """Wait for a round after the first `after` whose line is this one."""
        self.wait_until(lambda: line in [text for _, text in self.rounds()[after:]],
                        f"no round {line!r} after round {after}")

    def next_rounds(self, n):
        """Wait until n more rounds have ended; their lines."""
        seen = len(self.rounds())
        self.wait_for(rf"round {seen + n}: ")
        return [line for _, line in self.rounds()[seen:seen + n]]


def timeline(results, pair):
    return results / FOLDERS[pair] / run_folder.timeline_file("cka")


def test_rounds_extend_new_checkpoints_wait_for_half_written_ones_and_stop_on_sigint(store_copy, tmp_path,
                                                                                     background):
    held = tmp_path / "held"  # what training has not written yet
    for side in (A, B):
        for step in STEPS[1:]:
            move(checkpoint(store_copy, side, step), held / side[0] / str(step))
    move(store_copy / C, held / "instance")
    follow = background(Following, tmp_path, *SWEEP, f"data.root={store_copy}", f"hydra.sweeper.follow={POLL_S}")
    follow.wait_for("following the store: a round every 0.5 s")
    assert "1 failed before launch; 1 to run" in follow.output  # pt2-3_seed1 is not there yet
    results = tmp_path / "outputs/cka"
    first = timeline(results, "1_2").read_text()

    # an instance appears: its comparison is computed
    move(held / "instance", store_copy / C)
    follow.wait_for_round("0 timelines extended, 1 computed, 0 failed", after=0)
    assert len(pd.read_csv(timeline(results, "1_3"))) == 1  # the steps both sides hold: 0

    # step 82036: B's folder whole, A's without its metadata yet
    move(held / B[0] / "82036", checkpoint(store_copy, B, 82036))
    partial = checkpoint(store_copy, A, 82036)
    partial.mkdir()
    shutil.copy(held / A[0] / "82036/representations.pt", partial)
    lines = follow.next_rounds(3)
    assert all("extended" not in line for line in lines) and "2 waiting for a checkpoint to settle" in lines
    shutil.copy(held / A[0] / "82036/metadata.json", partial)
    follow.wait_for_round("2 timelines extended by 1 step, 0 computed, 0 failed", after=len(follow.rounds()))

    # step 164073: A's tensor file grows across several polls before it is whole
    move(held / B[0] / "164073", checkpoint(store_copy, B, 164073))
    growing = checkpoint(store_copy, A, 164073)
    growing.mkdir()
    shutil.copy(held / A[0] / "164073/metadata.json", growing)
    data = (held / A[0] / "164073/representations.pt").read_bytes()
    before = len(follow.rounds())
    with open(growing / "representations.pt", "wb") as out:
        for start in range(0, len(data), len(data) // 8 + 1):
            out.write(data[start:start + len(data) // 8 + 1])
            out.flush()
            time.sleep(POLL_S / 2)
    during = [line for _, line in follow.rounds()[before:]]
    assert len(during) >= 2 and all("extended" not in line for line in during), during
    follow.wait_for_round("2 timelines extended by 1 step, 0 computed, 0 failed", after=before)

    assert {(row["pair"], row["status"]) for row in jobs_csv(tmp_path)} == {("1_2", "extended"), ("1_3", "extended")}
    for pair in FOLDERS:  # each round's rows kept byte for byte; the values a fresh timeline's
        ours = timeline(results, pair).read_text()
        if pair == "1_2":
            assert ours.startswith(first)
        summary = read_json(results / FOLDERS[pair] / run_folder.SUMMARY_FILE)
        assert summary["steps"] == list(STEPS) and summary["computed_steps"] == [164073]
        fresh = compare_into(tmp_path / "fresh", *SWEEP[2:4], "seed_pair=orig_1", f"pair={pair}", "checkpoints=all",
                               f"data.root={store_copy}")
        difference = pd.read_csv(timeline(results, pair)) - pd.read_csv(fresh / run_folder.timeline_file("cka"))
        assert difference.abs().max().max() < 1e-12

    # a checkpoint both timelines hold, rewritten in place: they wait whole until it settles (never
    # computed without it), then are computed again, since their inputs changed
    rewritten = checkpoint(store_copy, A, 82036) / "representations.pt"
    before = len(follow.rounds())
    rewritten.write_bytes(rewritten.read_bytes())
    follow.wait_for_round("0 timelines extended, 2 computed, 0 failed", after=before)
    assert [line for _, line in follow.rounds()[before:]][0] == "2 waiting for a checkpoint to settle"
    for pair in FOLDERS:
        assert read_json(results / FOLDERS[pair] / run_folder.SUMMARY_FILE)["steps"] == list(STEPS)

    follow.proc.send_signal(signal.SIGINT)
    assert follow.proc.wait(timeout=20) == 0, follow.output
    assert re.search(r"following stopped by SIGINT after round \d+; jobs.csv holds every job's state", follow.output)
    assert "failed" not in " ".join(line for _, line in follow.rounds()).replace("0 failed", "")
    assert {(row["pair"], row["status"]) for row in jobs_csv(tmp_path)} == {("1_2", "done"), ("1_3", "done")}


def test_sigterm_between_rounds_stops_following_and_an_idle_store_ends_it(small_store, tmp_path, background):
    follow = background(Following, tmp_path, *SWEEP, f"data.root={small_store}", f"hydra.sweeper.follow={POLL_S}")
    follow.wait_for(r"round 1: nothing new")
    follow.proc.send_signal(signal.SIGTERM)
    assert follow.proc.wait(timeout=20) == 0, follow.output
    assert re.search(r"following stopped by SIGTERM after round \d+", follow.output)

    idle = run_app(*SWEEP, f"data.root={small_store}", "hydra.sweeper.follow=0.2", "hydra.sweeper.follow_idle=1",
                   cwd=tmp_path)
    assert idle.returncode == 0, idle.stdout
    assert "2 jobs already have results for the same settings (skipped)" in idle.stdout
    assert "following ended: no new checkpoint for 1 s (hydra.sweeper.follow_idle)" in idle.stdout


@pytest.mark.parametrize("setting, message", [
    ("hydra/launcher=slurm_local", "Error: hydra.sweeper.follow=5: following polls the store from this machine in a "
                                   "loop, with its own workers: use it with hydra/launcher=workers (the default), not a "
                                   "cluster launcher"),
    ("hydra.sweeper.follow=0", "Error: hydra.sweeper.follow=0: expected seconds between polls of the store"),
    ("hydra.sweeper.follow_idle=-1", "Error: hydra.sweeper.follow_idle=-1: expected the seconds without a new "
                                     "checkpoint"),
])
def test_following_is_refused_where_it_cannot_work(small_store, tmp_path, setting, message):
    result = run_app(*SWEEP, f"data.root={small_store}", "hydra.sweeper.follow=5", setting, cwd=tmp_path)
    assert result.returncode == 1 and message in result.stdout, result.stdout
    assert not (tmp_path / "outputs").exists()
