"""Collecting the run folders of a sweep into one tidy table.

A run folder is one Hydra job's folder (it holds `.hydra/`); it counts as a result
only when its `summary.json` and `cka_timeline.csv` are there and readable. Knows
files and pandas, not Hydra.
"""

import json
import logging
from collections import Counter
from pathlib import Path

import pandas as pd

from cka_hydra.errors import InputError
from cka_hydra.pairs import model_name, shared_tasks

log = logging.getLogger(__name__)

COLUMNS = [
    "setting", "regime", "layer", "model_a", "seed_a", "model_b", "seed_b", "tasks_a", "tasks_b",
    "n_shared_tasks", "n_tasks_a", "n_tasks_b", "kernel", "debiased", "sigma_frac", "step", "final", "cka",
    "cka_low", "cka_high", "n_cities", "run_dir",
]
PROGRESS_EVERY = 200


def collect(sweep_dir: Path, exclude: Path | None = None) -> tuple[pd.DataFrame, Counter]:
    """One row per comparison and step (the `final` row is a run's last step), and the number
    of run folders left out, by reason: failed (error.txt), incomplete, unreadable."""
    if not sweep_dir.is_dir():
        raise InputError(f"sweep_dir={sweep_dir}: no such folder (expected a sweep's folder, e.g. outputs/cka)")
    run_dirs = sorted(p.parent for p in sweep_dir.rglob(".hydra") if exclude is None or exclude not in p.parents)
    frames, left_out = [], Counter()
    for count, run_dir in enumerate(run_dirs, 1):
        if len(run_dirs) > PROGRESS_EVERY and count % PROGRESS_EVERY == 0:
            print(f"read {count}/{len(run_dirs)} run folders", flush=True)
        if not (run_dir / "summary.json").exists():
            left_out["failed" if (run_dir / "error.txt").exists() else "incomplete"] += 1
            continue
        try:
            frames.append(_rows(run_dir))
        except (OSError, ValueError, KeyError) as err:
            log.warning("%s: unreadable result (%s)", run_dir, err)
            left_out["unreadable"] += 1
    if not frames:
        raise InputError(
            f"no results under {sweep_dir} ({sum(left_out.values())} run folders without one): "
            "run a sweep first, e.g. python -m cka_hydra -m sweep"
        )
    results = pd.concat(frames, ignore_index=True)
    results.insert(0, "setting", setting_labels(results))
    return results[COLUMNS], left_out


def _rows(run_dir: Path) -> pd.DataFrame:
    summary = json.loads((run_dir / "summary.json").read_text())
    timeline = pd.read_csv(run_dir / "cka_timeline.csv")
    regime = summary["regime"]
    index_a, index_b = (int(i) for i in summary["pair"].split("_"))
    seed_a, seed_b = summary["seed_pair"].split("_")
    tasks_a, tasks_b = summary["tasks_a"], summary["tasks_b"]
    rows = timeline.assign(
        regime=regime, layer=summary["layer"], model_a=model_name(regime, index_a), seed_a=seed_a,
        model_b=model_name(regime, index_b), seed_b=seed_b, tasks_a="+".join(tasks_a), tasks_b="+".join(tasks_b),
        n_shared_tasks=len(shared_tasks(tasks_a, tasks_b)), n_tasks_a=len(tasks_a), n_tasks_b=len(tasks_b),
        kernel=summary["kernel"], debiased=summary.get("debiased", False), sigma_frac=summary.get("sigma_frac"),
        final=timeline["step"] == timeline["step"].max(), city_filter=summary["settings"]["city_filter"],
        run_dir=str(run_dir),
    )
    for column in ("cka_low", "cka_high"):
        if column not in rows:
            rows[column] = float("nan")
    return rows


def setting_labels(results: pd.DataFrame) -> pd.Series:
    """A short name for each row's estimator and city filter: results of different settings
    are never pooled. `linear`, `linear-debiased`, `rbf0.4`; `...-filter2` when filters differ."""
    label = results["kernel"].where(results["kernel"] != "rbf", "rbf" + results["sigma_frac"].astype(str))
    label = label.where(~results["debiased"].astype(bool), label + "-debiased")
    filters = list(dict.fromkeys(results["city_filter"]))
    if len(filters) > 1:
        label = label + "-filter" + results["city_filter"].map({f: str(i + 1) for i, f in enumerate(filters)})
    return label
