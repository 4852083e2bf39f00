"""Running one comparison: wires the plan, the store, the measures' math and the run folder together.

Knows nothing of Hydra: `run_comparison` takes the job's `RunConfig` and the folders to write
to, so tests can call it directly. Planning (`cka_hydra.plan`) comes first and needs no torch.
"""

import functools
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cka_hydra import run_folder
from cka_hydra.cka import (
    TIMELINE_BATCH_BYTES, UndefinedMeasureError, bootstrap_interval, linear_cka, principal_components,
    procrustes_disparity, rbf_cka, timeline,
)
from cka_hydra.config import Kernel, Measure, RunConfig, default_settings
from cka_hydra.errors import InputError
from cka_hydra.filters import CityFilter, city_id, id_kinds
from cka_hydra.plan import MIN_CITIES, JobPlan, PCASpec, Side, check_device, check_pca_cities, preflight
from cka_hydra.store import METADATA_FILE, REPRESENTATIONS_FILE, check_id_kinds, common_rows, load_cities, load_matrix

log = logging.getLogger(__name__)


def resolve_device(spec: str, job_num: int = 0) -> torch.device:
    """`auto` takes a GPU when torch sees one (spreading jobs over GPUs by job number), else the CPU."""
    if spec == "auto":
        count = torch.cuda.device_count()
        return torch.device(f"cuda:{job_num % count}") if count else torch.device("cpu")
    check_device(spec)
    return torch.device(spec)


def kept_cities(folder: Path, city_filter: CityFilter) -> tuple[int, np.ndarray, np.ndarray, frozenset[str]]:
    """A checkpoint's number of cities, the rows city_filter keeps, their ids (as arrays), and the
    kinds of id its city list uses (filters.id_kinds).

    Cached in the process, keyed by metadata.json's inode, size and modification time: a
    worker's jobs share instances, and parsing and filtering a city list costs as much as a
    comparison's arithmetic. A file rewritten since is read again. Arrays, not lists of Python
    objects: an entry takes 0.1 MB for 4500 cities."""
    try:
        stat = (folder / METADATA_FILE).stat()
        stamp = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
    except OSError:  # load_cities says what is wrong
        stamp = (-1, -1, -1)
    return _kept_cities(folder, stamp, city_filter)


@functools.lru_cache(maxsize=128)  # a sweep's (regime, layer) holds 21 instances x K checkpoints
def _kept_cities(folder: Path, stamp: tuple[int, int, int],
                 city_filter: CityFilter) -> tuple[int, np.ndarray, np.ndarray, frozenset[str]]:
    cities = load_cities(folder)
    kept = city_filter.select(cities)
    return (len(cities), np.array(kept, dtype=np.int64), np.array([city_id(cities[i]) for i in kept], dtype=str),
            id_kinds(cities))


