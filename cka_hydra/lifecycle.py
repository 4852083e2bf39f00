"""A comparison's lifecycle, in one place: check, then skip, extend or compute, then write.

    check(run, run_dir, results_dir)    everything that can be refused before computing, in one
                                        line: the store (the demo store written when no data.root
                                        is named), the device, the config against the regime and
                                        the store's folders, the results dir's data root, a result
                                        of other settings in run_dir, the city filter
    is_finished / extendable            whether run_dir holds this result, or an earlier part of it
    run(run, run_dir, results_dir)      the whole lifecycle of one job: checked, then skipped,
                                        extended or computed, and written whole or not at all

The Hydra app, its callback, the sweeper, the follower and the Python API all call these; none
repeats a check. Knows nothing of Hydra; torch only once something is computed (cka_hydra.engine).
"""

import csv
import dataclasses
import importlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cka_hydra import registry, results_dir as results_dirs, run_folder
from cka_hydra.demo import ensure_demo_store
from cka_hydra.errors import InputError
from cka_hydra.identity import (
    default_settings, demo_store, override_text, result_identity, settings_label, store_of, store_path,
)
from cka_hydra.inputs import Inputs, check_city_filter, check_device, read_inputs
from cka_hydra.schema import DataConfig, RunConfig

if TYPE_CHECKING:
    from cka_hydra.engine import Timeline

log = logging.getLogger(__name__)


# --- check ---

def store_root(data: DataConfig, results_dir: Path | None, write_demo: bool = True) -> Path:
    """The store a run reads: data.root, or the results dir's demo store (identity.demo_store;
    written first, unless write_demo is false: a dry run writes nothing)."""
    if data.root is not None:
        root = Path(data.root)
        if not root.is_dir():
            raise InputError(f"data.root={data.root}: no such folder (expected the experiments folder)")
        return root
    root = demo_store(results_dir)
    if write_demo:
        ensure_demo_store(root)
    elif not root.is_dir():
        raise InputError(f"no demo store at {root}: it is written when a run or sweep starts without data.root")
    return root


def check_setup(run: RunConfig, results_dir: Path | None, write_demo: bool = True) -> Path:
    """What every job of one store, device and results dir shares: the store is there, torch sees
    the device, and the results dir holds no other store's results (unless overwrite). Returns
    the store's folder."""
    root = store_root(run.data, results_dir, write_demo)
    check_device(run.device)
    if results_dir is not None and not run.overwrite:
        results_dirs.check_data_root(results_dir, run.data.root, overwrite=False)
    return root


def check_job(run: RunConfig, run_dir: Path, root: Path) -> Inputs:
    """One job's own checks: the config against the regime and the folders of the store at root
    (listings only), and that run_dir holds no result of other settings (unless overwrite)."""
    inputs = read_inputs(run, root)
    if not run.overwrite:
        reason = conflict(run_dir, inputs.settings)
        if reason:
            raise InputError(reason)
    return inputs


def check(run: RunConfig, run_dir: Path, results_dir: Path | None) -> Inputs:
    """Everything a run needs that can be checked without computing (check_setup, check_job, and
    the city filter against the first step's city lists); raises InputError, one line."""
    inputs = check_job(run, run_dir, check_setup(run, results_dir))
    check_city_filter(inputs)
    return inputs


# --- whether a result holds ---

def is_finished(run_dir: Path, settings: Mapping[str, Any], inputs: Mapping[str, Any],
                since: float | None = None) -> bool:
    """Whether run_dir holds the result of these settings on these inputs (representation
    folders, steps and the identity of each file read: a store that gained a final checkpoint
    makes `final` stale, and so does a file replaced in place), written at or after `since` (a
    time.time()) when given: the result an overwrite has yet to replace is not its own. The data
    root is the results dir's (check_data_root), not the result's: a store that moved keeps it.
    Not with error.txt beside it (its last recompute failed: standing() does not count it), even
    when its input files are back as they were (restored with their times, `cp -p`): computed
    again, it counts again."""
    summary = run_folder.read_result(run_dir)
    if summary is None or (run_dir / run_folder.ERROR_FILE).exists() or result_identity(summary.get("settings")) != result_identity(settings) \
            or summary.get("inputs") != inputs or not _of_this_store(run_dir, summary, settings):
        return False
    try:
        return since is None or (run_dir / run_folder.SUMMARY_FILE).stat().st_mtime >= since
    except OSError:
        return False


