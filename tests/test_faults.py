"""Faults and hostile input, injected: kills mid-write, checkpoints still being written, files
that are broken or hostile, regime files that point outside their folders."""

import csv
import errno
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import (
    Background, BlockedRead, compare_into, jobs_csv, read_json, representations_dir, run_app, save_checkpoint,
)
from hypothesis import event, given, settings
from hypothesis import strategies as st

from cka_hydra import run_folder
from cka_hydra.schema import DataConfig, PairConfig, RegimeConfig, RunConfig, SeedPairConfig
from cka_hydra.demo import load_regime
from cka_hydra.errors import InputError
from cka_hydra.filters import parse_filter
from cka_hydra.cities import kept_cities
from cka_hydra import lifecycle
from cka_hydra.store import common_rows, load_cities, load_matrix

RUN = ["regime=pt2", "pair=1_2", "seed_pair=orig_1", "layer=5"]
B_FOLDER = ("revision/exp2/pt2-2_seed1", "angle", 5)  # the second instance of RUN
FINAL = "checkpoint-164073"


def killed_at_rename(number: int, results_dir: Path, store: Path) -> int:
    """Run RUN in a child process that dies (os._exit, as SIGKILL would leave it) at its
    number-th file rename: 1 is the timeline's, 2 the summary's. Returns the exit status."""
    code = f"""
import os, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from pathlib import Path
from conftest import compare_into
renames, replace = [], os.replace
def dying(src, dst):
    renames.append(dst)
    if len(renames) == {number}:
        os._exit(137)
    replace(src, dst)
os.replace = dying
compare_into(Path({str(results_dir)!r}), *{RUN!r}, "data.root={store}")
"""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).returncode


@pytest.mark.parametrize("number, left", [(1, {".cka_timeline.tmp-*.csv"}), (2, {"cka_timeline.csv", ".summary.tmp-*.json"})])
def test_a_job_killed_while_writing_never_counts_and_is_recomputed(small_store, tmp_path, number, left):
    assert killed_at_rename(number, tmp_path, small_store) == 137
    run_dir = next(tmp_path.rglob("layer5"))
    # the half-written file and Hydra's record of the run (written before it computes), nothing else
    assert {next(iter(run_dir.glob(pattern))).name for pattern in left} | {".hydra", "cka.log"} == {
        p.name for p in run_dir.iterdir()}
    assert run_folder.read_result(run_dir) is None
    again = compare_into(tmp_path, *RUN, f"data.root={small_store}")
    assert again == run_dir and 0 < run_folder.read_result(run_dir)["final_cka"] < 1


def test_a_checkpoint_still_being_written_is_never_used(store_copy, tmp_path):
    """Training still writes: a newer checkpoint of one model, its tensor there but not its metadata."""
    folder = representations_dir(store_copy, "pt2-1", "distance", 5)
    newer = folder / "checkpoint-170000"
    newer.mkdir()
    (newer / "representations.pt").write_bytes((folder / FINAL / "representations.pt").read_bytes()[:1000])
    run_dir = compare_into(tmp_path, *RUN, f"data.root={store_copy}", "checkpoints=all")
    assert run_folder.read_result(run_dir)["steps"] == [0, 82036, 164073]
    # complete, but on one side only: `final` is still the last step both have
    save_checkpoint(newer, {"representations_flat": torch.zeros(60, 12)}, load_cities(folder / FINAL))
    final = compare_into(tmp_path, *RUN, f"data.root={store_copy}")
    summary = run_folder.read_result(final)
    assert summary["steps"] == [164073] and summary["inputs"]["steps"] == [164073]


def test_half_precision_representations_are_upcast(store_copy, tmp_path):
    reference = run_folder.read_result(compare_into(tmp_path / "f32", *RUN, f"data.root={store_copy}"))
    for dtype in (torch.float16, torch.bfloat16):
        for instance in ("pt2-1", "distance", 5), B_FOLDER:
            checkpoint = representations_dir(store_copy, *instance) / FINAL
            flat = load_matrix(checkpoint, 60)
            save_checkpoint(checkpoint, {"representations_flat": flat.to(dtype)}, load_cities(checkpoint))
        summary = run_folder.read_result(compare_into(tmp_path / str(dtype), *RUN, f"data.root={store_copy}"))
        # the values are rounded to 8 or 11 bits of mantissa, then compared in float64
        assert summary["final_cka"] == pytest.approx(reference["final_cka"], abs=0.02)


