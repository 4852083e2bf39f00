"""The sweep against its floor, in one run on this machine:

    python benchmarks/bench_sweep.py [--checkpoints 5] [--growth] [--work DIR] [--before PYTHON]

Writes a store of the real shape (4500 cities, 2 tokens x hidden 128 = 256 features, both
tensor keys stored apart as the real files have them; pt2 and pt3, 3 seeds, layers 3-6, K
checkpoints), then times, each as a whole `python -m cka_hydra` process:

- the narrowed sweep `regime=pt3 layer=5` (final), linear and with `cka.kernel=rbf`;
- the default sweep with `checkpoints=final` and with `checkpoints=all`, first run and re-run;
- the floor of each: one plain process, no Hydra, that reads every file the sweep needs
  exactly once and computes each comparison from scratch with the project's own functions;
- with --before, each sweep again with another installed version (`--before
  /path/to/venv/bin/python`), against the same floor: before and after in one run.

It prints a markdown table: wall seconds, sweep/floor, the re-run, the jobs' own seconds
(summary.json), the framework's cost per job (`hydra.launcher.n_jobs=1`: the workers launcher
with one worker, which joblib runs in the sweep's own process, jobs in turn; less
the re-run's fixed cost, a worker's start-up and the jobs' own seconds), the peak memory of the
planning process and of the largest worker, less the baseline (a fresh worker's imports; the
target: at most the cache limit, `cache_mb`), and the bytes the jobs read against each file
once; and checks that the sweep's values equal the floor's to 1e-12.

`--many` adds the load test of many small jobs: `regime=pt1,pt2,pt3 seed_policy=matrix`, layers
3-6 against 3-6 (7,686 jobs) on the demo store, where the framework's part of a job is most of
its cost: wall seconds, and with --before the ratio before/after.

`--growth` adds how the cost grows on the narrowed sweep, each with its own store: cities
1000 and 20000, and K=41 with `final` and `all`. Nothing else should run meanwhile: the
machine's cores are the measurement. Stores and results go to a temporary folder, or to
--work, where the stores are kept and reused by the next run (the K=5 store takes 8 GB).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

REGIMES, LAYERS = ("pt2", "pt3"), (3, 4, 5, 6)
NARROW = ("pt3",), (5,)
PYTHON = sys.executable


# --- the floor: no Hydra, each file read once ---

def floor(root: Path, regimes: tuple[str, ...], layers: tuple[int, ...], checkpoints: str, kernel: str) -> dict:
    """Every comparison of the sweep, as {'regime pair seed_pair layer': [value per step]}."""
    import torch

    from cka_hydra.cka import linear_cka, rbf_cka

    estimator = rbf_cka if kernel == "rbf" else linear_cka
    from cka_hydra.demo import load_regime
    from cka_hydra.filters import STUDY_FILTER, city_id, parse_filter
    from cka_hydra.pairs import SeedPolicy, model_name, valid_comparisons, seed_pairs
    from cka_hydra.store import Layout, common_rows, list_checkpoints, load_cities, load_matrix

    city_filter = parse_filter(STUDY_FILTER)
    values = {}
    for regime_name in regimes:
        regime = load_regime(regime_name)
        models = {int(k): v for k, v in regime["models"].items()}
        layout = Layout(regime["original_dir"], regime["seed_dir"], regime["representations_dir"])
        comparisons, _ = valid_comparisons(regime_name, models, list(layers),
                                          seed_pairs(SeedPolicy.study, regime["seeds"]), None, False)
        for layer in layers:
            loaded = {}  # checkpoint folder -> (matrix, kept rows, their ids): one read per file

            def read(path: Path) -> tuple:
                if path not in loaded:
                    cities = load_cities(path)
                    kept = city_filter.select(cities)
                    loaded[path] = load_matrix(path, len(cities)), kept, [city_id(cities[i]) for i in kept]
                return loaded[path]

            for c in (c for c in comparisons if c.layer == layer):
                folders = [layout.representations_path(root, model_name(regime_name, index), seed,
                                                       models[index][0], layer)
                           for index, seed in ((c.a, c.seed_a), (c.b, c.seed_b))]
                listed = [list_checkpoints(folder) for folder in folders]
                common = sorted(set(listed[0]) & set(listed[1]))
                pairs = []
                for step in (common if checkpoints == "all" else common[-1:]):
                    (xa, kept_a, ids_a), (xb, kept_b, ids_b) = read(listed[0][step]), read(listed[1][step])
                    rows_a, rows_b = common_rows(ids_a, ids_b, "a", "b")
                    pairs.append((xa[torch.tensor([kept_a[i] for i in rows_a])],
                                  xb[torch.tensor([kept_b[i] for i in rows_b])]))
                values[f"{regime_name} {c.pair} {c.seed_pair} {layer}"] = [float(estimator(x, y)) for x, y in pairs]
    return values


def sweep_values(results_dir: Path) -> dict:
    """The sweep's values, keyed as floor() keys them, read through the run folder's owner."""
    from cka_hydra import results_dir as results_dirs, run_folder
    from cka_hydra.atomic import read_csv

    values = {}
    for job in results_dirs.read_jobs(results_dir):
        run_dir = results_dir / job["run_dir"]
        if run_folder.read_result(run_dir) is None:
            raise SystemExit(f"{run_dir}: no result after the sweep")
        key = f"{job['regime']} {job['pair']} {job['seed_pair']} {job['layer']}"
        values[key] = [float(row["cka"]) for row in read_csv(run_dir / run_folder.timeline_file("cka"))]
    return values


# --- measuring processes ---

class PeakMemory(threading.Thread):
    """Polls the peak resident memory (VmHWM) of a process and of each of its descendants."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peaks, self.done = pid, defaultdict(int), threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.1):
            for pid in self._tree():
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                for line in status.splitlines():
                    if line.startswith("VmHWM:"):
                        self.peaks[pid] = max(self.peaks[pid], int(line.split()[1]) * 1024)

    def _tree(self) -> list[int]:
        children = defaultdict(list)
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    parent = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                children[parent].append(int(entry))
        tree, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            tree.append(pid)
            todo += children[pid]
        return tree

    def main_and_workers(self) -> tuple[int, int]:
        workers = [peak for pid, peak in self.peaks.items() if pid != self.pid]
        return self.peaks[self.pid], max(workers, default=0)