def extendable(run_dir: Path, settings: Mapping[str, Any], inputs: Mapping[str, Any]) -> dict[str, Any] | None:
    """The summary of run_dir's result when it is an earlier part of this one: the same settings
    and representation folders, steps that are all among these (some missing: the store gained
    checkpoints), each of their files as it was; else None (computed whole)."""
    summary = run_folder.read_result(run_dir)
    if summary is None or result_identity(summary.get("settings")) != result_identity(settings) \
            or not _of_this_store(run_dir, summary, settings):
        return None
    theirs = summary.get("inputs") or {}
    files = theirs.get("files") or {}
    if any(theirs.get(key) != inputs[key] for key in ("representations_a", "representations_b")) \
            or not files or not set(theirs.get("steps") or [None]) < set(inputs["steps"]) \
            or any(inputs["files"].get(name) != stamp for name, stamp in files.items()):
        return None
    return summary


def _of_this_store(run_dir: Path, summary: Mapping[str, Any], settings: Mapping[str, Any]) -> bool:
    """Whether a result was computed from the store these settings name: the same data root, or
    one its results dir records the store moved from."""
    theirs, ours = store_of(summary.get("settings")), store_of(settings)
    results_dir = results_dirs.enclosing_results_dir(run_dir)
    roots = results_dirs.data_roots(results_dir) if results_dir else []
    return theirs == ours or (theirs in roots and roots[0] == ours)


def conflict(run_dir: Path, settings: Mapping[str, Any]) -> str | None:
    """Why run_dir's result may not be replaced by one of these settings, or None when it holds
    none, or one of the same settings (on whichever data root: the results dir's is checked on
    its own, and a result of another is stale)."""
    summary = run_folder.read_result(run_dir)
    theirs = result_identity((summary or {}).get("settings"))
    ours = result_identity(settings)
    differ = sorted(k for k in {*ours, *theirs} if ours.get(k) != theirs.get(k))
    if summary is None or not differ:
        return None
    found = ", ".join(f"{k}={override_text(theirs.get(k))}" for k in differ)
    return (f"{run_dir} holds a result of other settings ({found}); "
            "set overwrite=true to replace it, or hydra.sweep.dir=... to write elsewhere")


NO_RESULT = "no result"


@dataclass(frozen=True)
class Standing:
    """Whether a run folder's result counts, on its own (the report's and load_results' question,
    where no settings are asked for): its summary, or the reason it does not count."""

    summary: dict[str, Any] | None
    reason: str = ""  # "" when it counts; NO_RESULT, failed, stale, of another data root (stale)
    detail: str = ""
    data_root: str = ""  # the store it counts for, as data_root.txt names it
    checked: bool = True  # against its input files (False: that store is not on this machine)


