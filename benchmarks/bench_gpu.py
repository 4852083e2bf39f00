"""The GPU figures, in one run on a machine where torch sees CUDA:

    python benchmarks/bench_gpu.py [--repeats 5]

Prints markdown tables: each estimator at the real shape (n=4500, d=256) on the CPU in
float64 and on the GPU in float64 and float32, with the GPU's difference from the CPU; and the
GPU memory a job's tensors take at their peak (torch's allocator; a worker's CUDA context comes on top).
"""

import argparse
import functools

import torch
from bench_cka import data, timed

from cka_hydra.cka import linear_cka, rbf_cka

N, D, STEPS = 4500, 256, 41
ESTIMATORS = {
    "linear": linear_cka,
    "linear debiased": functools.partial(linear_cka, debiased=True),
    "rbf (sigma_frac 0.4)": functools.partial(rbf_cka, sigma_frac=0.4),
}


def estimators(repeats: int) -> None:
    x, y = (m.float() for m in data(N, D, offset=20.0))
    gx, gy = x.cuda(), y.cuda()
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, n={N}, d={D}, float32 input, "
          f"median of {repeats} after a warm-up\n")
    print("| estimator | CPU float64 s | GPU float64 s | GPU float32 s | GPU f64 - CPU | GPU f32 - CPU |")
    print("|---|---|---|---|---|---|")
    for name, estimate in ESTIMATORS.items():
        estimate(gx, gy, dtype=torch.float32)  # warm-up: kernels, cuBLAS handles
        t_cpu, v_cpu = timed(lambda: estimate(x, y), repeats)
        t_64, v_64 = timed(lambda: estimate(gx, gy), repeats)
        t_32, v_32 = timed(lambda: estimate(gx, gy, dtype=torch.float32), repeats)
        print(f"| {name} | {t_cpu:.4f} | {t_64:.4f} | {t_32:.4f} | {abs(v_64 - v_cpu):.1e} | {abs(v_32 - v_cpu):.1e} |")


def peak_memory() -> None:
    print("\n| job on the GPU | peak allocated MiB |\n|---|---|")
    cases = {
        f"linear, {STEPS}-step timeline": lambda: [
            linear_cka(*(m.float().cuda() for m in data(N, D, seed=s))) for s in range(STEPS)],
        "rbf, one step": lambda: rbf_cka(*(m.float().cuda() for m in data(N, D)), 0.4),
    }
    for name, job in cases.items():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        job()
        print(f"| {name} | {torch.cuda.max_memory_allocated() / 2**20:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        parser.error("torch sees no CUDA device")
    estimators(args.repeats)
    peak_memory()


if __name__ == "__main__":
    main()
