"""The timeline sweep against its floor and its arithmetic, in one run on this machine:

    python benchmarks/bench_timeline.py [--work DIR] [--before PYTHON] [--cache-mb 2048]

Writes (or reuses, in --work) a store of the real shape with a whole timeline: 4500 cities x 256
features (both tensor keys, as the real files), pt3 at layer 5, 3 seeds, 41 checkpoints (8 GB).
Then times, each in a process of its own:

- the sweep `-m sweep regime=pt3 layer=5 checkpoints=all` (21 jobs, 861 comparison-steps), and
  its jobs' own seconds (jobs.csv); with --before, the same sweep with another installed version;
- the floor: a plain loop with no Hydra and no cka_hydra, as a user would write it: step by
  step, each checkpoint read once (torch.load, json), each distinct city list filtered once,
  each comparison's linear CKA from its two centred float64 matrices in numpy;
- the arithmetic: only the products the measure cannot do without, one thread: one 256 x n x
  256 float64 product per comparison-step, and one per instance-step for its self-term, on
  matrices read and centred beforehand (not timed).

Prints a markdown table (seconds, and each against the floor and the arithmetic), the peak memory
of the sweep's largest worker less a fresh worker's (the target: at most cache_mb), and checks
that the sweep's values equal the floor's to 1e-12. Nothing else should run meanwhile.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_sweep import run_sweep, sweep_values, timed_process, worker_baseline, write_store

REGIME, LAYER, STEPS = "pt3", 5, 41
FILTER_REGION, FILTER_ID = re.compile(r"^(?!Atlantis).*"), re.compile(r"^[1-9][0-9]{3,}$")  # the study's filter


def comparisons(root: Path) -> list[tuple[str, str, str]]:
    """The sweep's comparisons as (key, folder a, folder b), from the regime file as the group's
    scripts list them: pt3's model pairs that share no task, at seed pairings orig_1, orig_2, 1_2."""
    from cka_hydra.demo import load_regime  # the packaged regime file, as data

    regime = load_regime(REGIME)
    models = {int(k): v for k, v in regime["models"].items()}
    found = []
    for a in sorted(models):
        for b in sorted(models):
            if a < b and not set(models[a]) & set(models[b]):
                for seed_a, seed_b in (("orig", "1"), ("orig", "2"), ("1", "2")):
                    folders = []
                    for index, seed in ((a, seed_a), (b, seed_b)):
                        model = f"{REGIME}-{index}"
                        instance = regime["original_dir" if seed == "orig" else "seed_dir"].format(
                            model=model, index=index, seed=seed)
                        folders.append(root / instance / regime["representations_dir"].format(
                            task=models[index][0], layer=LAYER))
                    found.append((f"{REGIME} {a}_{b} {seed_a}_{seed_b} {LAYER}", *folders))
    return found


# --- the floor and the arithmetic: each its own process ---

def read_checkpoint(folder: Path, filtered: dict) -> tuple:
    """A checkpoint's matrix, and its kept rows by city id (the list filtered once per content)."""
    import torch

    text = (folder / "metadata.json").read_text()
    city_info = json.loads(text)["city_info"]
    key = json.dumps(city_info)
    if key not in filtered:
        filtered[key] = {str(c.get("city_id", c["row_id"])): row for row, c in enumerate(city_info)
                         if FILTER_REGION.match(c.get("region") or c.get("country") or "")
                         and FILTER_ID.match(str(c.get("city_id", c["row_id"])))}
    data = torch.load(folder / "representations.pt", map_location="cpu", weights_only=True, mmap=True)
    return data["representations_flat"].numpy(), filtered[key]


def centred(matrix, rows):
    import numpy as np

    x = matrix[rows].astype(np.float64)
    return x - x.mean(0)


def checkpoints(folder: Path) -> list[Path]:
    return sorted(folder.iterdir(), key=lambda f: int(f.name.split("-")[1]))


def floor(root: Path) -> dict:
    """Every comparison's linear CKA at every step, checkpoint by checkpoint read once."""
    import numpy as np

    found, values, filtered = comparisons(root), {}, {}
    listed = {folder: checkpoints(folder) for _, *folders in found for folder in folders}
    for step_index in range(STEPS):
        loaded = {}
        for key, *folders in found:
            sides = []
            for folder in folders:
                checkpoint = listed[folder][step_index]
                if checkpoint not in loaded:
                    loaded[checkpoint] = read_checkpoint(checkpoint, filtered)
                sides.append(loaded[checkpoint])
            (xa, keep_a), (xb, keep_b) = sides
            ids = [i for i in keep_a if i in keep_b]
            if list(keep_a) != list(keep_b):
                ids.sort()
            x, y = centred(xa, [keep_a[i] for i in ids]), centred(xb, [keep_b[i] for i in ids])
            xy, xx, yy = (np.linalg.norm(p.T @ q) ** 2 for p, q in ((x, y), (x, x), (y, y)))
            values.setdefault(key, []).append(float(xy / np.sqrt(xx * yy)))
    return values


