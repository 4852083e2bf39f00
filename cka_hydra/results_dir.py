"""A results dir: the data root its results belong to, the jobs planned in it, its run folders.

    <results dir>/          hydra.sweep.dir: outputs/cka, or outputs/cka_demo on the demo store
      data_root.txt         the store that every result here was computed from
      jobs.csv              one row per job ever planned here
      multirun.yaml         the last sweep's config
      <regime>/...          run folders (cka_hydra.run_folder), named by cka_hydra.identity
"""

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from filelock import FileLock

from cka_hydra.atomic import read_csv, write_atomic, write_csv
from cka_hydra.errors import InputError
from cka_hydra.identity import DEMO, data_root_text, data_root_words
from cka_hydra.run_folder import ERROR_FILE, SUMMARY_FILE, read_result, stale_inputs

log = logging.getLogger(__name__)


DATA_ROOT_FILE = "data_root.txt"


JOBS_FILE = "jobs.csv"


REPORT_FILE = "report.json"  # in a report's folder: what it found and wrote (cka_hydra.report)


JOBS_COLUMNS = ("regime", "pair", "seed_pair", "layer", "layer_b", "settings", "run_dir", "status", "seconds", "error")


def check_data_root(results_dir: Path, data_root: str | None, overwrite: bool, for_report: bool = False) -> bool:
    """Refuse to write results of one data root into a results dir that holds another's, unless
    the store merely moved there: the recorded root is a link to this one, or results' input files
    are found unchanged below it (data_root.txt then names the new place). Returns whether
    data_root.txt names this data root."""
    recorded = recorded_data_root(results_dir)
    text = data_root_text(data_root)
    if recorded is None or recorded == text:
        return recorded == text
    if not overwrite and data_root is not None and recorded != DEMO and _moved(results_dir, recorded, Path(data_root)):
        log.warning("%s: its results were computed from %s, which is now %s (the same files): data_root.txt updated",
                    results_dir, recorded, text)
        record_data_root(results_dir, data_root, data_roots(results_dir))
        return True
    if overwrite:
        return False
    hint = (f"report on these with data.root={recorded} or sweep_dir={results_dir}, or name the results of "
            f"{data_root_words(text)} with sweep_dir=..." if for_report else
            "write these elsewhere (hydra.sweep.dir=...), or set overwrite=true to replace them")
    if recorded != DEMO and not Path(recorded).exists():  # gone: had it moved here, its files would match
        hint += (f" ({recorded} is gone, but no result's files are found unchanged below {text}: a store moved with "
                 "mv, or copied with cp -a, keeps its files' modification times; cp -r does not)")
    raise InputError(f"{results_dir} holds results computed from {data_root_words(recorded)}, not "
                     f"{data_root_words(text)}: {hint}")


def _moved(results_dir: Path, recorded: str, root: Path) -> bool:
    """Whether the store recorded for results_dir is the one at root: the same folder through a
    link, or (the recorded one gone) one where some result's input files are, unchanged: a store
    that was moved. A recorded store that is still there is another store than root."""
    if Path(recorded).resolve() == root.resolve():
        return True
    if Path(recorded).exists():
        return False
    for summary_file in results_dir.rglob(SUMMARY_FILE):
        summary = read_result(summary_file.parent)
        if summary is not None and (summary.get("inputs") or {}).get("files") and not stale_inputs(summary, root):
            return True
    return False


def recorded_data_root(results_dir: Path) -> str | None:
    """The data root results_dir's results belong to, as data_root.txt says, or None without one."""
    roots = data_roots(results_dir)
    return roots[0] if roots else None


def data_roots(results_dir: Path) -> list[str]:
    """The data root results_dir's results belong to, then the places that store was moved from
    (data_root.txt: the root, then a `moved from: <path>` line for each)."""
    try:
        lines = (results_dir / DATA_ROOT_FILE).read_text().splitlines()
    except OSError:
        return []
    return [line.strip().removeprefix(_MOVED) for line in lines if line.strip()]