def aligned(
    step: int, folder_a: Path, folder_b: Path, a: Side, b: Side, city_filter: CityFilter, device: torch.device,
    pca: PCASpec | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Both sides' rows at one checkpoint, for the cities both keep after the filter, paired by city id.

    With pca, each side is first replaced by its principal component scores: its own PCA,
    fitted on the cities pca.fit keeps, applied to all of its cities."""
    (n_a, kept_a, ids_a, kinds_a), (n_b, kept_b, ids_b, kinds_b) = (kept_cities(folder_a, city_filter),
                                                                    kept_cities(folder_b, city_filter))
    check_id_kinds(kinds_a, kinds_b, str(folder_a / METADATA_FILE), str(folder_b / METADATA_FILE))
    rows_a, rows_b = common_rows(ids_a.tolist(), ids_b.tolist(), str(folder_a), str(folder_b))
    if len(rows_a) < MIN_CITIES:
        raise InputError(
            f"step {step}: only {len(rows_a)} cities in common after city_filter "
            f"({a.instance} keeps {len(kept_a)} of {n_a}, {b.instance} keeps {len(kept_b)} of {n_b}); "
            f"need at least {MIN_CITIES}"
        )
    return (_side(step, folder_a, a, n_a, kept_a[rows_a], device, pca),
            _side(step, folder_b, b, n_b, kept_b[rows_b], device, pca))


def _side(step: int, folder: Path, side: Side, n_cities: int, rows: np.ndarray, device: torch.device,
          pca: PCASpec | None) -> torch.Tensor:
    """One side's compared rows, or their principal component scores (see aligned)."""
    matrix = load_matrix(folder, n_cities)
    fit_rows = None if pca is None else kept_cities(folder, pca.fit)[1]
    used = rows if fit_rows is None else np.union1d(rows, fit_rows)
    bad = int((~torch.isfinite(matrix[torch.from_numpy(used)])).sum())
    if bad:
        which = "compared" if pca is None else "compared or PCA-fitted"
        raise InputError(f"{folder / REPRESENTATIONS_FILE}: {bad} NaN/Inf values among the {which} cities at step "
                         f"{step}")
    if pca is None:
        return matrix[torch.from_numpy(rows)].to(device)
    check_pca_cities(pca, len(fit_rows), n_cities, side.instance, step)
    try:
        scores = principal_components(matrix.to(device), pca.components, torch.from_numpy(fit_rows).to(device))
    except ValueError as err:
        raise InputError(f"measure.components={pca.components}: {side.instance} at step {step}: {err} "
                         "(the fitted rows: the cities measure.pca_filter keeps)") from None
    return scores[torch.from_numpy(rows).to(device)]


def estimator(run: RunConfig) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The function of two representations that the `measure` (and, for CKA, `cka`) settings name."""
    if run.measure.name is Measure.procrustes:
        return procrustes_disparity
    if run.measure.name is Measure.pca_cka:
        return linear_cka
    dtype = getattr(torch, run.cka.precision.name)
    if run.cka.kernel is Kernel.rbf:
        return functools.partial(rbf_cka, sigma_frac=run.cka.sigma_frac, debiased=run.cka.debiased, dtype=dtype)
    return functools.partial(linear_cka, debiased=run.cka.debiased, dtype=dtype)


def run_comparison(run: RunConfig, run_dir: Path, results_dir: Path | None = None, job_num: int = 0) -> dict[str, Any]:
    """Compute one comparison's timeline of its measure and write it to run_dir, a folder of results_dir.

    Skips the work when run_dir already holds the result of the same settings on the same
    inputs, unless `overwrite` is set. Nothing is written unless the new result is complete.
    Returns a small dict: status (done/skipped), seconds.
    """
    plan = preflight(run, run_dir, results_dir)
    with run_folder.computing(run_dir):  # another sweep or run may be computing it right now
        start = time.perf_counter()  # its seconds: this job's work, not the wait
        if not run.overwrite and run_folder.is_finished(run_dir, plan.settings, plan.inputs):
            log.info("skipped: %s already holds this result (overwrite=true recomputes)", run_dir)
            if run.save_timeline_plot:
                draw_timeline(run_dir, only_if_missing=True)
            return {"status": "skipped", "seconds": time.perf_counter() - start}
        earlier = run_folder.read_result(run_dir)
        if earlier is not None and not run.overwrite:  # why the result there does not hold
            theirs = earlier.get("inputs") or {}
            moved = [key for key in ("representations_a", "representations_b", "steps")
                     if theirs.get(key) != plan.inputs[key]]
            changed = run_folder.stale_inputs(earlier, plan.root)
            log.info("recomputing %s: %s", run_dir.name, "; ".join(
                [f"{key} was {theirs.get(key)}, is {plan.inputs[key]}" for key in moved]
                + ([f"{len(changed)} of its input files changed since ({', '.join(changed[:3])})"] if changed else []))
                or "its settings or inputs differ")
        result = _compute(run, plan, run_dir, results_dir, job_num, start)
        if run.save_timeline_plot:
            draw_timeline(run_dir)
        return result


def draw_timeline(run_dir: Path, only_if_missing: bool = False) -> None:
    """Draw run_dir's timeline beside it (run_folder.timeline_plot_file): not part of the result,
    so a finished result gets its figure without being recomputed; only_if_missing: unless the
    one there was drawn from this result."""
    import pandas as pd

    from cka_hydra.figures import run_timeline_figure  # matplotlib: only for runs that draw

    summary = run_folder.read_result(run_dir)
    if summary is None:
        return
    measure = summary.get("measure", "cka")
    path = run_dir / run_folder.timeline_plot_file(measure)
    if only_if_missing and run_folder.timeline_plot_current(run_dir, measure):
        return
    column = run_folder.VALUE_COLUMNS[measure]
    layers = (f"layer {summary['layer']}" if summary["layer"] == summary["layer_b"]
              else f"layers {summary['layer']} vs {summary['layer_b']}")
    label = summary.get("label") or "default settings"
    run_timeline_figure(pd.read_csv(run_dir / run_folder.TIMELINE_FILE), column, column,
                        f"{summary['exp1']} vs {summary['exp2']}, {layers}\n[{label}]", path)
    log.info("drew %s", path)


def _compute(run: RunConfig, plan: JobPlan, run_dir: Path, results_dir: Path | None, job_num: int,
             start: float) -> dict[str, Any]:
    device = resolve_device(run.device, job_num)
    estimate = estimator(run)
    a, b, steps = plan.a, plan.b, plan.steps

    log.info("%s, layer %d vs %s, layer %d: %s, steps %s, on %s", a.instance, run.layer, b.instance, run.layer_b,
             run.measure.name.value, steps, device)
    last_a, last_b = max(plan.checkpoints_a), max(plan.checkpoints_b)
    if run.checkpoints == "final" and last_a != last_b:  # one side has later steps: say which step "final" is
        log.warning("checkpoints=final: %s's last step is %d, %s's is %d; comparing step %d, the last both hold",
                    a.instance, last_a, b.instance, last_b, steps[-1])
    pairs = [aligned(step, plan.checkpoints_a[step], plan.checkpoints_b[step], a, b, plan.city_filter, device,
                     plan.pca) for step in steps]
    try:
        values = timeline(estimate, pairs, TIMELINE_BATCH_BYTES.get(device.type, 0))
    except UndefinedMeasureError as err:
        raise InputError(f"step {steps[err.index or 0]}, {a.instance} vs {b.instance}: {err}") from None
    intervals = []
    if run.cka.bootstrap:
        generator = torch.Generator().manual_seed(run.cka.seed)
        intervals = [bootstrap_interval(estimate, x, y, run.cka.bootstrap, run.cka.confidence, generator)
                     for x, y in pairs]
    n_cities = [x.shape[0] for x, _ in pairs]
    timeline_values = np.array(values)
    statistics = {"final": float(timeline_values[-1]), "mean": float(timeline_values.mean()),
                  "std": float(timeline_values.std()), "min": float(timeline_values.min()),
                  "max": float(timeline_values.max())}
    seconds = time.perf_counter() - start
    summary = {
        "exp1": a.instance,
        "exp2": b.instance,
        "regime": run.regime.name,
        "model_a": a.model,
        "seed_a": a.seed,
        "model_b": b.model,
        "seed_b": b.seed,
        "pair": f"{run.pair.a}_{run.pair.b}",
        "seed_pair": f"{a.seed}_{b.seed}",
        "layer": run.layer,
        "layer_b": run.layer_b,
        "measure": run.measure.name.value,
        "tasks_a": a.tasks,
        "tasks_b": b.tasks,
        "folder_a": a.folder,  # the folders read, below data_root (a stand-in's where the regime names one)
        "folder_b": b.folder,
        "last_step_a": last_a,  # each side's last step: `final` is the last both hold
        "last_step_b": last_b,
        "n_checkpoints": len(steps),
        "n_cities": n_cities[-1],
        **{f"{name}_value": value for name, value in statistics.items()},
        "steps": steps,
        "device": str(device),
        "seconds": seconds,
        "data_root": str(plan.root),
        "label": run_folder.settings_label(plan.settings, default_settings()),
        "settings": plan.settings,
        "inputs": plan.inputs,
    }
    left_out = {side.instance: side.excluded for side in (a, b) if side.excluded}
    if left_out:  # compared with allow_excluded: the report leaves it out unless told otherwise
        summary["excluded"] = left_out
    if plan.pca is not None:  # and how many cities each side's last PCA was fitted on
        fitted = [len(kept_cities(checkpoints[steps[-1]], plan.pca.fit)[1])
                  for checkpoints in (plan.checkpoints_a, plan.checkpoints_b)]
        summary.update(components=plan.pca.components, pca_filter=run.measure.pca_filter, pca_cities=fitted)
    if run.measure.name is not Measure.procrustes:  # the CKA measures keep the names they always had
        summary.update({f"{name}_cka": value for name, value in statistics.items()})
    if run.measure.name is Measure.cka:
        summary.update(kernel=run.cka.kernel.name,
                       sigma_frac=run.cka.sigma_frac if run.cka.kernel is Kernel.rbf else None,
                       debiased=run.cka.debiased, precision=run.cka.precision.name)
    column = run_folder.VALUE_COLUMNS[run.measure.name.value]
    header = ["step", column, "n_cities"]
    rows = [[s, v, n] for s, v, n in zip(steps, values, n_cities)]
    if intervals:
        summary.update(bootstrap=run.cka.bootstrap, confidence=run.cka.confidence, final_cka_ci=list(intervals[-1]))
        header += ["cka_low", "cka_high"]
        rows = [[*row, low, high] for row, (low, high) in zip(rows, intervals)]
    run_folder.write_result(run_dir, summary, header, rows)
    run_folder.clear_error(run_dir)
    if results_dir is not None:
        if run_folder.recorded_data_root(results_dir) != run_folder.data_root_text(run.data.root):
            run_folder.record_data_root(results_dir, run.data.root)  # the first result here, or an overwrite
    log.info("%s, layer %d vs %s, layer %d: final %s %.6f (%d cities, %d checkpoint(s), %.2f s) in %s",
             a.instance, run.layer, b.instance, run.layer_b, column, statistics["final"], n_cities[-1], len(steps),
             seconds, run_dir)
    return {"status": "done", "seconds": seconds}
