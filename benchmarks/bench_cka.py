"""Time cka_hydra's measures against independent implementations on the same data, in one run.

    pip install -e ".[test]" && python benchmarks/bench_cka.py [--repeats 3] [--large]

Prints markdown tables: median seconds, the speed-up over ckatorch and the largest
difference between the two results (float64); the same for the measures on principal
components against scikit-learn's PCA with ckatorch or scipy's procrustes; then the error of
`cka.precision=float32` against float64.
`--large` first measures RBF CKA at n = 20000 (time and peak memory, in a child process).
"""

import argparse
import statistics
import subprocess
import sys
import time

import ckatorch
import torch
from scipy.spatial import procrustes
from sklearn.decomposition import PCA

from cka_hydra.cka import linear_cka, principal_components, procrustes_disparity, rbf_cka

SHAPES = [(4500, 256), (5000, 512)]  # the real layer-5 shape, and the notes' benchmark shape


def data(n: int, d: int, seed: int = 0, offset: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)

    def normal(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    base = normal(n, 16)
    x = base @ normal(16, d) + normal(n, d)
    y = base @ normal(16, d) + 2 * normal(n, d)
    return x + offset, y + offset


def timed(fn, repeats: int) -> tuple[float, float]:
    """Median wall time over repeats, and the (last) value."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        value = float(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times), value


def compare(repeats: int) -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float64, median of {repeats}\n")
    print("| n | d | estimator | cka_hydra s | ckatorch s | speed-up | max abs diff |")
    print("|---|---|---|---|---|---|---|")
    for n, d in SHAPES:
        x, y = data(n, d)
        cases = [
            ("linear", lambda: linear_cka(x, y), lambda: ckatorch.core.cka_base(x, y)),
            ("linear debiased", lambda: linear_cka(x, y, debiased=True),
             lambda: ckatorch.core.cka_base(x, y, unbiased=True)),
            # threshold = sigma_frac; odd n^2 would make the median conventions agree exactly
            ("rbf (sigma_frac 0.4)", lambda: rbf_cka(x, y, 0.4),
             lambda: ckatorch.core.cka_base(x, y, "rbf", threshold=0.4)),
        ]
        for name, ours, theirs in cases:
            t_ours, v_ours = timed(ours, repeats)
            t_theirs, v_theirs = timed(theirs, repeats)
            print(f"| {n} | {d} | {name} | {t_ours:.3f} | {t_theirs:.3f} | {t_theirs / t_ours:.1f}x "
                  f"| {abs(v_ours - v_theirs):.1e} |")


def measures(repeats: int, components: int = 3) -> None:
    """One job's work for the measures on principal components: each side's PCA, fitted on 90% of
    its rows (as a city filter would keep), applied to all, then the measure."""
    n, d = SHAPES[0]
    x, y = data(n, d)
    fit = torch.arange(n)[torch.arange(n) % 10 != 0]

    def ours(measure):
        return lambda: measure(principal_components(x, components, fit), principal_components(y, components, fit))

    def theirs(measure):
        def run() -> float:
            a, b = (PCA(components, svd_solver="full").fit(m[fit].numpy()).transform(m.numpy()) for m in (x, y))
            return measure(a, b)
        return run

    print(f"\nOn the first {components} principal components, n={n}, d={d}, PCA fitted on 90% of the rows\n")
    print("| measure | cka_hydra s | independent s | independent implementation | speed-up | max abs diff |")
    print("|---|---|---|---|---|---|")
    cases = [
        ("pca_cka", ours(linear_cka), theirs(lambda a, b: ckatorch.core.cka_base(torch.from_numpy(a),
                                                                                 torch.from_numpy(b))),
         "scikit-learn PCA + ckatorch"),
        ("procrustes", ours(procrustes_disparity), theirs(lambda a, b: procrustes(a, b)[2]),
         "scikit-learn PCA + scipy procrustes"),
    ]
    for name, mine, reference, what in cases:
        t_ours, v_ours = timed(mine, repeats)
        t_theirs, v_theirs = timed(reference, repeats)
        print(f"| {name} | {t_ours:.4f} | {t_theirs:.4f} | {what} | {t_theirs / t_ours:.1f}x "
              f"| {abs(v_ours - v_theirs):.1e} |")


def precision() -> None:
    print("\n`cka.precision=float32` against float64, float32 input, n=4500, d=256\n")
    print("| feature offset | linear | linear debiased | rbf |")
    print("|---|---|---|---|")
    for offset in (0.0, 1e3, 1e4):
        x, y = (m.float() for m in data(4500, 256, offset=offset))
        errors = [
            abs(float(f(x, y, dtype=torch.float32)) - float(f(x, y)))
            for f in (linear_cka, lambda a, b, **k: linear_cka(a, b, debiased=True, **k),
                      lambda a, b, **k: rbf_cka(a, b, 0.4, **k))
        ]
        print(f"| {offset:g} | " + " | ".join(f"{e:.1e}" for e in errors) + " |")


def large() -> None:
    code = (
        "import resource, time, torch; from cka_hydra.cka import rbf_cka; "
        "g = torch.Generator().manual_seed(0); x = torch.randn(20000, 256, generator=g); "
        "y = x @ torch.randn(256, 128, generator=g) + torch.randn(20000, 128, generator=g); "
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; t = time.perf_counter(); "
        "v = float(rbf_cka(x, y, 0.4)); "
        "print(f'{time.perf_counter() - t:.1f} {before / 2**20:.2f} "
        "{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} {v:.6f}')"
    )
    seconds, before, peak, value = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    print(f"RBF CKA at n=20000 (d=256 vs 128): {seconds} s, peak RSS {peak} GiB "
          f"({before} GiB before the call), CKA {value}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--large", action="store_true", help="also RBF at n=20000 (a minute or two)")
    args = parser.parse_args()
    if args.large:  # first: a child forked from a process that held large tensors inherits its peak RSS
        large()
    compare(args.repeats)
    measures(args.repeats)
    precision()


if __name__ == "__main__":
    main()
