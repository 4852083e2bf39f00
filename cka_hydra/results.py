"""Collecting the run folders of a sweep into one tidy table.

Reads through `cka_hydra.run_folder`, which decides what counts as a result; knows pandas,
not Hydra.
"""

import functools
import logging
from collections import Counter
from pathlib import Path

import pandas as pd

from cka_hydra import lifecycle, registry, run_folder
from cka_hydra import results_dir as results_dirs
from cka_hydra.identity import default_settings, describe
from cka_hydra.errors import InputError
from cka_hydra.pairs import shared_tasks

log = logging.getLogger(__name__)

COLUMNS = [
    "setting", "settings", "measure", "measure_kind", "regime", "layer", "layer_b", "model_a", "seed_a", "model_b",
    "seed_b", "instance_a", "instance_b", "tasks_a", "tasks_b", "n_shared_tasks", "n_tasks_a", "n_tasks_b", "kernel",
    "debiased", "sigma_frac", "components", "step", "final", "value", "similarity", "chance", "null_mean", "null_std",
    "p_value", "chance_similarity", "calibrated", "cka_low", "cka_high", "n_cities", "excluded", "run_dir",
]
DEFAULT_SETTING = "default"  # the label of results computed with every default setting
PROGRESS_EVERY = 200


def check_sweep_dir(sweep_dir: Path, data_root: str | None, exclude: Path | None = None) -> list[Path]:
    """sweep_dir's run folders; refuses a sweep_dir that is no folder, holds no run folder, or
    (when a data root is named) holds another data root's results."""
    if data_root is not None and not Path(data_root).is_dir():
        raise InputError(f"data.root={data_root}: no such folder (the store whose results to report; or name the "
                         "results themselves: sweep_dir=...)")
    hint = "run a sweep first (python -m cka_hydra -m sweep), or name its folder: sweep_dir=... or data.root=..."
    inside = results_dirs.enclosing_results_dir(Path.cwd())
    if inside is not None:  # the user is in a results dir: its report is sweep_dir=<it>
        hint = (f"this folder is inside the results dir {inside}: run the report from the folder that holds "
                f"outputs/, or give sweep_dir={inside}")
    if not sweep_dir.is_dir():
        raise InputError(f"sweep_dir={sweep_dir}: no such folder; {hint}")
    run_dirs = results_dirs.run_folders(sweep_dir, exclude)
    if not run_dirs:
        raise InputError(f"no results under {sweep_dir}; {hint}")
    if data_root is not None:
        results_dirs.check_data_root(sweep_dir, data_root, overwrite=False, for_report=True)
    return run_dirs


def compared(run_dirs: list[Path]) -> pd.DataFrame:
    """The instances and models each run folder compares (instance_a, instance_b, model_a,
    model_b), as the results name them, from the folders' names alone (a run folder is
    <regime>/<A>_vs_<B>/<layer...>): the names a file of the user's may use, known before the
    results are read."""
    pairs = pd.DataFrame([run_dir.parent.name.split("_vs_", 1) for run_dir in run_dirs],
                         columns=["instance_a", "instance_b"])
    return pairs.assign(model_a=pairs["instance_a"].str.split("_seed").str[0],
                        model_b=pairs["instance_b"].str.split("_seed").str[0])


def check_exclude(exclude: list[str], run_dirs: list[Path]) -> None:
    """Refuse a name in the report's exclude that no model or instance of the run folders has."""
    names = compared(run_dirs)
    instances = {*names["instance_a"], *names["instance_b"]}
    models = {*names["model_a"], *names["model_b"]}
    unknown = [name.strip() for name in exclude if name.strip() not in instances | models]
    if unknown:
        models = sorted(models, key=lambda m: (m.rsplit("-", 1)[0], int(m.rsplit("-", 1)[1])))
        raise InputError(f"exclude={','.join(unknown)}: no model or instance of these results has that name "
                         f"(their models: {', '.join(models)}; an instance: {models[-1]}_seed1)")