def standing(run_dir: Path, results_dir: Path | None, roots: list[str]) -> Standing:
    """Whether run_dir's result counts, in results_dir of these data roots (data_roots: the
    store, then where it moved from): a complete result, no error.txt beside it (its recompute
    failed: the result is stale), of that store, and its input files unchanged there."""
    summary = run_folder.read_result(run_dir)
    error = run_dir / run_folder.ERROR_FILE
    if error.exists():
        detail = (error.read_text().splitlines() or [""])[0]
        if summary is not None:
            changed = run_folder.stale_inputs(summary)
            detail += f" (the result there is stale: {', '.join(changed[:3])} changed since)"
        return Standing(None, "failed", detail)
    if summary is None:
        return Standing(None, NO_RESULT)
    own = store_of(summary.get("settings"))
    roots = roots or [own]
    if own not in roots:  # left by an overwrite with another store
        return Standing(None, "of another data root (stale)", f"computed from {own}, not {roots[0]}")
    root = store_path(roots[0], results_dir)
    if not root.is_dir():
        return Standing(summary, data_root=roots[0], checked=False)
    changed = run_folder.stale_inputs(summary, root)
    if changed:
        return Standing(None, "stale", f"{len(changed)} input file(s) changed or gone since: {', '.join(changed[:3])}")
    return Standing(summary, data_root=roots[0])


# --- skip, extend or compute, then write ---

def run(run: RunConfig, run_dir: Path, results_dir: Path | None = None, job_num: int = 0) -> dict[str, Any]:
    """Compute one comparison's timeline of its measure and write it to run_dir, a folder of results_dir.

    Skips the work when run_dir already holds the result of the same settings on the same
    inputs, unless `overwrite` is set. Nothing is written unless the new result is complete.
    A result of the same settings whose steps are all still there, with the same files, is
    extended by the steps the store gained (status `extended`) rather than computed again.
    Returns a small dict: status (done/skipped/extended), seconds.
    """
    importlib.import_module("cka_hydra.engine")  # torch: imported before the job's clock starts

    inputs = check_job(run, run_dir, check_setup(run, results_dir, write_demo=False))
    with run_folder.computing(run_dir):  # another sweep or run may be computing it right now
        start = time.perf_counter()  # its seconds: this job's work, not the wait
        finished, part = _what_is_there(run, run_dir, inputs)
        if finished:
            log.info("skipped: %s already holds this result (overwrite=true recomputes)", run_dir)
            if run.save_timeline_plot:
                draw_timeline(run_dir, only_if_missing=True)
            return {"status": "skipped", "seconds": time.perf_counter() - start}
        if part is not None:  # the store gained checkpoints: compute only theirs
            result = _extend(run, inputs, part, run_dir, job_num, start)
            if result is not None:
                if run.save_timeline_plot:
                    draw_timeline(run_dir)
                return result
        earlier = run_folder.read_result(run_dir)
        if earlier is not None and not run.overwrite:  # why the result there does not hold
            theirs = earlier.get("inputs") or {}
            moved = [key for key in ("representations_a", "representations_b", "steps")
                     if theirs.get(key) != inputs.record[key]]
            changed = run_folder.stale_inputs(earlier, inputs.root)
            log.info("recomputing %s: %s", run_dir.name, "; ".join(
                [f"{key} was {theirs.get(key)}, is {inputs.record[key]}" for key in moved]
                + ([f"{len(changed)} of its input files changed since ({', '.join(changed[:3])})"] if changed else []))
                or "its settings or inputs differ")
        result = _compute(run, inputs, run_dir, results_dir, job_num, start)
        if run.save_timeline_plot:
            draw_timeline(run_dir)
        return result


def compute_ahead(plans: list[tuple[RunConfig, Inputs, Path, int]]) -> None:
    """Compute the comparisons of these jobs (config, inputs, run folder, job number) together,
    each instance-step prepared once for all (engine.compute_ahead): the steps run() would compute
    for each, none for a job whose result is there, the new ones for one it would extend. Each
    job's run() then finds its timeline computed (if its inputs have not changed since)."""
    from cka_hydra import engine

    ahead = []
    for run, inputs, run_dir, job_num in plans:
        finished, part = _what_is_there(run, run_dir, inputs)
        if not finished:
            steps = inputs.steps if part is None else _new_steps(inputs, part)
            ahead.append((run, dataclasses.replace(inputs, steps=steps), job_num))
    engine.compute_ahead(ahead)