def timed_process(args: list[str], cwd: Path, env: dict | None = None) -> tuple[float, PeakMemory]:
    start = time.perf_counter()
    process = subprocess.Popen(args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    memory = PeakMemory(process.pid)
    memory.start()
    output, _ = process.communicate()
    seconds = time.perf_counter() - start
    memory.done.set()
    memory.join()
    if process.returncode:
        raise SystemExit(f"{' '.join(args)} failed:\n{output}")
    return seconds, memory


def run_sweep(root: Path, results_dir: Path, *overrides: str, python: str = PYTHON) -> tuple[float, PeakMemory]:
    return timed_process([python, "-m", "cka_hydra", "-m", "sweep", f"data.root={root}",
                          f"hydra.sweep.dir={results_dir}", *overrides], cwd=results_dir.parent)


def run_floor(root: Path, regimes: tuple[str, ...], layers: tuple[int, ...], checkpoints: str, kernel: str,
              out: Path) -> tuple[float, PeakMemory]:
    return timed_process([PYTHON, __file__, "--floor", str(root), ",".join(regimes),
                          ",".join(map(str, layers)), checkpoints, kernel, str(out)], cwd=out.parent)


def worker_baseline() -> tuple[float, float]:
    """A worker's start-up: seconds for a fresh interpreter to import what a job imports, and its
    peak memory (MB) then: torch's own (the engine's), and Hydra's and ours."""
    code = ("import resource, cka_hydra.app, cka_hydra.engine, hydra_plugins.cka_hydra_sweeper._workers; "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    start = time.perf_counter()
    peak_kb = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, check=True).stdout
    return time.perf_counter() - start, int(peak_kb) / 1024


# --- one measured case ---

def bytes_read(results_dir: Path) -> tuple[int, int]:
    """Bytes the sweep's jobs read (their summaries' bytes_read: the used tensor and the city list
    of each instance a job prepared, none for those its worker's cache held; for code without a
    cache, every side and step of every job, by the sizes on disk) against each file once."""
    from cka_hydra import results_dir as results_dirs, run_folder

    read, unique = 0, {}
    for job in results_dirs.read_jobs(results_dir):
        summary = run_folder.read_result(results_dir / job["run_dir"])
        for side in ("representations_a", "representations_b"):
            for step in summary["inputs"]["steps"]:
                folder = representations(summary, side) / f"checkpoint-{step}"
                size = tensor_bytes(folder) + (folder / "metadata.json").stat().st_size
                read += 0 if "bytes_read" in summary else size
                unique[folder] = size
        read += summary.get("bytes_read", 0)
    return read, sum(unique.values())


def representations(summary: dict, side: str) -> Path:
    """A result's representation folder of one side: its inputs name it below the data root."""
    return Path(summary["data_root"]) / summary["inputs"][side]


def tensor_features(summary: dict) -> int:
    import torch

    folder = representations(summary, "representations_a") / f"checkpoint-{summary['inputs']['steps'][0]}"
    data = torch.load(folder / "representations.pt", map_location="cpu", weights_only=True, mmap=True)
    return data["representations_flat"].shape[1]


def tensor_bytes(folder: Path) -> int:
    """The bytes of the one tensor a job uses (representations_flat) in a checkpoint file."""
    import torch

    data = torch.load(folder / "representations.pt", map_location="cpu", weights_only=True, mmap=True)
    return data["representations_flat"].untyped_storage().nbytes()


def case(name: str, root: Path, work: Path, regimes: tuple[str, ...], layers: tuple[int, ...], checkpoints: str,
         kernel: str = "linear", rerun: bool = True, one_start_s: float | None = None,
         before: str | None = None) -> list[dict]:
    """Time the sweep and its floor on one store, and the sweep with the code of `before` (a Python
    with another version installed) when given; check that every sweep agrees with the floor."""
    from cka_hydra import results_dir as results_dirs, run_folder

    overrides = [f"regime={','.join(regimes)}", f"layer={','.join(map(str, layers))}", f"checkpoints={checkpoints}",
                 *([f"cka.kernel={kernel}"] if kernel != "linear" else [])]
    slug = "".join(ch if ch.isalnum() else "-" for ch in name)
    floor_file = work / f"floor-{slug}.json"
    floor_s, _ = run_floor(root, regimes, layers, checkpoints, kernel, floor_file)
    rows = []
    for label, python in [("", PYTHON), *([(" [before]", before)] if before else [])]:
        results_dir = work / f"out-{slug}{'-before' if label else ''}"
        sweep_s, memory = run_sweep(root, results_dir, *overrides, python=python)
        row = {"case": name + label, "sweep_s": sweep_s, "floor_s": floor_s}
        row["main_mb"], row["worker_mb"] = (b / 2**20 for b in memory.main_and_workers())
        if rerun:
            row["rerun_s"], _ = run_sweep(root, results_dir, *overrides, python=python)
        summaries = [run_folder.read_result(results_dir / job["run_dir"])
                     for job in results_dirs.read_jobs(results_dir)]
        row["jobs"] = len(summaries)
        row["job_s"] = sum(summary["seconds"] for summary in summaries)
        theirs, ours = json.loads(floor_file.read_text()), sweep_values(results_dir)
        if theirs.keys() != ours.keys():
            raise SystemExit(f"{name}: the sweep ran {len(ours)} comparisons, the floor {len(theirs)}")
        row["max_diff"] = max(abs(a - b) for key in ours for a, b in zip(ours[key], theirs[key], strict=True))
        if row["max_diff"] > 1e-12:
            raise SystemExit(f"{name}: the sweep's values differ from the floor's by {row['max_diff']:.1e}")
        row["read_mb"], row["floor_read_mb"] = (b / 2**20 for b in bytes_read(results_dir))
        if one_start_s is not None:  # the framework's cost per job: one process, jobs in turn
            one_dir = work / f"out-{slug}-one{'-before' if label else ''}"
            one_s, _ = run_sweep(root, one_dir, *overrides, "hydra.launcher.n_jobs=1", python=python)
            one_job_s = sum(run_folder.read_result(one_dir / job["run_dir"])["seconds"]
                            for job in results_dirs.read_jobs(one_dir))
            # less what the re-run spends (start-up, planning, checks), torch's import, and the jobs' own work
            row["framework_per_job_s"] = (one_s - row["rerun_s"] - one_start_s - one_job_s) / row["jobs"]
        rows.append(row)
    return rows


def many(work: Path, before: str | None) -> None:
    """The load test: 7,686 jobs on the demo store, after and before, one after the other."""
    from cka_hydra import results_dir as results_dirs
    from cka_hydra.demo import ensure_demo_store

    store = ensure_demo_store(work / "demo_store")
    overrides = ["regime=pt1,pt2,pt3", "hydra.sweeper.seed_policy=matrix", "layer=3,4,5,6", "layer_b=3,4,5,6"]
    seconds = {}
    for label, python in [("", PYTHON), *([(" [before]", before)] if before else [])]:
        results_dir = work / f"out-many{'-before' if label else ''}"
        seconds[label], _ = timed_process([python, "-m", "cka_hydra", "-m", "sweep", f"data.root={store}",
                                           f"hydra.sweep.dir={results_dir}", *overrides], cwd=work)
        jobs = results_dirs.read_jobs(results_dir)
        print(f"\nload test{label}: {len(jobs)} jobs ({sum(job['status'] == 'done' for job in jobs)} done) in "
              f"{seconds[label]:.1f} s", flush=True)
    if before:
        print(f"load test: {seconds[' [before]'] / seconds['']:.2f}x faster than before")


def write_store(work: Path, n_cities: int, n_checkpoints: int, regimes: tuple[str, ...],
                layers: tuple[int, ...]) -> tuple[Path, float]:
    """A store of these dimensions in work, written unless work holds it from an earlier run."""
    from cka_hydra.demo import DemoSpec
    from cka_hydra.demo import write_store as write

    root = work / f"store-{n_cities}-{n_checkpoints}-{'+'.join(regimes)}-{'+'.join(map(str, layers))}"
    start = time.perf_counter()
    if not root.is_dir():
        tmp = root.with_name(root.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        write(tmp, DemoSpec(n_cities=n_cities, hidden=128, n_tokens=2, n_checkpoints=n_checkpoints,
                            layers=layers, regimes=regimes, flat_copy=True))
        tmp.rename(root)
    return root, time.perf_counter() - start


COLUMNS = [("case", "case", "{}"), ("jobs", "jobs", "{}"), ("sweep s", "sweep_s", "{:.1f}"),
           ("floor s", "floor_s", "{:.1f}"), ("sweep/floor", "ratio", "{:.2f}"), ("re-run s", "rerun_s", "{:.1f}"),
           ("jobs' own s", "job_s", "{:.1f}"), ("framework s/job", "framework_per_job_s", "{:.3f}"),
           ("planner MB", "main_mb", "{:.0f}"), ("worker MB", "worker_mb", "{:.0f}"),
           ("worker - baseline MB", "memory_margin_mb", "{:.0f}"), ("read MB", "read_mb", "{:.0f}"),
           ("floor read MB", "floor_read_mb", "{:.0f}"), ("max diff", "max_diff", "{:.0e}")]


def print_rows(rows: list[dict], baseline_mb: float) -> None:
    """One case's lines of the table, as soon as they are measured."""
    for row in rows:
        row["ratio"] = row["sweep_s"] / row["floor_s"]
        row["memory_margin_mb"] = row["worker_mb"] - baseline_mb
        print("| " + " | ".join(fmt.format(row[key]) if key in row else "" for _, key, fmt in COLUMNS) + " |",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoints", type=int, default=5, help="checkpoints per instance (K), e.g. 5 or 41")
    parser.add_argument("--growth", action="store_true", help="also cities 1000-20000 and K 5 vs 41 (narrowed)")
    parser.add_argument("--many", action="store_true", help="also the 7,686 small jobs of the load test")
    parser.add_argument("--work", type=Path, help="folder for the stores and results, kept to be reused "
                                                  "(default: a temporary one)")
    parser.add_argument("--before", metavar="PYTHON", help="also time each sweep with this interpreter's cka_hydra "
                                                            "(another version installed in another environment)")
    parser.add_argument("--floor", nargs=6, metavar=("ROOT", "REGIMES", "LAYERS", "CHECKPOINTS", "KERNEL", "OUT"),
                        help=argparse.SUPPRESS)  # the floor's own process
    args = parser.parse_args()
    if args.floor:
        root, regimes, layers, checkpoints, kernel, out = args.floor
        values = floor(Path(root), tuple(regimes.split(",")), tuple(map(int, layers.split(","))), checkpoints, kernel)
        Path(out).write_text(json.dumps(values))
        return

    with tempfile.TemporaryDirectory(prefix="bench_sweep-") as tmp:
        work = args.work or Path(tmp)
        for results in work.glob("out-*"):  # results of an earlier run: the sweeps must start afresh
            shutil.rmtree(results)
        store, seconds = write_store(work, 4500, args.checkpoints, REGIMES, LAYERS)
        start_s, baseline_mb = worker_baseline()
        print(f"store: 4500 cities x 256 features, K={args.checkpoints}, pt2+pt3, layers 3-6, written in "
              f"{seconds:.0f} s; {os.cpu_count()} cores; a worker's start-up (its imports): {start_s:.2f} s, "
              f"{baseline_mb:.0f} MB (the baseline)\n")
        print("| " + " | ".join(title for title, _, _ in COLUMNS) + " |\n|" + "---|" * len(COLUMNS), flush=True)
        before = args.before
        print_rows(case("narrowed pt3 layer 5, final", store, work, *NARROW, "final", one_start_s=start_s,
                        before=before), baseline_mb)
        print_rows(case("narrowed pt3 layer 5, final, rbf", store, work, *NARROW, "final", "rbf", rerun=False,
                        before=before), baseline_mb)
        print_rows(case("default sweep, final", store, work, REGIMES, LAYERS, "final", one_start_s=start_s,
                        before=before), baseline_mb)
        print_rows(case(f"default sweep, all (K={args.checkpoints})", store, work, REGIMES, LAYERS, "all",
                        before=before), baseline_mb)
        if args.many:
            many(work, before)
        if args.growth:
            for n_cities, k in ((1000, 5), (20000, 5), (4500, 41)):
                grown, _ = write_store(work, n_cities, k, *NARROW)
                for checkpoints in ("final", "all") if k == 41 else ("final",):
                    print_rows(case(f"narrowed, {n_cities} cities, K={k}, {checkpoints}", grown, work, *NARROW,
                                    checkpoints, rerun=False), baseline_mb)


if __name__ == "__main__":
    main()