def collect(sweep_dir: Path, exclude: Path | None = None
            ) -> tuple[pd.DataFrame, Counter, dict[str, str], list[dict[str, str]]]:
    """One row per comparison and step (the `final` row is a run's last step), with the measure's
    `value` and its `similarity` (the value for CKA; 1 - disparity for Procrustes, so that higher
    means more alike for every measure); the number of run folders and jobs left out, by reason;
    each setting label with the settings it stands for; and each left-out run with its reason.

    Left out: `failed` (error.txt, or failed before launch as jobs.csv says), `lost` (jobs.csv),
    `incomplete`, `stale` (an input file changed, or is gone, since the result was computed: it
    no longer holds for the store), `unreadable`. A setting label is the run folder's
    (`rbf0.4-all`, `default`); results of different data roots get different labels too:
    nothing here pools results that could differ."""
    run_dirs = check_sweep_dir(sweep_dir, None, exclude)
    jobs = _jobs(sweep_dir, exclude)
    frames, left_out, summaries, roots, details = [], Counter(), [], [], []
    unchecked: Counter = Counter()
    data_roots = functools.cache(results_dirs.data_roots)  # a results dir's data_root.txt, read once

    def leave(run_dir: Path, reason: str, detail: str = "") -> None:
        left_out[reason] += 1
        details.append({"run_dir": str(run_dir.relative_to(sweep_dir)), "reason": reason, "detail": detail})

    for count, run_dir in enumerate(run_dirs, 1):
        if len(run_dirs) > PROGRESS_EVERY and count % PROGRESS_EVERY == 0:
            log.info("read %d/%d run folders", count, len(run_dirs))
        results_dir = results_dirs.enclosing_results_dir(run_dir)
        standing = lifecycle.standing(run_dir, results_dir, data_roots(results_dir) if results_dir else [])
        if standing.reason == lifecycle.NO_RESULT:
            status, detail = jobs.get(run_dir, ("", ""))
            leave(run_dir, "lost" if status == "lost" else "incomplete", detail)
            continue
        if standing.reason:
            leave(run_dir, standing.reason, standing.detail)
            continue
        summary, root_text = standing.summary, standing.data_root
        if not standing.checked:
            unchecked[root_text] += 1
        try:
            frames.append(_rows(run_dir, summary))
        except (OSError, ValueError, KeyError) as err:
            log.warning("%s: unreadable result (%s)", run_dir, err)
            leave(run_dir, "unreadable", str(err))
            continue
        summaries.append(summary)
        roots.append(root_text)
    with_folders = set(run_dirs)
    for run_dir, (status, detail) in jobs.items():
        if status in ("failed", "lost") and run_dir not in with_folders:
            leave(run_dir, status, f"before launch: {detail}" if status == "failed" else detail)
    for root_text, n in unchecked.items():
        log.warning("%d results not checked against their input files: their data root %s is not here", n, root_text)
    if not frames:
        raise InputError(
            f"no results under {sweep_dir} ({sum(left_out.values())} run folders without one): run a sweep "
            "first (python -m cka_hydra -m sweep), or name its folder: sweep_dir=... or data.root=..."
        )
    labels, meanings = _setting_labels(summaries, roots)
    results = pd.concat([frame.assign(setting=label, settings=meanings[label]) for frame, label in zip(frames, labels)],
                        ignore_index=True)
    return results[COLUMNS], left_out, meanings, details


def _jobs(sweep_dir: Path, exclude: Path | None) -> dict[Path, tuple[str, str]]:
    """Every job that the jobs.csv files at or below sweep_dir list: run folder -> (status, error)."""
    jobs = {}
    for manifest in sweep_dir.rglob(results_dirs.JOBS_FILE):
        if exclude is None or exclude not in manifest.parents:
            for row in results_dirs.read_jobs(manifest.parent):
                jobs[manifest.parent / row["run_dir"]] = (row["status"], row["error"])
    return jobs