def _what_is_there(run: RunConfig, run_dir: Path, inputs: Inputs) -> tuple[bool, dict[str, Any] | None]:
    """Whether run_dir holds this job's result, and if not, the earlier part of it that run()
    extends (its summary), or None; with overwrite, neither."""
    if run.overwrite:
        return False, None
    if is_finished(run_dir, inputs.settings, inputs.record):
        return True, None
    return False, extendable(run_dir, inputs.settings, inputs.record)


def _new_steps(inputs: Inputs, earlier: dict[str, Any]) -> list[int]:
    """The steps of inputs that an earlier part of its result lacks."""
    return [step for step in inputs.steps if step not in earlier["inputs"]["steps"]]


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
    run_timeline_figure(pd.read_csv(run_folder.timeline_path(run_dir, summary)), column, column,
                        f"{summary['exp1']} vs {summary['exp2']}, {layers}\n[{label}]", path)
    log.info("drew %s", path)


def _compute(run: RunConfig, inputs: Inputs, run_dir: Path, results_dir: Path | None, job_num: int,
             start: float) -> dict[str, Any]:
    a, b, steps = inputs.a, inputs.b, inputs.steps
    measure = run.measure.registered
    log.info("%s, layer %d vs %s, layer %d: %s, steps %s", a.instance, run.layer, b.instance, run.layer_b,
             measure.name, steps)
    last_a, last_b = max(inputs.checkpoints_a), max(inputs.checkpoints_b)
    if run.checkpoints == "final" and last_a != last_b:  # one side has later steps: say which step "final" is
        log.warning("checkpoints=final: %s's last step is %d, %s's is %d; comparing step %d, the last both hold",
                    a.instance, last_a, b.instance, last_b, steps[-1])
    from cka_hydra import engine

    result = engine.compute(run, inputs, job_num)
    summary = result_summary(run, inputs, result, time.perf_counter() - start + result.ahead_s)
    header, rows = timeline_rows(run, result)
    run_folder.write_result(run_dir, summary, header, rows)
    run_folder.clear_error(run_dir)
    if results_dir is not None and results_dirs.recorded_data_root(results_dir) != store_of(inputs.settings):
        results_dirs.record_data_root(results_dir, run.data.root)  # the first result here, or an overwrite
    log.info("%s, layer %d vs %s, layer %d: final %s %.6f (%d cities, %d checkpoint(s), %.2f s on %s; %d of its %d "
             "prepared instances from the cache) in %s", a.instance, run.layer, b.instance, run.layer_b,
             measure.column, result.values[-1], result.n_cities[-1], len(steps), summary["seconds"], result.device,
             result.from_cache, 2 * len(steps), run_dir)
    return {"status": "done", "seconds": summary["seconds"]}


def _extend(run: RunConfig, inputs: Inputs, earlier: dict[str, Any], run_dir: Path, job_num: int,
            start: float) -> dict[str, Any] | None:
    """Add the steps the earlier result lacks: its rows are kept byte for byte, the new ones
    computed (each step's random streams its own, so the values equal a whole recompute), and
    the summary's statistics taken over the whole timeline. None where the earlier timeline's
    columns are not the new ones' (it was computed by a version without them): computed whole."""
    new_steps = _new_steps(inputs, earlier)
    with open(run_folder.timeline_path(run_dir, earlier), newline="") as f:
        header, *kept = list(csv.reader(f))
    from cka_hydra import engine

    added = engine.compute(run, dataclasses.replace(inputs, steps=new_steps), job_num)
    new_header, new_rows = timeline_rows(run, added)
    if header != new_header:
        log.info("recomputing %s: its timeline's columns are %s, not %s", run_dir.name, ",".join(header),
                 ",".join(new_header))
        return None
    rows = sorted(kept + new_rows, key=lambda row: int(row[0]))
    timeline = _timeline_of(header, rows, added, earlier)
    summary = {**result_summary(run, inputs, timeline, time.perf_counter() - start + added.ahead_s),
               "computed_steps": new_steps}
    run_folder.write_result(run_dir, summary, header, rows)
    run_folder.clear_error(run_dir)
    log.info("extended %s by %d step(s) %s, kept %d: final %s %.6f", run_dir, len(new_steps), new_steps, len(kept),
             run.measure.registered.column, timeline.values[-1])
    return {"status": "extended", "seconds": summary["seconds"]}