def test_city_ids_of_mixed_types_are_one_city(tmp_path):
    """1234 and "1234" are one city: across files they pair up, within one they are duplicates."""
    save_checkpoint(tmp_path / "a", {"representations_flat": torch.zeros(2, 1)}, [{"city_id": 1234}, {"city_id": 5}])
    save_checkpoint(tmp_path / "b", {"representations_flat": torch.zeros(2, 1)}, [{"city_id": "5"}, {"city_id": "1234"}])
    keep_all = parse_filter(None)
    ids_a, ids_b = kept_cities(tmp_path / "a", keep_all).ids, kept_cities(tmp_path / "b", keep_all).ids
    assert common_rows(ids_a.tolist(), ids_b.tolist(), "a", "b") == ([0, 1], [1, 0])
    with pytest.raises(InputError, match=r"city id '1234' appears in rows 0 and 1"):
        common_rows(["1234", "1234"], [], "c", "d")
    assert kept_cities(tmp_path / "a", parse_filter("city_id:^12")).ids.tolist() == ["1234"]


def test_a_broken_city_list_in_a_sweep_fails_its_jobs_alone(store_copy, tmp_path):
    """The sweeper checks the filter against the first job's city lists: a broken file there is
    that job's failure, not the sweep's."""
    metadata = representations_dir(store_copy, *("revision/exp2/pt3-2_seed1", "compass", 5)) / FINAL / "metadata.json"
    metadata.write_text("[1, 2]")  # pt3-2_seed1 is in the first job, (1_2, orig_1), alone
    result = run_app("-m", "sweep", "regime=pt3", "layer=5", "seed_pair=orig_1", "hydra/launcher=basic",
                     f"data.root={store_copy}", cwd=tmp_path)
    assert result.returncode == 1 and "1 of 7 jobs did not finish" in result.stdout, result.stdout
    assert f"failed pt3 pair=1_2 seed_pair=orig_1 layer=5: {metadata}: expected JSON with a 'city_info' list" in (
        result.stdout)


@pytest.mark.parametrize("breakage, message", [
    ("truncated tensor file", r"representations.pt: not a readable torch.save file \(not a zip archive"),
    ("invalid JSON", r"metadata.json: expected JSON with a 'city_info' list"),
    ("rank 1", r"expected a floating-point tensor of shape \(n_cities, ...\), got torch.float32 of shape \(60,\)"),
])
def test_a_broken_file_fails_its_job_with_one_line_naming_it(store_copy, tmp_path, breakage, message):
    checkpoint = representations_dir(store_copy, *B_FOLDER) / FINAL
    if breakage == "truncated tensor file":
        (checkpoint / "representations.pt").write_bytes(bytes(16))
    elif breakage == "invalid JSON":
        (checkpoint / "metadata.json").write_text('{"city_info": [')
    else:
        save_checkpoint(checkpoint, {"representations_flat": torch.zeros(60)}, load_cities(checkpoint))
    result = run_app(*RUN, f"data.root={store_copy}", cwd=tmp_path)
    assert result.returncode == 1
    errors = [line for line in result.stdout.splitlines() if "[ERROR]" in line or line.startswith("Error: ")]
    assert len(errors) == 1 and str(checkpoint) in errors[0], result.stdout
    assert pytest.importorskip("re").search(message, errors[0]), errors[0]
    assert not list(tmp_path.rglob("summary.json"))


def test_an_empty_file_is_a_checkpoint_still_being_written(store_copy, tmp_path):
    (representations_dir(store_copy, *B_FOLDER) / FINAL / "representations.pt").write_bytes(b"")
    run_dir = compare_into(tmp_path, *RUN, f"data.root={store_copy}")
    assert read_json(run_dir / "summary.json")["steps"] == [82036]  # the last complete step both sides hold


REGIME = ('name: evil\nmodels:\n  1: [distance]\n  2: [angle]\nseeds: [orig, "1"]\n'
          'original_dir: "{model}"\nseed_dir: "{model}_seed{seed}"\nrepresentations_dir: "{task}/l{layer}"\n')


