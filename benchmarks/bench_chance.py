"""What the chance level and the permutation test cost, in one run:

    python benchmarks/bench_chance.py [--repeats 5] [--permutations 1000] [--device cpu]

At the real shape (n = 4500 cities, d = 256, float64), through the engine's own terms
(cka_hydra.registry, cka_hydra.engine): one linear comparison from scratch (both instances
prepared, then the cross term), the exact chance level on top of it, the cross term alone,
and `null.permutations` permuted cross terms; RBF with fewer permutations (each one is a
permuted inner product of two 4500 x 4500 centred Grams). Prints a markdown table of
median seconds and the ratios the manual quotes (docs/measures.md, "Chance level").
"""

import argparse
import statistics
import time

import torch

from cka_hydra.schema import CKAConfig, Kernel, MeasureConfig
from cka_hydra.engine import null_values, permutations
from cka_hydra.registry import REGISTRY

N, D = 4500, 256


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--permutations", type=int, default=1000)
    parser.add_argument("--rbf-permutations", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    base = torch.randn(N, 16, generator=g, dtype=torch.float64)
    x = (base @ torch.randn(16, D, generator=g, dtype=torch.float64) + torch.randn(N, D, generator=g,
                                                                                  dtype=torch.float64)).to(device)
    y = (base @ torch.randn(16, D, generator=g, dtype=torch.float64) + torch.randn(N, D, generator=g,
                                                                                  dtype=torch.float64)).to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {device}, n={N}, d={D}, float64, "
          f"median of {args.repeats}\n")
    print("| measure | one comparison s | + exact chance level | cross term s | permutations | permutation test s "
          "| test / one comparison | test / (permutations x cross term) |\n|---|---|---|---|---|---|---|---|")
    for name, cka, count in (("linear CKA", CKAConfig(), args.permutations),
                             ("RBF CKA", CKAConfig(kernel=Kernel.rbf), args.rbf_permutations)):
        terms = REGISTRY["cka"].terms(cka, MeasureConfig())
        a, b = terms.prepare(x), terms.prepare(y)
        perms = permutations(count, 0, N).to(device)

        def one() -> None:
            terms.compare(terms.prepare(x), terms.prepare(y))
            sync()

        def with_chance() -> None:
            first, second = terms.prepare(x), terms.prepare(y)
            terms.compare(first, second)
            terms.chance(first, second)
            sync()

        def cross() -> None:
            terms.compare(a, b)
            sync()

        def test() -> None:
            null_values(terms, a, b, perms)
            sync()

        t_one, t_chance, t_cross = (timed(fn, args.repeats) for fn in (one, with_chance, cross))
        t_test = timed(test, max(1, args.repeats // 2))
        print(f"| {name} | {t_one:.4f} | {100 * (t_chance / t_one - 1):+.1f}% | {t_cross:.4f} | {count} | "
              f"{t_test:.2f} | {t_test / t_one:.0f}x | {t_test / (count * t_cross):.2f} |", flush=True)


if __name__ == "__main__":
    main()
