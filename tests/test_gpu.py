"""The GPU path on a real GPU: `python -m pytest -m gpu` on a machine where torch sees CUDA.

Skipped elsewhere (CI has no GPU). Timings and peak memory are benchmarks/bench_gpu.py's.
"""

import functools

import pytest
import torch
from conftest import read_json, run_cli

from cka_hydra.cka import linear_cka, principal_components, procrustes_disparity, rbf_cka

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

ESTIMATORS = {
    "linear": linear_cka,
    "linear debiased": functools.partial(linear_cka, debiased=True),
    "rbf": functools.partial(rbf_cka, sigma_frac=0.4),
    "rbf debiased": functools.partial(rbf_cka, sigma_frac=0.4, debiased=True),
}
# the float32 table of docs/measures.md (at most 3.8e-7 linear, 6.5e-8 rbf), with room: 2.6x and 4.6x
FLOAT32_ERROR = {"linear": 1e-6, "linear debiased": 1e-6, "rbf": 3e-7, "rbf debiased": 3e-7}


def hidden_states(n: int = 4500, d: int = 256, seed: int = 0, offset: float = 20.0) -> tuple[torch.Tensor, ...]:
    """float32 like the stored files, with a shared signal and large per-feature offsets."""
    g = torch.Generator().manual_seed(seed)
    shared = torch.randn(n, 12, generator=g)
    x = shared @ torch.randn(12, d, generator=g) + torch.randn(n, d, generator=g)
    y = shared @ torch.randn(12, d, generator=g) + 2 * torch.randn(n, d, generator=g)
    return x + offset * torch.randn(d, generator=g), y + offset * torch.randn(d, generator=g)


@pytest.mark.parametrize("name", ESTIMATORS)
def test_every_estimator_on_cuda_equals_the_cpu_in_float64(name):
    x, y = hidden_states()
    cpu = float(ESTIMATORS[name](x, y))
    gpu = ESTIMATORS[name](x.cuda(), y.cuda())
    assert gpu.device.type == "cuda"
    assert abs(float(gpu) - cpu) < 1e-9


@pytest.mark.parametrize("name", ESTIMATORS)
@pytest.mark.parametrize("offset", [0.0, 1e3, 1e4])
def test_float32_on_the_gpu_stays_within_the_stated_error(name, offset):
    x, y = hidden_states(offset=offset)
    exact = float(ESTIMATORS[name](x, y))
    fast = float(ESTIMATORS[name](x.cuda(), y.cuda(), dtype=torch.float32))
    assert abs(fast - exact) < FLOAT32_ERROR[name]


@pytest.mark.parametrize("measure", [linear_cka, procrustes_disparity], ids=["pca_cka", "procrustes"])
def test_the_measures_on_principal_components_on_cuda_equal_the_cpu(measure):
    x, y = hidden_states()
    fit = torch.arange(0, 4500, 2)
    cpu = float(measure(principal_components(x, 3, fit), principal_components(y, 3, fit)))
    gpu = measure(principal_components(x.cuda(), 3, fit.cuda()), principal_components(y.cuda(), 3, fit.cuda()))
    assert gpu.device.type == "cuda"
    assert abs(float(gpu) - cpu) < 1e-9


@pytest.mark.parametrize("measure", ["cka", "procrustes"])
def test_a_four_worker_sweep_computes_every_job_on_the_gpu(small_store, tmp_path, measure):
    sweep = ["-m", "sweep", "regime=pt3", "layer=5", "checkpoints=all", f"measure={measure}",
             f"data.root={small_store}"]
    on_gpu = run_cli(*sweep, cwd=tmp_path)  # the default launcher: 4 joblib workers, device=auto
    assert on_gpu.returncode == 0, on_gpu.stdout
    on_cpu = run_cli(*sweep, "device=cpu", "hydra.sweep.dir=outputs/cpu", "hydra/launcher=basic", cwd=tmp_path)
    assert on_cpu.returncode == 0, on_cpu.stdout
    gpu_summaries = sorted((tmp_path / "outputs/cka").rglob("summary.json"))
    assert len(gpu_summaries) == 21
    for path in gpu_summaries:
        gpu = read_json(path)
        cpu = read_json(tmp_path / "outputs/cpu" / path.relative_to(tmp_path / "outputs/cka"))
        assert gpu["device"].startswith("cuda") and cpu["device"] == "cpu"
        assert gpu["steps"] == cpu["steps"]
        assert abs(gpu["final_value"] - cpu["final_value"]) < 1e-9
        assert abs(gpu["mean_value"] - cpu["mean_value"]) < 1e-9