@pytest.mark.parametrize("change, message", [
    (('original_dir: "{model}"', 'original_dir: "../../{model}"'),
     "regime/evil.yaml, line 6: regime 'evil': original_dir='../../{model}': expected a relative path below "
     "data.root"),
    (("  2: [angle]", "  2: [angle]\n  1: [compass]"), "regime/evil.yaml, line 5: 1 is listed twice"),
], ids=["path outside data.root", "model listed twice"])
def test_a_bad_regime_file_is_refused_before_anything_runs(small_store, tmp_path, change, message):
    conf = tmp_path / "conf" / "regime"
    conf.mkdir(parents=True)
    (conf / "evil.yaml").write_text(REGIME.replace(*change))
    search = f"hydra.searchpath=[file://{tmp_path / 'conf'}]"
    for command in (["regime=evil", "pair=1_2"], ["-m", "sweep", "regime=evil", "layer=5"]):
        result = run_app(*command, search, f"data.root={small_store}", cwd=tmp_path)
        assert result.returncode == 1 and message in result.stdout, result.stdout
        assert len(result.stdout.splitlines()) == 1 and not (tmp_path / "outputs").exists()


def _group_alive(pgid: int) -> list[int]:
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(stat.parent.name))
    return alive


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="watches the processes through /proc")
@pytest.mark.parametrize("signum, to_group", [(signal.SIGINT, True), (signal.SIGTERM, False)],
                         ids=["ctrl-c to the terminal's process group", "sigterm to the sweep"])
