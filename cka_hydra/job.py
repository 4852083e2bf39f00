"""One comparison: wires the composed config, the store and the CKA math together.

`run_comparison` knows nothing of Hydra's runtime: it takes the job's config and the
folder to write to, so tests can call it directly.
"""

import functools
import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from cka_hydra.atomic import write_atomic
from cka_hydra.cka import UndefinedCKAError, bootstrap_interval, linear_cka, rbf_cka
from cka_hydra.config import Kernel
from cka_hydra.demo import ensure_demo_store
from cka_hydra.errors import InputError
from cka_hydra.filters import CityFilter, city_id, parse_filter
from cka_hydra.pairs import instance_name, model_name, shared_tasks
from cka_hydra.store import REPRESENTATIONS_FILE, Checkpoint, Layout, common_rows, list_checkpoints, load_checkpoint

log = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"
TIMELINE_FILE = "cka_timeline.csv"
ERROR_FILE = "error.txt"
MIN_CITIES = 10
DEMO_STORE = Path("outputs", "demo_store")


@dataclass(frozen=True)
class Side:
    """One instance (a model at a seed) taking part in a comparison."""

    instance: str
    tasks: list[str]
    representations_dir: Path


def data_root(cfg: DictConfig) -> Path:
    if cfg.data.root is None:
        return ensure_demo_store(DEMO_STORE.resolve())
    root = Path(cfg.data.root).expanduser().resolve()
    if not root.is_dir():
        raise InputError(f"data.root={cfg.data.root}: no such folder (expected the experiments folder)")
    return root


def sides(cfg: DictConfig, root: Path) -> tuple[Side, Side]:
    """The two instances the config names, after checking them against the regime."""
    regime = cfg.regime
    layout = Layout(regime.original_dir, regime.seed_dir, regime.representations_dir)
    pair = f"{cfg.pair.a}_{cfg.pair.b}"
    for index in (cfg.pair.a, cfg.pair.b):
        if index not in regime.models:
            raise InputError(f"pair={pair}: regime {regime.name} has no model {index} (it has {sorted(regime.models)})")
    for seed in (cfg.seed_pair.a, cfg.seed_pair.b):
        if seed not in regime.seeds:
            raise InputError(
                f"seed_pair={cfg.seed_pair.a}_{cfg.seed_pair.b}: regime {regime.name} has no seed {seed!r} "
                f"(it has {list(regime.seeds)})"
            )
    tasks_a, tasks_b = list(regime.models[cfg.pair.a]), list(regime.models[cfg.pair.b])
    shared = shared_tasks(tasks_a, tasks_b)
    if cfg.pair.a != cfg.pair.b and shared and not cfg.allow_overlap:
        raise InputError(
            f"pair={pair}: {model_name(regime.name, cfg.pair.a)} and {model_name(regime.name, cfg.pair.b)} "
            f"share the training task {', '.join(shared)}; set allow_overlap=true to compare them anyway"
        )

    def side(index: int, seed: str, tasks: list[str]) -> Side:
        model = model_name(regime.name, index)
        path = layout.representations_path(root, model, seed, tasks[0], cfg.layer)
        return Side(instance_name(model, seed), tasks, path)

    return side(cfg.pair.a, cfg.seed_pair.a, tasks_a), side(cfg.pair.b, cfg.seed_pair.b, tasks_b)


def select_steps(spec: Any, steps_a: Sequence[int], steps_b: Sequence[int], a: str, b: str) -> list[int]:
    """The checkpoint steps to compare: `final`, `all`, or an explicit list of common steps."""
    common = sorted(set(steps_a) & set(steps_b))
    if not common:
        raise InputError(f"{a} and {b} share no checkpoint step: {a} has {list(steps_a)}, {b} has {list(steps_b)}")
    if spec == "final":
        return [common[-1]]
    if spec == "all":
        return common
    wanted = [spec] if isinstance(spec, int) else spec
    if not isinstance(wanted, list) or not wanted or not all(isinstance(s, int) for s in wanted):
        raise InputError(f"checkpoints={spec}: expected final, all, or a list of steps such as [0,7813]")
    missing = [s for s in wanted if s not in common]
    if missing:
        raise InputError(f"checkpoints: steps {missing} are not held by both {a} and {b}; common steps: {common}")
    return sorted(set(wanted))


def resolve_device(spec: str, job_num: int = 0) -> torch.device:
    """`auto` takes a GPU when torch sees one (spreading jobs over GPUs by job number), else the CPU."""
    if spec == "auto":
        count = torch.cuda.device_count()
        return torch.device(f"cuda:{job_num % count}") if count else torch.device("cpu")
    match = re.fullmatch(r"cpu|cuda(?::(\d+))?", spec)
    if not match:
        raise InputError(f"device={spec}: expected auto, cpu, cuda or cuda:N")
    if spec != "cpu":
        count = torch.cuda.device_count()
        index = int(match.group(1) or 0)
        if index >= count:
            raise InputError(f"device={spec}: torch sees {count} CUDA device(s)")
    return torch.device(spec)


