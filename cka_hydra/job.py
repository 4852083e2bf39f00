"""Running one comparison: its plan, the engine's timeline, and the run folder it leaves.

Knows nothing of Hydra: `run_comparison` takes the job's `RunConfig` and the folders to write
to, so the Hydra job and the Python API (cka_hydra.api) both call it. Planning
(`cka_hydra.plan`) comes first and needs no torch; the computing is `cka_hydra.engine`'s.
"""

import csv
import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from cka_hydra import engine, registry, run_folder
from cka_hydra.config import Kernel, RunConfig, default_settings
from cka_hydra.plan import JobPlan, preflight

log = logging.getLogger(__name__)


def run_comparison(run: RunConfig, run_dir: Path, results_dir: Path | None = None, job_num: int = 0) -> dict[str, Any]:
    """Compute one comparison's timeline of its measure and write it to run_dir, a folder of results_dir.

    Skips the work when run_dir already holds the result of the same settings on the same
    inputs, unless `overwrite` is set. Nothing is written unless the new result is complete.
    A result of the same settings whose steps are all still there, with the same files, is
    extended by the steps the store gained (status `extended`) rather than computed again.
    Returns a small dict: status (done/skipped/extended), seconds.
    """
    plan = preflight(run, run_dir, results_dir)
    with run_folder.computing(run_dir):  # another sweep or run may be computing it right now
        start = time.perf_counter()  # its seconds: this job's work, not the wait
        if not run.overwrite and run_folder.is_finished(run_dir, plan.settings, plan.inputs):
            log.info("skipped: %s already holds this result (overwrite=true recomputes)", run_dir)
            if run.save_timeline_plot:
                draw_timeline(run_dir, only_if_missing=True)
            return {"status": "skipped", "seconds": time.perf_counter() - start}
        part = None if run.overwrite else run_folder.extendable(run_dir, plan.settings, plan.inputs)
        if part is not None:  # the store gained checkpoints: compute only theirs
            result = _extend(run, plan, part, run_dir, job_num, start)
            if result is not None:
                if run.save_timeline_plot:
                    draw_timeline(run_dir)
                return result
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
    column = registry.of_summary(summary).column
    layers = (f"layer {summary['layer']}" if summary["layer"] == summary["layer_b"]
              else f"layers {summary['layer']} vs {summary['layer_b']}")
    label = summary.get("label") or "default settings"
    run_timeline_figure(pd.read_csv(run_dir / run_folder.TIMELINE_FILE), column, column,
                        f"{summary['exp1']} vs {summary['exp2']}, {layers}\n[{label}]", path)
    log.info("drew %s", path)


def _compute(run: RunConfig, plan: JobPlan, run_dir: Path, results_dir: Path | None, job_num: int,
             start: float) -> dict[str, Any]:
    a, b, steps = plan.a, plan.b, plan.steps
    measure = run.measure.registered
    log.info("%s, layer %d vs %s, layer %d: %s, steps %s", a.instance, run.layer, b.instance, run.layer_b,
             measure.name, steps)
    last_a, last_b = max(plan.checkpoints_a), max(plan.checkpoints_b)
    if run.checkpoints == "final" and last_a != last_b:  # one side has later steps: say which step "final" is
        log.warning("checkpoints=final: %s's last step is %d, %s's is %d; comparing step %d, the last both hold",
                    a.instance, last_a, b.instance, last_b, steps[-1])
    result = engine.compute(run, plan, job_num)
    summary = result_summary(run, plan, result, time.perf_counter() - start)
    header, rows = timeline_rows(run, result)
    run_folder.write_result(run_dir, summary, header, rows)
    run_folder.clear_error(run_dir)
    if results_dir is not None:
        if run_folder.recorded_data_root(results_dir) != run_folder.data_root_text(run.data.root):
            run_folder.record_data_root(results_dir, run.data.root)  # the first result here, or an overwrite
    log.info("%s, layer %d vs %s, layer %d: final %s %.6f (%d cities, %d checkpoint(s), %.2f s on %s; %d of its %d "
             "prepared instances from the cache) in %s", a.instance, run.layer, b.instance, run.layer_b,
             measure.column, result.values[-1], result.n_cities[-1], len(steps), summary["seconds"], result.device,
             result.from_cache, 2 * len(steps), run_dir)
    return {"status": "done", "seconds": summary["seconds"]}


def _extend(run: RunConfig, plan: JobPlan, earlier: dict[str, Any], run_dir: Path, job_num: int,
            start: float) -> dict[str, Any] | None:
    """Add the steps the earlier result lacks: its rows are kept byte for byte, the new ones
    computed (each step's random streams its own, so the values equal a whole recompute), and
    the summary's statistics taken over the whole timeline. None where the earlier timeline's
    columns are not the new ones' (it was computed by a version without them): computed whole."""
    new_steps = [step for step in plan.steps if step not in earlier["inputs"]["steps"]]
    with open(run_dir / run_folder.TIMELINE_FILE, newline="") as f:
        header, *kept = list(csv.reader(f))
    added = engine.compute(run, dataclasses.replace(plan, steps=new_steps), job_num)
    new_header, new_rows = timeline_rows(run, added)
    if header != new_header:
        log.info("recomputing %s: its timeline's columns are %s, not %s", run_dir.name, ",".join(header),
                 ",".join(new_header))
        return None
    rows = sorted(kept + new_rows, key=lambda row: int(row[0]))
    timeline = _timeline_of(header, rows, added, earlier)
    summary = {**result_summary(run, plan, timeline, time.perf_counter() - start), "computed_steps": new_steps}
    run_folder.write_result(run_dir, summary, header, rows)
    run_folder.clear_error(run_dir)
    log.info("extended %s by %d step(s) %s, kept %d: final %s %.6f", run_dir, len(new_steps), new_steps, len(kept),
             run.measure.registered.column, timeline.values[-1])
    return {"status": "extended", "seconds": summary["seconds"]}