def test_an_interrupted_sweep_stops_its_workers_records_its_jobs_and_resumes(store_copy, tmp_path, background,
                                                                              signum, to_group):
    """A job blocks on a metadata file that is a FIFO, so the sweep is surely mid-way when the signal comes."""
    blocked = BlockedRead(representations_dir(store_copy, "revision/exp2/pt3-3_seed2", "crossing", 5) / FINAL)
    sweep = background(Background, tmp_path, "-m", "sweep", "regime=pt3", "layer=5", f"data.root={store_copy}",
                       "hydra.launcher.n_jobs=2", own_group=True)
    proc = sweep.proc
    sweep.wait_until(blocked.reader_opened, "no worker opened the FIFO", timeout=60)
    os.killpg(proc.pid, signum) if to_group else proc.send_signal(signum)
    sent = time.monotonic()
    output = sweep.finish(timeout=60)
    blocked.release()
    assert time.monotonic() - sent < 15
    assert proc.returncode == 1 and "Error: interrupted:" in output and "Traceback" not in output, output
    while _group_alive(proc.pid) and time.monotonic() - sent < 15:  # no worker lingers
        time.sleep(0.1)
    assert not _group_alive(proc.pid)

    with open(tmp_path / "outputs/cka/jobs.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 21 and {r["status"] for r in rows} <= {"done", "lost", "pending"}
    for row in rows:  # jobs.csv is true: done means a result, and nothing else has one
        finished = run_folder.read_result(tmp_path / "outputs/cka" / row["run_dir"]) is not None
        assert finished == (row["status"] == "done"), row
    assert {(r["pair"], r["status"]) for r in rows if r["seed_pair"] == "orig_2"} >= {("2_3", "lost")}

    if signum == signal.SIGINT:
        return  # the re-run, once
    blocked.restore()
    again = run_app("-m", "sweep", "regime=pt3", "layer=5", f"data.root={store_copy}", cwd=tmp_path)
    n_done = sum(r["status"] == "done" for r in rows)
    assert f"{n_done} jobs already have results for the same settings (skipped); 0 failed before launch; " \
           f"{21 - n_done} to run" in again.stdout and again.returncode == 0, again.stdout


def test_two_sweeps_and_a_run_at_once_compute_each_comparison_once(small_store, tmp_path):
    """Two terminals start the same sweep into one folder while a third runs one of its jobs."""
    command = [sys.executable, "-m", "cka_hydra", "-m", "sweep", "regime=pt3", "layer=5", f"data.root={small_store}",
               "hydra/launcher=basic"]
    single = [sys.executable, "-m", "cka_hydra", "regime=pt3", "pair=1_2", "seed_pair=orig_1", "layer=5",
              f"data.root={small_store}"]
    procs = [subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for args in (command, single)]
    here = run_app(*command[3:], cwd=tmp_path)  # the second sweep, in this process meanwhile
    outputs = [proc.communicate(timeout=120)[0] for proc in procs]
    assert [proc.returncode for proc in procs] + [here.returncode] == [0, 0, 0], [*outputs, here.stdout]
    results = tmp_path / "outputs/cka"
    with open(results / "jobs.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 21 and {r["status"] for r in rows} <= {"done", "skipped"}
    computed = 0
    for row in rows:  # every result whole; each computed by one process, found done by the others
        run_dir = results / row["run_dir"]
        assert run_folder.read_result(run_dir) is not None
        log = (run_dir / "cka.log").read_text()
        computed += log.count("final cka")
        assert log.count("final cka") == 1, log
    assert computed == 21


@pytest.mark.parametrize("errno_, words", [(errno.ENOSPC, "No space left on device"),
                                            (errno.EROFS, "Read-only file system")])
def test_a_full_or_read_only_disk_is_one_clear_error_and_damages_nothing(small_store, tmp_path, monkeypatch,
                                                                         errno_, words):
    done = compare_into(tmp_path / "outputs/cka", *RUN, f"data.root={small_store}")
    before = {p: p.read_bytes() for p in done.rglob("*") if p.is_file()}

    def refuse(path, *args, **kwargs):
        raise OSError(errno_, os.strerror(errno_), str(path))

    monkeypatch.setattr(Path, "write_bytes", refuse)  # every file cka_hydra writes goes through these
    monkeypatch.setattr(Path, "write_text", refuse)
    single = run_app(*RUN, "checkpoints=all", f"data.root={small_store}", cwd=tmp_path)
    errors = [line for line in single.stdout.splitlines() if "[ERROR]" in line or line.startswith("Error: ")]
    assert single.returncode == 1 and len(errors) == 1 and "Traceback" not in single.stdout, single.stdout
    assert f"layer5-all/cka_timeline.csv: cannot write it ({words})" in errors[0]
    failed = done.with_name("layer5-all")
    assert not [p for p in failed.iterdir() if p.name != ".hydra" and p.suffix != ".log"]  # no half-file

    sweep = run_app("-m", "sweep", "regime=pt3", "layer=5", f"data.root={small_store}", cwd=tmp_path)
    assert sweep.returncode == 1 and "Traceback" not in sweep.stdout, sweep.stdout
    assert f"Error: {tmp_path / 'outputs/cka/multirun.yaml'}: cannot write it ({words})" in sweep.stdout
    assert {p: p.read_bytes() for p in done.rglob("*") if p.is_file()} == before


@st.composite
def stores(draw) -> tuple[list[list[dict]], list[torch.Tensor]]:
    """Two instances' final checkpoints: random cities (ids of mixed types drawn from one pool, so
    that the sides share some; now and then repeated or missing ids and fields) and random values
    (constant columns and matrices among them; now and then a NaN or an Inf)."""
    cities, matrices = [], []
    now_and_then = st.sampled_from([False] * 7 + [True])  # an 8th of the time, not hypothesis's favourite 0
    well_formed = not draw(now_and_then)
    for _ in range(2):
        if well_formed:
            n = draw(st.integers(15, 20))
            ids = draw(st.lists(st.integers(1000, 1019), min_size=n, max_size=n, unique=True))
            ids = [str(i) if draw(st.booleans()) else i for i in ids]
        else:
            n = draw(st.integers(1, 30))
            ids = draw(st.lists(st.one_of(st.integers(0, 30), st.sampled_from(["7", "x", ""]), st.none()),
                                min_size=n, max_size=n))
        regions = draw(st.lists(st.sampled_from(["Europe", "Asia", "Atlantis", "", None]), min_size=n, max_size=n))
        cities.append([{"row_id": row, **({} if i is None else {"city_id": i}), **({} if r is None else {"region": r})}
                       for row, (i, r) in enumerate(zip(ids, regions))])
        d = draw(st.integers(1, 4))
        values = np.random.default_rng(draw(st.integers(0, 2**16))).normal(
            draw(st.sampled_from([0.0, 1e3])), draw(st.sampled_from([1e-3, 1.0, 100.0])), size=(n, d))
        if draw(st.booleans()):
            values[:, draw(st.integers(0, d - 1))] = 3.0  # a constant column: fine
        if draw(now_and_then):
            values[:] = 3.0  # a constant representation: CKA is undefined
        if draw(now_and_then):
            values[draw(st.integers(0, n - 1)), draw(st.integers(0, d - 1))] = draw(st.sampled_from([np.nan, np.inf]))
        matrices.append(torch.from_numpy(values.astype(np.float32)))
    return cities, matrices


FILTER_TEXT = st.text(alphabet="regioncity_dnamexX:^$.*+?()[]|&!0-9 ", max_size=30)


@settings(max_examples=40, deadline=None)
@given(stores(), st.one_of(st.sampled_from([None, "", "region:^(?!Atlantis)", "city_id:^10[01] || region:^[A-Z]",
                                            None, "regoin:^E"]), FILTER_TEXT))
def test_any_small_store_and_filter_give_a_value_or_the_projects_error(store, city_filter):
    cities, matrices = store
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for instance, task, these, matrix in zip(("pt2-1", "revision/exp2/pt2-2_seed1"), ("distance", "angle"),
                                                 cities, matrices):
            save_checkpoint(representations_dir(root, instance, task, 5) / FINAL, {"representations_flat": matrix},
                            these)
        try:
            run = RunConfig(regime=RegimeConfig(**load_regime("pt2")), pair=PairConfig(1, 2),
                            seed_pair=SeedPairConfig("orig", "1"), layer=5, city_filter=city_filter,
                            data=DataConfig(str(root)), device="cpu")
            lifecycle.run(run, root / "out")
        except InputError:
            event("refused with the project's error")
            return
        event("computed")
        value = run_folder.read_result(root / "out")["final_cka"]
        assert -1e-9 <= value <= 1 + 1e-9


def test_a_symlink_loop_in_the_store_is_ignored_or_named(store_copy, tmp_path):
    folder = representations_dir(store_copy, *B_FOLDER)
    (folder / "checkpoint-999999").symlink_to(folder / "checkpoint-999999")  # a loop among the checkpoints
    run_dir = compare_into(tmp_path, *RUN, f"data.root={store_copy}")
    assert run_folder.read_result(run_dir)["steps"] == [164073]
    shutil.rmtree(folder)
    folder.symlink_to(folder)  # the representation folder itself
    with pytest.raises(InputError, match=r"no representation folder at .*angle_firstcity_last_and_trans_l5"):
        compare_into(tmp_path, *RUN, f"data.root={store_copy}", "checkpoints=all")


def test_an_unreadable_folder_in_the_store_is_named(store_copy, tmp_path, monkeypatch):
    """As chmod 0 does for a user (root reads any folder, so the refusal is injected)."""
    folder = representations_dir(store_copy, *B_FOLDER)
    iterdir = Path.iterdir

    def refuse(path):
        if path == folder:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return iterdir(path)

    monkeypatch.setattr(Path, "iterdir", refuse)
    result = run_app(*RUN, f"data.root={store_copy}", cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stdout, result.stdout
    assert f"Error: {folder}: cannot list it (Permission denied)" in result.stdout
    assert not (tmp_path / "outputs").exists()


def test_a_file_restored_with_its_times_after_a_failed_recompute_is_computed_again(store_copy, tmp_path):
    """A result whose recompute failed (error.txt beside it) does not count; once its file is back
    as it was (a backup restored with its times, cp -p), the next sweep computes it again rather
    than skip a result the report would leave out."""
    sweep = ["-m", "sweep", "regime=pt3", "layer=5", "seed_pair=orig_1", f"data.root={store_copy}"]
    assert run_app(*sweep, cwd=tmp_path).returncode == 0
    checkpoint = representations_dir(store_copy, "revision/exp2/pt3-2_seed1", "compass", 5) / FINAL
    backup = shutil.copytree(checkpoint, tmp_path / "backup")  # with the files' times
    flat = torch.load(backup / "representations.pt", weights_only=True)["representations_flat"].clone()
    flat[0, 0] = float("nan")
    torch.save({"representations_flat": flat}, checkpoint / "representations.pt")
    assert run_app(*sweep, "overwrite=true", cwd=tmp_path).returncode == 1
    run_dir = tmp_path / "outputs/cka/pt3/pt3-1_vs_pt3-2_seed1/layer5"
    assert "NaN/Inf" in (run_dir / "error.txt").read_text()
    shutil.copy2(backup / "representations.pt", checkpoint)  # size and modification time as recorded
    again = run_app(*sweep, cwd=tmp_path)
    assert again.returncode == 0 and "6 jobs already have results" in again.stdout, again.stdout
    assert not (run_dir / "error.txt").exists()
    assert {row["status"] for row in jobs_csv(tmp_path) if row["pair"] == "1_2"} == {"done"}
