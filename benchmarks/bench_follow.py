"""What one new checkpoint costs a growing timeline, in one run on this machine:

    python benchmarks/bench_follow.py [--checkpoints 41] [--cities 4500] [--work DIR]

On a store of the real shape (4500 cities x 256 features; pt3, layer 5, 3 seeds, K checkpoints;
bench_sweep's store), for the narrowed sweep `regime=pt3 layer=5 checkpoints=all` (21 jobs),
linear and RBF:

1. every instance's last checkpoint is held back, and the sweep computes the K-1 steps: the full
   timeline, as a first sweep computes it;
2. the last checkpoint is put back, as training writes it, and the same sweep runs again: each
   timeline is extended by that one step (jobs.csv says `extended` for all 21);
3. checks that the extended timelines equal a fresh computation of all K steps to 1e-12 (run
   with `overwrite=true` on the RBF case only when --fresh is given: it costs a full timeline).

It prints, per kernel, the wall seconds of each sweep (whole `python -m cka_hydra` processes,
Hydra's start-up included) and the jobs' own seconds (summary.json), and their ratios against
1/(K-1), the share of one step in the full timeline. Nothing else should run meanwhile.
"""

import argparse
import shutil
import tempfile
from pathlib import Path

from bench_sweep import run_sweep, write_store

NARROW = ("pt3",), (5,)


def jobs_seconds(results_dir: Path) -> tuple[float, list[str]]:
    from cka_hydra import results_dir as results_dirs

    jobs = results_dirs.read_jobs(results_dir)
    return sum(float(job["seconds"]) for job in jobs), sorted({job["status"] for job in jobs})


def last_checkpoints(root: Path) -> list[Path]:
    """Every instance's newest checkpoint folder at layer 5."""
    folders = []
    for representations in root.glob("**/*_l5/representations"):
        steps = sorted(representations.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
        folders.append(steps[-1])
    return folders


def timelines(results_dir: Path) -> dict[str, list[float]]:
    from cka_hydra import results_dir as results_dirs, run_folder
    from cka_hydra.atomic import read_csv

    return {job["run_dir"]: [float(row["cka"]) for row in read_csv(results_dir / job["run_dir"] /
                                                                    run_folder.timeline_file("cka"))]
            for job in results_dirs.read_jobs(results_dir)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoints", type=int, default=41, help="checkpoints per instance (K)")
    parser.add_argument("--cities", type=int, default=4500)
    parser.add_argument("--work", type=Path, help="folder for the store, kept to be reused (default: a temporary one)")
    parser.add_argument("--fresh", action="store_true", help="also recompute the whole RBF timeline to compare")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_follow-") as tmp:
        work = args.work or Path(tmp)
        store, seconds = write_store(work, args.cities, args.checkpoints, *NARROW)
        k = args.checkpoints
        print(f"store: {args.cities} cities x 256 features, K={k}, pt3 layer 5 (21 jobs), written in {seconds:.0f} s\n")
        print("| kernel | full timeline (K-1 steps) s | jobs' own s | one new step s | jobs' own s | "
              "wall ratio | jobs' ratio | 1/(K-1) | max diff to fresh |\n|---|---|---|---|---|---|---|---|---|")
        held = work / "held"
        for kernel in ("linear", "rbf"):
            overrides = ["regime=pt3", "layer=5", "checkpoints=all", f"cka.kernel={kernel}"]
            results = work / f"out-follow-{kernel}"
            shutil.rmtree(results, ignore_errors=True)
            shutil.rmtree(held, ignore_errors=True)
            moved = []
            for i, folder in enumerate(last_checkpoints(store)):
                moved.append((folder, held / str(i)))
                held.mkdir(parents=True, exist_ok=True)
                shutil.move(folder, moved[-1][1])
            try:
                full_s, _ = run_sweep(store, results, *overrides)
                full_jobs_s, _ = jobs_seconds(results)
            finally:
                for folder, aside in moved:
                    shutil.move(aside, folder)
            step_s, _ = run_sweep(store, results, *overrides)
            step_jobs_s, statuses = jobs_seconds(results)
            if statuses != ["extended"]:
                raise SystemExit(f"{kernel}: the second sweep's jobs are {statuses}, not all extended")
            diff = ""
            if kernel == "linear" or args.fresh:
                fresh = work / f"out-follow-{kernel}-fresh"
                shutil.rmtree(fresh, ignore_errors=True)
                run_sweep(store, fresh, *overrides)
                ours, theirs = timelines(results), timelines(fresh)
                worst = max(abs(a - b) for key in ours for a, b in zip(ours[key], theirs[key], strict=True))
                if worst > 1e-12:
                    raise SystemExit(f"{kernel}: the extended timelines differ from fresh ones by {worst:.1e}")
                diff = f"{worst:.0e}"
            print(f"| {kernel} | {full_s:.1f} | {full_jobs_s:.1f} | {step_s:.1f} | {step_jobs_s:.2f} | "
                  f"{step_s / full_s:.3f} | {step_jobs_s / full_jobs_s:.3f} | {1 / (k - 1):.3f} | {diff} |", flush=True)


if __name__ == "__main__":
    main()