def _timeline_of(header: list[str], rows: list[list[Any]], added: engine.Timeline,
                 earlier: dict[str, Any]) -> engine.Timeline:
    """The whole timeline of an extended result, from its rows (the kept ones as read)."""
    columns = {name: [float(row[i]) for row in rows] for i, name in enumerate(header)}
    null = list(zip(columns["null_mean"], columns["null_std"], columns["p_value"])) if "p_value" in columns else []
    intervals = list(zip(columns["cka_low"], columns["cka_high"])) if "cka_low" in columns else []
    last_is_new = max(added.steps) > max(earlier["inputs"]["steps"])
    return dataclasses.replace(
        added, steps=[int(step) for step in columns["step"]], values=columns[header[1]],
        n_cities=[int(n) for n in columns["n_cities"]], intervals=intervals, chance=columns.get("chance"), null=null,
        pca_cities=added.pca_cities if last_is_new else earlier.get("pca_cities"))


def result_summary(run: RunConfig, plan: JobPlan, result: engine.Timeline, seconds: float) -> dict[str, Any]:
    """What summary.json says of a computed comparison: which it is, its statistics over the
    timeline, its settings and inputs (its identity), and how it ran."""
    a, b, steps = plan.a, plan.b, plan.steps
    measure = run.measure.registered
    last_a, last_b = max(plan.checkpoints_a), max(plan.checkpoints_b)
    values = np.array(result.values)
    statistics = {"final": float(values[-1]), "mean": float(values.mean()), "std": float(values.std()),
                  "min": float(values.min()), "max": float(values.max())}
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
        "measure": measure.name,
        "tasks_a": a.tasks,
        "tasks_b": b.tasks,
        "folder_a": a.folder,  # the folders read, below data_root (a stand-in's where the regime names one)
        "folder_b": b.folder,
        "last_step_a": last_a,  # each side's last step: `final` is the last both hold
        "last_step_b": last_b,
        "n_checkpoints": len(steps),
        "n_cities": result.n_cities[-1],
        **{f"{name}_value": value for name, value in statistics.items()},
        "steps": steps,
        "device": result.device,
        "seconds": seconds,
        "bytes_read": result.bytes_read,  # prepared instances already in the cache read none
        "data_root": str(plan.root),
        "label": run_folder.settings_label(plan.settings, default_settings()),
        "settings": plan.settings,
        "inputs": plan.inputs,
    }
    left_out = {side.instance: side.excluded for side in (a, b) if side.excluded}
    if left_out:  # compared with allow_excluded: the report leaves it out unless told otherwise
        summary["excluded"] = left_out
    if measure.target is not None:  # a user's measure: the report reads how to show it from here
        summary.update(measure_kind=measure.kind, measure_target=measure.target)
    if plan.pca is not None:  # and how many cities each side's last PCA was fitted on
        summary.update(components=plan.pca.components, pca_filter=run.measure.pca_filter,
                       pca_cities=result.pca_cities)
    if measure.name in ("cka", "pca_cka"):  # the CKA measures keep the names they always had
        summary.update({f"{name}_cka": value for name, value in statistics.items()})
    if measure.name == "cka":
        summary.update(kernel=run.cka.kernel.name,
                       sigma_frac=run.cka.sigma_frac if run.cka.kernel is Kernel.rbf else None,
                       debiased=run.cka.debiased, precision=run.cka.precision.name)
    if result.intervals:
        summary.update(bootstrap=run.cka.bootstrap, confidence=run.cka.confidence,
                       final_cka_ci=list(result.intervals[-1]))
    if result.chance is not None:  # the exact null mean (cka_hydra.registry._chance)
        summary["final_chance"] = result.chance[-1]
    if result.null:
        mean, std, p = result.null[-1]
        summary.update(permutations=run.null.permutations, null_seed=run.null.seed, final_null_mean=mean,
                       final_null_std=std, final_p_value=p)
    return summary


def timeline_rows(run: RunConfig, result: engine.Timeline) -> tuple[list[str], list[list[Any]]]:
    """The timeline file's header and rows: step, the measure's value, the cities compared, the
    exact chance level where the measure has one, the permutation test and the bootstrap
    interval when they were asked for."""
    measure = run.measure.registered
    header = ["step", measure.column, "n_cities"]
    rows = [[s, v, n] for s, v, n in zip(result.steps, result.values, result.n_cities)]
    if result.chance is not None:
        header.append("chance")
        rows = [[*row, level] for row, level in zip(rows, result.chance)]
    if result.null:
        header += ["null_mean", "null_std", "p_value"]
        rows = [[*row, *test] for row, test in zip(rows, result.null)]
    if result.intervals:
        header += ["cka_low", "cka_high"]
        rows = [[*row, low, high] for row, (low, high) in zip(rows, result.intervals)]
    return header, rows