def _rows(run_dir: Path, summary: dict) -> pd.DataFrame:
    timeline = pd.read_csv(run_folder.timeline_path(run_dir, summary))
    tasks_a, tasks_b = summary["tasks_a"], summary["tasks_b"]
    measure = registry.of_summary(summary)
    value = timeline[measure.column]
    rows = timeline.assign(
        measure=measure.name, measure_kind=measure.kind, regime=summary["regime"], layer=summary["layer"],
        layer_b=summary.get("layer_b", summary["layer"]), model_a=summary["model_a"], seed_a=summary["seed_a"],
        model_b=summary["model_b"], seed_b=summary["seed_b"], instance_a=summary["exp1"], instance_b=summary["exp2"],
        tasks_a="+".join(tasks_a), tasks_b="+".join(tasks_b),
        n_shared_tasks=len(shared_tasks(tasks_a, tasks_b)), n_tasks_a=len(tasks_a), n_tasks_b=len(tasks_b),
        kernel=summary.get("kernel"), debiased=summary.get("debiased"), sigma_frac=summary.get("sigma_frac"),
        components=summary.get("components"), final=timeline["step"] == timeline["step"].max(), value=value,
        similarity=measure.similarity(value),
        excluded=_excluded_text(summary.get("excluded") or {}),
        run_dir=str(run_dir),
    )
    for column in ("chance", "null_mean", "null_std", "p_value", "cka_low", "cka_high"):
        if column not in rows:
            rows[column] = float("nan")
    # the null mean: exact where the measure has one, else the permutation test's; and the value
    # calibrated against it
    null_mean = rows["chance"].fillna(rows["null_mean"])
    return rows.assign(chance_similarity=measure.similarity(null_mean), calibrated=measure.calibrated(value, null_mean))


def _setting_labels(summaries: list[dict], roots: list[str]) -> tuple[list[str], dict[str, str]]:
    """Each summary's setting label, and what each label stands for; roots: each summary's data
    root, as its results dir records it."""
    defaults = default_settings()
    distinct = list(dict.fromkeys(roots))
    labels, meanings = [], {}
    for summary, root in zip(summaries, roots):
        label = summary["label"] or DEFAULT_SETTING
        meaning = describe(summary["settings"], defaults) or "every setting at its default"
        if len(distinct) > 1:  # a folder above several results dirs
            label += f"-data{distinct.index(root) + 1}"
            meaning += f" on data.root={root}"
        labels.append(label)
        meanings[label] = meaning
    return labels, meanings


def _excluded_text(excluded: dict[str, str]) -> str:
    """The `excluded` column: the instances a run compared with allow_excluded although its
    regime leaves them out, `instance: reason`, joined by `; ` (read back by _exclusions)."""
    return "; ".join(f"{name}: {why}" for name, why in excluded.items())


def _exclusions(text: str, instances: tuple[str, str]) -> dict[str, str]:
    """An `excluded` column's instance -> reason (its instances are the row's: a reason may hold
    `; ` and `: ` of its own)."""
    starts = sorted((0 if text.startswith(f"{name}: ") else text.find(f"; {name}: ") + 2, name)
                    for name in dict.fromkeys(instances) if text.startswith(f"{name}: ") or f"; {name}: " in text)
    ends = [start - 2 for start, _ in starts[1:]] + [len(text)]
    return {name: text[start + len(name) + 2:end] for (start, name), end in zip(starts, ends)}


def leave_out(results: pd.DataFrame, exclude: dict[str, str], allow_excluded: bool = False,
              ) -> tuple[pd.DataFrame, dict[str, dict]]:
    """The rows of the comparisons none of whose instances `exclude` names (name -> reason; a
    model's name stands for each of its seeds), nor, unless allow_excluded, that were computed
    with allow_excluded (their `excluded` column: "instance: reason"); and per name, its reason
    and the runs it left out (each run under the first name that leaves it out)."""
    def hits(names: dict[str, str]) -> pd.Series:
        hit = pd.Series(None, index=results.index, dtype=object)
        for column in ("model_a", "instance_a", "model_b", "instance_b"):
            hit = hit.fillna(results[column].where(results[column].isin(list(names))))
        return hit

    reasons, hit = dict(exclude), hits(exclude)
    if not allow_excluded:
        rows = results.loc[results["excluded"] != "", ["excluded", "instance_a", "instance_b"]].drop_duplicates()
        marked = {name: why for text, a, b in rows.itertuples(index=False) for name, why in _exclusions(text, (a, b)).items()}
        hit = hit.fillna(hits(marked))
        reasons = {**marked, **reasons}
    runs = results[hit.notna()].groupby(hit.dropna())["run_dir"].nunique()
    return results[hit.isna()], {name: {"reason": reasons[name], "runs": int(n)} for name, n in runs.items()}