_MOVED = "moved from: "


def record_data_root(results_dir: Path, data_root: str | None, moved_from: Sequence[str] = ()) -> None:
    """Record the data root of results_dir's results; moved_from: the places that store was at."""
    path = results_dir / DATA_ROOT_FILE
    text = "".join(line + "\n" for line in [data_root_text(data_root), *(_MOVED + root for root in moved_from)])
    if not path.exists() or path.read_text() != text:
        write_atomic(path, text)


def enclosing_results_dir(folder: Path) -> Path | None:
    """The results dir that folder is in (or is), by its data_root.txt, or None."""
    return next((f for f in (folder, *folder.parents) if (f / DATA_ROOT_FILE).is_file()), None)


def misplaced(cwd: Path, overrides: Sequence[str]) -> str | None:
    """Why a run with these overrides may not start in cwd: with the default results dir
    (outputs/cka...; none of the overrides names hydra.sweep.dir or hydra.run.dir) it would nest
    in results, cwd being inside a results dir, or being (or being inside) an outputs/ folder that
    holds results dirs or the demo store. None where it may."""
    if any(override.strip().startswith(("hydra.sweep.dir=", "hydra.run.dir=")) for override in overrides):
        return None
    inside = enclosing_results_dir(cwd)
    if inside is not None:
        return (f"this folder is inside the results dir {inside}: run from the folder that holds outputs/ "
                "(results would go to a results dir nested in it), or name one: hydra.sweep.dir=...")
    for folder in (cwd, *cwd.parents):
        held = results_dirs_in(folder) or ([folder / "demo_store"] if (folder / "demo_store").is_dir() else [])
        if folder.name == "outputs" and held:
            where = "this folder holds" if folder == cwd else f"this folder is inside {folder}, which holds"
            return (f"{where} the {'results dir' if held[0].name != 'demo_store' else 'store'} {held[0].name}/: "
                    f"run from the folder that holds outputs/ (results would go to {folder.name}/"
                    f"{'' if folder == cwd else '.../'}outputs/, away from those), or name one: hydra.sweep.dir=...")
    return None


def results_dirs_in(folder: Path) -> list[Path]:
    """The results dirs directly in folder (its children with a data_root.txt): folder is outputs/."""
    try:
        return sorted(child for child in folder.iterdir() if (child / DATA_ROOT_FILE).is_file())
    except OSError:
        return []


def run_folders(results_dir: Path, exclude: Path | None = None) -> list[Path]:
    """Every run folder below results_dir: a folder holding a result or an error (written by a sweep,
    a run or cka_hydra.compare), or `.hydra/` (a job that may have left nothing else); not
    exclude, nor a report's folder (its REPORT_FILE says so) or anything in them."""
    found = {path.parent for name in (".hydra", SUMMARY_FILE, ERROR_FILE) for path in results_dir.rglob(name)}
    skipped = {path.parent for path in results_dir.rglob(REPORT_FILE)} | ({exclude} if exclude else set())
    return sorted(folder for folder in found if skipped.isdisjoint((folder, *folder.parents)))


def update_jobs(results_dir: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Merge rows into jobs.csv, keyed by run folder: a job planned again replaces its row, the
    rows of earlier sweeps in this folder stay. `run_dir` is relative to results_dir."""
    path = results_dir / JOBS_FILE
    results_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(results_dir / f".{JOBS_FILE}.lock")):
        merged = {row["run_dir"]: row for row in (read_csv(path) if path.exists() else [])}
        merged |= {row["run_dir"]: row for row in rows}
        write_csv(path, JOBS_COLUMNS, ([row.get(c, "") for c in JOBS_COLUMNS] for row in merged.values()))


def read_jobs(results_dir: Path) -> list[dict[str, str]]:
    return read_csv(results_dir / JOBS_FILE)