def aligned(
    ckpt_a: Checkpoint, ckpt_b: Checkpoint, a: Side, b: Side, city_filter: CityFilter, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Both sides' rows for the cities both keep after the filter, paired by city id."""
    kept_a, kept_b = city_filter.select(ckpt_a.cities), city_filter.select(ckpt_b.cities)
    rows_a, rows_b = common_rows(
        [city_id(ckpt_a.cities[i]) for i in kept_a],
        [city_id(ckpt_b.cities[i]) for i in kept_b],
        str(ckpt_a.path), str(ckpt_b.path),
    )
    if len(rows_a) < MIN_CITIES:
        raise InputError(
            f"step {ckpt_a.step}: only {len(rows_a)} cities in common after city_filter "
            f"({a.instance} keeps {len(kept_a)} of {len(ckpt_a.cities)}, "
            f"{b.instance} keeps {len(kept_b)} of {len(ckpt_b.cities)}); need at least {MIN_CITIES}"
        )
    x = ckpt_a.matrix[torch.tensor([kept_a[i] for i in rows_a])]
    y = ckpt_b.matrix[torch.tensor([kept_b[i] for i in rows_b])]
    for matrix, ckpt in ((x, ckpt_a), (y, ckpt_b)):
        bad = int((~torch.isfinite(matrix)).sum())
        if bad:
            raise InputError(
                f"{ckpt.path / REPRESENTATIONS_FILE}: {bad} NaN/Inf values among the compared cities "
                f"at step {ckpt.step}"
            )
    return x.to(device), y.to(device)


@dataclass(frozen=True)
class JobPlan:
    """What a job will compute, known from the config and folder listings alone."""

    a: Side
    b: Side
    root: Path
    city_filter: CityFilter
    checkpoints_a: dict[int, Path]
    checkpoints_b: dict[int, Path]
    steps: list[int]
    # the inputs that decide the result: equal settings, equal result
    settings: dict[str, Any]


def plan_job(cfg: DictConfig) -> JobPlan:
    """Check the config against the regime and the store, and list what the job will compare."""
    city_filter = parse_filter(cfg.city_filter)
    root = data_root(cfg)
    a, b = sides(cfg, root)
    checkpoints_a, checkpoints_b = list_checkpoints(a.representations_dir), list_checkpoints(b.representations_dir)
    steps = select_steps(
        OmegaConf.to_object(cfg.checkpoints) if OmegaConf.is_config(cfg.checkpoints) else cfg.checkpoints,
        list(checkpoints_a), list(checkpoints_b), a.instance, b.instance,
    )
    settings = {
        "representations_a": str(a.representations_dir),
        "representations_b": str(b.representations_dir),
        "steps": steps,
        "city_filter": city_filter.text,
        "cka": OmegaConf.to_container(cfg.cka, enum_to_str=True),
    }
    return JobPlan(a, b, root, city_filter, checkpoints_a, checkpoints_b, steps, settings)


def is_finished(plan: JobPlan, run_dir: Path) -> bool:
    """Whether run_dir already holds the summary of a run with the same settings."""
    try:
        return json.loads((run_dir / SUMMARY_FILE).read_text()).get("settings") == plan.settings
    except (OSError, ValueError, AttributeError):
        return False


def estimator(cka: DictConfig) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The CKA function the `cka` settings name, after checking their values."""
    if cka.sigma_frac <= 0:
        raise InputError(f"cka.sigma_frac={cka.sigma_frac}: expected a positive number")
    if cka.bootstrap < 0:
        raise InputError(f"cka.bootstrap={cka.bootstrap}: expected 0 (no interval) or a number of resamples")
    if not 0 < cka.confidence < 1:
        raise InputError(f"cka.confidence={cka.confidence}: expected a level between 0 and 1, such as 0.95")
    dtype = getattr(torch, cka.precision.name)
    if cka.kernel is Kernel.rbf:
        return functools.partial(rbf_cka, sigma_frac=cka.sigma_frac, debiased=cka.debiased, dtype=dtype)
    return functools.partial(linear_cka, debiased=cka.debiased, dtype=dtype)


# Steps stacked into one batch, in bytes of float64 features: on a GPU one batched pass saves a
# launch per step; on a CPU it measured slower than step by step (the stacked copies cost more).
TIMELINE_BATCH_BYTES = {"cuda": 2**29}


def timeline(
    estimate: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    pairs: Sequence[tuple[torch.Tensor, torch.Tensor]], max_batch_bytes: int,
) -> list[float]:
    """CKA at every step, consecutive steps that compare the same cities stacked into batches
    of up to max_batch_bytes (at least one step each). An UndefinedCKAError's index is the
    position of the offending step."""
    values: list[float] = []
    start = 0
    while start < len(pairs):
        x, y = pairs[start]
        step_bytes = 8 * x.shape[0] * (x.shape[1] + y.shape[1])
        end = start + 1
        while (end < len(pairs) and (end - start + 1) * step_bytes <= max_batch_bytes
               and pairs[end][0].shape == x.shape and pairs[end][1].shape == y.shape):
            end += 1
        try:
            values += estimate(torch.stack([p[0] for p in pairs[start:end]]),
                               torch.stack([p[1] for p in pairs[start:end]])).tolist()
        except UndefinedCKAError as err:
            raise UndefinedCKAError(str(err), start + err.index) from None
        start = end
    return values


def run_comparison(cfg: DictConfig, run_dir: Path, job_num: int = 0) -> dict[str, Any]:
    """Compute one comparison's CKA timeline and write it to run_dir.

    Skips the work when run_dir already holds a summary for the same settings,
    unless `overwrite` is set. Returns a small dict: status (done/skipped), seconds.
    """
    plan = plan_job(cfg)
    estimate = estimator(cfg.cka)
    device = resolve_device(cfg.device, job_num)
    start = time.perf_counter()
    a, b, steps = plan.a, plan.b, plan.steps
    if not cfg.overwrite and is_finished(plan, run_dir):
        log.info("skipped: %s already holds results for these settings (overwrite=true recomputes)", run_dir)
        return {"status": "skipped", "seconds": time.perf_counter() - start}
    summary_file = run_dir / SUMMARY_FILE
    # a stale summary must never sit beside a half-written new timeline
    summary_file.unlink(missing_ok=True)

    log.info("%s vs %s, layer %d, steps %s, on %s", a.instance, b.instance, cfg.layer, steps, device)
    pairs = [
        aligned(load_checkpoint(step, plan.checkpoints_a[step]), load_checkpoint(step, plan.checkpoints_b[step]),
                a, b, plan.city_filter, device)
        for step in steps
    ]
    try:
        values = timeline(estimate, pairs, TIMELINE_BATCH_BYTES.get(device.type, 0))
    except UndefinedCKAError as err:
        raise InputError(f"step {steps[err.index]}, {a.instance} vs {b.instance}: {err}") from None
    intervals = []
    if cfg.cka.bootstrap:
        generator = torch.Generator().manual_seed(cfg.cka.seed)
        intervals = [bootstrap_interval(estimate, x, y, cfg.cka.bootstrap, cfg.cka.confidence, generator)
                     for x, y in pairs]
    rows = [(step, value, x.shape[0]) for step, value, (x, _) in zip(steps, values, pairs)]
    ckas = np.array(values)
    seconds = time.perf_counter() - start
    summary = {
        "exp1": a.instance,
        "exp2": b.instance,
        "layer": cfg.layer,
        "n_checkpoints": len(rows),
        "n_cities": rows[-1][2],
        "final_cka": float(ckas[-1]),
        "mean_cka": float(ckas.mean()),
        "std_cka": float(ckas.std()),
        "min_cka": float(ckas.min()),
        "max_cka": float(ckas.max()),
        "regime": cfg.regime.name,
        "pair": f"{cfg.pair.a}_{cfg.pair.b}",
        "seed_pair": f"{cfg.seed_pair.a}_{cfg.seed_pair.b}",
        "tasks_a": a.tasks,
        "tasks_b": b.tasks,
        "steps": steps,
        "kernel": cfg.cka.kernel.name,
        "sigma_frac": cfg.cka.sigma_frac if cfg.cka.kernel is Kernel.rbf else None,
        "debiased": cfg.cka.debiased,
        "precision": cfg.cka.precision.name,
        "device": str(device),
        "seconds": seconds,
        "data_root": str(plan.root),
        "settings": plan.settings,
    }
    header = "step,cka,n_cities"
    lines = [f"{s},{v!r},{n}" for s, v, n in rows]
    if intervals:
        summary.update(bootstrap=cfg.cka.bootstrap, confidence=cfg.cka.confidence, final_cka_ci=list(intervals[-1]))
        header += ",cka_low,cka_high"
        lines = [f"{line},{low!r},{high!r}" for line, (low, high) in zip(lines, intervals)]
    write_atomic(run_dir / TIMELINE_FILE, "\n".join([header, *lines]) + "\n")
    write_atomic(summary_file, json.dumps(summary, indent=2) + "\n")  # last: its presence means complete
    (run_dir / ERROR_FILE).unlink(missing_ok=True)
    log.info("%s vs %s, layer %d: final CKA %.6f (%d cities, %d checkpoint(s), %.2f s)",
             a.instance, b.instance, cfg.layer, ckas[-1], rows[-1][2], len(rows), seconds)
    return {"status": "done", "seconds": seconds}