def _timeline_of(header: list[str], rows: list[list[Any]], added: "Timeline",
                 earlier: dict[str, Any]) -> "Timeline":
    """The whole timeline of an extended result, from its rows (the kept ones as read)."""
    columns = {name: [float(row[i]) for row in rows] for i, name in enumerate(header)}
    null = list(zip(columns["null_mean"], columns["null_std"], columns["p_value"])) if "p_value" in columns else []
    low, high = interval_columns(header[1])
    intervals = list(zip(columns[low], columns[high])) if low in columns else []
    last_is_new = max(added.steps) > max(earlier["inputs"]["steps"])
    return dataclasses.replace(
        added, steps=[int(step) for step in columns["step"]], values=columns[header[1]],
        n_cities=[int(n) for n in columns["n_cities"]], intervals=intervals, chance=columns.get("chance"), null=null,
        pca_cities=added.pca_cities if last_is_new else earlier.get("pca_cities"))


def result_summary(run: RunConfig, inputs: Inputs, result: "Timeline", seconds: float) -> dict[str, Any]:
    """What summary.json says of a computed comparison: which it is, its statistics over the
    timeline, its settings and inputs (its identity), and how it ran."""
    a, b, steps = inputs.a, inputs.b, inputs.steps
    measure = run.measure.registered
    last_a, last_b = max(inputs.checkpoints_a), max(inputs.checkpoints_b)
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
        "data_root": str(inputs.root),
        "label": settings_label(inputs.settings, default_settings()),
        "settings": inputs.settings,
        "inputs": inputs.record,
    }
    left_out = {side.instance: side.excluded for side in (a, b) if side.excluded}
    if left_out:  # compared with allow_excluded: the report leaves it out unless told otherwise
        summary["excluded"] = left_out
    if measure.target is not None:  # a user's measure: the report reads how to show it from here
        summary.update(measure_kind=measure.kind, measure_target=measure.target)
    if inputs.pca is not None:  # and how many cities each side's last PCA was fitted on
        summary.update(components=inputs.pca.components, pca_filter=run.measure.pca_filter,
                       pca_cities=result.pca_cities)
    summary.update(measure.record(run.cka, inputs.settings, statistics))
    if result.intervals:
        summary.update(bootstrap=run.cka.bootstrap, confidence=run.cka.confidence,
                       final_cka_ci=list(result.intervals[-1]))
    if result.chance is not None:  # the exact null mean (cka_hydra.registry._chance)
        summary["final_chance"] = result.chance[-1]
    if result.null:
        mean, std, p = result.null[-1]
        summary.update(permutations=run.null.permutations, null_seed=run.null.seed, final_null_mean=mean,
                       final_null_std=std, final_p_value=p)
    null_mean = result.chance[-1] if result.chance is not None else result.null[-1][0] if result.null else None
    if null_mean is not None:  # against the exact null mean where there is one
        summary["final_calibrated"] = measure.calibrated(float(values[-1]), null_mean)
    return summary


def interval_columns(column: str) -> tuple[str, str]:
    """The bootstrap interval's columns, named after the value's: cka_low, cka_high."""
    return f"{column}_low", f"{column}_high"


def timeline_rows(run: RunConfig, result: "Timeline") -> tuple[list[str], list[list[Any]]]:
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
        header += list(interval_columns(measure.column))
        rows = [[*row, low, high] for row, (low, high) in zip(rows, result.intervals)]
    return header, rows