def arithmetic(root: Path) -> float:
    """Seconds of the products alone: per step, each instance's self-term and each comparison's
    cross term, on matrices read and centred before the clock starts."""
    found, filtered, seconds = comparisons(root), {}, 0.0
    for step_index in range(STEPS):
        prepared = {}
        for _, *folders in found:
            for folder in folders:
                if folder not in prepared:
                    matrix, keep = read_checkpoint(checkpoints(folder)[step_index], filtered)
                    prepared[folder] = centred(matrix, sorted(keep.values()))
        start = time.perf_counter()
        for x in prepared.values():
            x.T @ x
        for _, a, b in found:
            prepared[a].T @ prepared[b]
        seconds += time.perf_counter() - start
    return seconds


# --- the run ---

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, help="folder for the store and results, the store kept to be reused")
    parser.add_argument("--before", metavar="PYTHON", help="also time the sweep with this interpreter's cka_hydra")
    parser.add_argument("--cache-mb", type=int, help="the sweep's cache_mb (default: the app's)")
    parser.add_argument("--floor", nargs=2, metavar=("ROOT", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--arithmetic", nargs=2, metavar=("ROOT", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor:
        Path(args.floor[1]).write_text(json.dumps(floor(Path(args.floor[0]))))
        return
    if args.arithmetic:
        Path(args.arithmetic[1]).write_text(json.dumps(arithmetic(Path(args.arithmetic[0]))))
        return

    with tempfile.TemporaryDirectory(prefix="bench_timeline-") as tmp:
        work = args.work or Path(tmp)
        store, written_s = write_store(work, 4500, STEPS, (REGIME,), (LAYER,))
        _, baseline_mb = worker_baseline()
        print(f"store: 4500 cities x 256 features, {REGIME} layer {LAYER}, 3 seeds, {STEPS} checkpoints "
              f"({'written' if written_s > 1 else 'reused'}); {os.cpu_count()} cores\n")
        overrides = [f"regime={REGIME}", f"layer={LAYER}", "checkpoints=all",
                     *([f"cache_mb={args.cache_mb}"] if args.cache_mb is not None else [])]
        rows = []
        for label, python in [("sweep", sys.executable), *([("sweep [before]", args.before)] if args.before else [])]:
            results_dir = work / f"out-timeline{'-before' if python != sys.executable else ''}"
            subprocess.run(["rm", "-rf", str(results_dir)], check=True)
            seconds, memory = run_sweep(store, results_dir, *overrides, python=python)
            jobs = csv_rows(results_dir / "jobs.csv")
            rows.append((label, seconds, sum(float(job["seconds"]) for job in jobs), memory.main_and_workers()[1],
                         results_dir))
        floor_file, arithmetic_file = work / "floor-timeline.json", work / "arithmetic-timeline.json"
        floor_s, _ = timed_process([sys.executable, __file__, "--floor", str(store), str(floor_file)], work)
        timed_process([sys.executable, __file__, "--arithmetic", str(store), str(arithmetic_file)], work,
                      env={**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
        arithmetic_s = json.loads(arithmetic_file.read_text())
        theirs = json.loads(floor_file.read_text())
        print("| what | seconds | / floor | / arithmetic | worker peak - baseline MB | max diff from the floor |")
        print("|---|---|---|---|---|---|")
        for label, seconds, job_s, worker_bytes, results_dir in rows:
            ours = sweep_values(results_dir)
            if ours.keys() != theirs.keys():
                raise SystemExit(f"{label}: {len(ours)} comparisons, the floor {len(theirs)}")
            diff = max(abs(a - b) for key in ours for a, b in zip(ours[key], theirs[key], strict=True))
            if diff > 1e-12:
                raise SystemExit(f"{label}: the values differ from the floor's by {diff:.1e}")
            margin = worker_bytes / 2**20 - baseline_mb
            print(f"| {label}: wall | {seconds:.1f} | {seconds / floor_s:.2f} | {seconds / arithmetic_s:.1f} | "
                  f"{margin:.0f} | {diff:.0e} |")
            print(f"| {label}: its jobs' own seconds | {job_s:.1f} | {job_s / floor_s:.2f} | "
                  f"{job_s / arithmetic_s:.1f} | | |")
        print(f"| floor: a plain loop, each checkpoint read once | {floor_s:.1f} | 1.00 | {floor_s / arithmetic_s:.1f} "
              "| | |")
        print(f"| arithmetic: the products alone, one thread | {arithmetic_s:.1f} | {arithmetic_s / floor_s:.2f} | "
              "1.0 | | |")
        print(f"\nbaseline: a fresh worker's imports, {baseline_mb:.0f} MB")


def csv_rows(path: Path) -> list[dict]:
    import csv

    with open(path, newline="") as f:
        return list(csv.DictReader(f))


if __name__ == "__main__":
    main()
