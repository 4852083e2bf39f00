"""Each measure's first sweep against linear CKA's, at the real shape, in one run on this machine:

    python benchmarks/bench_measures.py [--work DIR] [--narrow] [--measures cka,shape,...]

Writes (or reuses, in --work) bench_sweep.py's store of the real shape: 4500 cities x 256
features, pt2 and pt3, 3 seeds, layers 3-6, 5 checkpoints. Then, each as a whole
`python -m cka_hydra` process into a results dir of its own (a first sweep: nothing to skip):

- the default sweep (`checkpoints=final`) with each measure alone, `measure=NAME`;
- the same sweep with every measure at once, `measure=cka,procrustes,...`, which prepares each
  instance's rows once for all of them (against the sum of the sweeps alone).

With --narrow, the narrowed sweep `regime=pt3 layer=5` instead. Prints a markdown table: each
sweep's wall seconds and its ratio to linear CKA's, its jobs' own seconds (summary.json), and in
this process one instance's preparing and one comparison's cost (the median of 5), at the same
shape. Nothing else should run meanwhile: the machine's cores are the measurement.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench_sweep import LAYERS, NARROW, REGIMES, run_sweep, write_store

MEASURES = ("cka", "procrustes", "shape", "svcca", "mknn", "rsa")


def jobs_seconds(results_dir: Path) -> float:
    """The jobs' own seconds, as their summaries say."""
    from cka_hydra import results_dir as results_dirs, run_folder

    return sum(run_folder.read_result(results_dir / job["run_dir"])["seconds"]
               for job in results_dirs.read_jobs(results_dir) if job["status"] == "done")


def unit_costs(name: str) -> tuple[float, float]:
    """Median seconds of preparing one instance and of one comparison, 4500 x 256 random rows."""
    import torch

    from cka_hydra.schema import CKAConfig, MeasureConfig

    measure = MeasureConfig(name)
    terms = measure.registered.terms(CKAConfig(), measure)
    generator = torch.Generator().manual_seed(0)
    x, y = (torch.randn(4500, 256, generator=generator) for _ in range(2))
    if name == "procrustes":  # on its 3 principal components, as a run computes it
        from cka_hydra.cka import principal_components

        x, y = principal_components(x, 3), principal_components(y, 3)

    def median(work) -> tuple[float, object]:
        """The median seconds of 5 calls, and the last call's result."""
        times = []
        for _ in range(5):
            start = time.perf_counter()
            result = work()
            times.append(time.perf_counter() - start)
        return statistics.median(times), result

    prepare_s, a = median(lambda: terms.prepare(x))
    b = terms.prepare(y)
    compare_s, _ = median(lambda: terms.compare(a, b))
    return prepare_s, compare_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, help="folder for the store and results, the store kept to be reused")
    parser.add_argument("--narrow", action="store_true", help="the narrowed sweep regime=pt3 layer=5")
    parser.add_argument("--measures", default=",".join(MEASURES), help="the measures, cka first")
    args = parser.parse_args()
    from cka_hydra import results_dir as results_dirs

    measures = args.measures.split(",")
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_measures-"))
    work.mkdir(parents=True, exist_ok=True)
    regimes, layers = NARROW if args.narrow else (REGIMES, LAYERS)
    root, _ = write_store(work, 4500, 5, REGIMES, LAYERS)
    narrowing = [f"regime={','.join(regimes)}", f"layer={','.join(map(str, layers))}"]
    case = "narrowed" if args.narrow else "default"
    print(f"{case} sweep at 4500 cities x 256 features, checkpoints=final; store {root}\n")
    print("| measure | jobs | sweep s | / cka | jobs' own s | prepare s / instance | compare ms / comparison |")
    print("|---|---|---|---|---|---|---|")
    seconds = {}
    for name in measures:
        out = work / f"measures-{case}-{name}"
        if out.exists():
            raise SystemExit(f"{out} exists: a first sweep needs a new results dir (remove it)")
        seconds[name], _ = run_sweep(root, out, *narrowing, f"measure={name}")
        prepare_s, compare_s = unit_costs(name)
        jobs = len(results_dirs.read_jobs(out))
        print(f"| {name} | {jobs} | {seconds[name]:.1f} | {seconds[name] / seconds[measures[0]]:.2f} | "
              f"{jobs_seconds(out):.1f} | {prepare_s:.3f} | {1000 * compare_s:.1f} |", flush=True)
    out = work / f"measures-{case}-together"
    together, _ = run_sweep(root, out, *narrowing, f"measure={','.join(measures)}")
    alone = sum(seconds.values())
    print(f"\nall {len(measures)} measures in one sweep: {together:.1f} s, against {alone:.1f} s for the sweeps "
          f"alone ({together / alone:.2f}x)")


if __name__ == "__main__":
    main()
