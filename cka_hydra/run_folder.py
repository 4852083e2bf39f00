"""The results folder: where each result lives, what its files hold, and when it counts.

    <results dir>/                      hydra.sweep.dir: outputs/cka, or outputs/cka_demo on the demo store
      data_root.txt                     the store that every result here was computed from
      jobs.csv                          one row per job ever planned here
      <regime>/<A>_vs_<B>/layer<L>[_vs_layer<L_b>][-<settings>]/   one run folder per comparison and settings
        summary.json  cka_timeline.csv  the result; .hydra/ and cka.log: Hydra's record of the run
        error.txt                       why the run failed, only in a folder without a result

A run folder's name says every setting that decides its result (`settings_label`); only the data
root is left out, and results dir and run folder both record it. The job, the sweeper and the
report all go through this module. It knows files, not Hydra, torch or CKA.
"""

import hashlib
import json
import logging
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from filelock import FileLock, Timeout

from cka_hydra.atomic import read_csv, write_atomic, write_csv
from cka_hydra.errors import CannotWrite, InputError
from cka_hydra.pairs import Comparison, instance_name, model_name
from cka_hydra.store import changed_files

log = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"
TIMELINE_FILE = "cka_timeline.csv"
ERROR_FILE = "error.txt"
DATA_ROOT_FILE = "data_root.txt"
JOBS_FILE = "jobs.csv"
REPORT_FILE = "report.json"  # in a report's folder: what it found and wrote (cka_hydra.report)
JOBS_COLUMNS = ("regime", "pair", "seed_pair", "layer", "layer_b", "settings", "run_dir", "status", "seconds", "error")
DEMO = "demo"  # data_root.txt of a results dir computed from the built-in demo store


def timeline_plot_file(measure: str) -> str:
    """The run's own timeline figure (save_timeline_plot=true): `cka_timeline.png`, as the research
    group's pair script names it, or after the measure: `procrustes_timeline.png`."""
    return f"{measure}_timeline.png"


def timeline_plot_current(run_dir: Path, measure: str) -> bool:
    """Whether run_dir's timeline figure was drawn from the result there now (not before it)."""
    try:
        return (run_dir / timeline_plot_file(measure)).stat().st_mtime_ns >= (run_dir / SUMMARY_FILE).stat().st_mtime_ns
    except OSError:
        return False


def results_dir_name(data_root: str | None) -> str:
    """The default results dir: the demo's results never share a folder with real ones."""
    return "outputs/cka" if data_root is not None else "outputs/cka_demo"


# Short names of settings that differ from the default. A label may read other settings (the
# rbf kernel names its bandwidth) and may be "" when another label already says it.
def _short(value: Any) -> str:
    return hashlib.sha256(json.dumps(value).encode()).hexdigest()[:8]


def _steps(steps: Any) -> str:
    if isinstance(steps, str):
        return steps
    return "steps" + ("+".join(map(str, steps)) if len(steps) <= 3 else "-" + _short(steps))


_LABELS: dict[str, Callable[[Any, Mapping[str, Any]], str]] = {
    "checkpoints": lambda v, s: _steps(v),
    "city_filter": lambda v, s: f"filter-{_short(v)}" if v else "nofilter",
    "cka.kernel": lambda v, s: f"{v}{s['cka.sigma_frac']!r}" if v == "rbf" else v,
    "cka.sigma_frac": lambda v, s: "",  # in the kernel's label
    "cka.debiased": lambda v, s: "debiased" if v else "biased",
    "cka.precision": lambda v, s: {"float32": "f32", "float64": "f64"}.get(v, v),
    "cka.bootstrap": lambda v, s: f"boot{v}",
    "cka.confidence": lambda v, s: f"ci{v!r}",
    "cka.seed": lambda v, s: f"seed{v}",
    "measure.name": lambda v, s: v,
    "measure.components": lambda v, s: f"k{v}",
    "measure.pca_filter": lambda v, s: f"pcafilter-{_short(v)}" if v else "pcanofilter",
    "null.permutations": lambda v, s: f"null{v}",
    "null.seed": lambda v, s: f"nullseed{v}",
    "measure._target_": lambda v, s: "",  # a user measure: its name says it
    "measure.kind": lambda v, s: "",
}
# Said by data_root.txt and summary.json instead: a results dir holds one data root.
_UNNAMED = {"data.root"}
_PLAIN = re.compile(r"[\w.+]{1,24}")


def _label(key: str, value: Any, settings: Mapping[str, Any]) -> str:
    if key in _LABELS:
        return _LABELS[key](value, settings)
    # a setting without a label of its own: readable when short and plain, else hashed
    name = key.rsplit(".", 1)[-1]
    return f"{name}{value}" if _PLAIN.fullmatch(str(value)) else f"{name}-{_short(value)}"


@dataclass(frozen=True)
class Follows:
    """A default that is another setting's value (measure.pca_filter's is city_filter's)."""

    key: str


def changed(settings: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The settings that differ from the defaults (a setting without a default differs)."""
    def default(key: str) -> Any:
        value = defaults[key]
        return settings.get(value.key) if isinstance(value, Follows) else value

    return {k: v for k, v in settings.items() if k not in defaults or default(k) != v}


def settings_label(settings: Mapping[str, Any], defaults: Mapping[str, Any]) -> str:
    """`rbf0.4-all`, `debiased-f32`, `filter-1a2b3c4d`: one short part per setting that differs
    from the defaults, in schema order; "" for the defaults."""
    parts = [_label(k, v, settings) for k, v in changed(settings, defaults).items() if k not in _UNNAMED]
    return "-".join(part for part in parts if part)


def describe(settings: Mapping[str, Any], defaults: Mapping[str, Any]) -> str:
    """The settings that differ from the defaults, as Hydra overrides: `cka.kernel=rbf
    checkpoints=all city_filter="region:^Europe"` (quote the whole for a shell)."""
    return " ".join(f"{_OVERRIDE_KEYS.get(k, k)}={_override_value(v)}"
                    for k, v in changed(settings, defaults).items() if k not in _UNNAMED | _IN_MEASURE_FILE)


_OVERRIDE_KEYS = {"measure.name": "measure"}  # a group option, chosen as the group
_IN_MEASURE_FILE = {"measure._target_", "measure.kind"}  # a user measure's, set by choosing it


def _override_value(value: Any) -> str:
    text = _text(value)
    return text if not isinstance(value, str) or _PLAIN.fullmatch(value) else json.dumps(value)


def subdir(comparison: Comparison, settings: Mapping[str, Any], defaults: Mapping[str, Any]) -> str:
    """A run folder's path below the results dir: `pt2/pt2-1_vs_pt2-2_seed1/layer5[-rbf0.4-all]`, or
    with the second instance at another layer `.../layer3_vs_layer5[-...]`."""
    c = comparison
    a = instance_name(model_name(c.regime, c.a), c.seed_a)
    b = instance_name(model_name(c.regime, c.b), c.seed_b)
    layers = f"layer{c.layer}" if c.layer_b == c.layer else f"layer{c.layer}_vs_layer{c.layer_b}"
    label = settings_label(settings, defaults)
    return f"{c.regime}/{a}_vs_{b}/{layers}" + (f"-{label}" if label else "")


def data_root_text(data_root: str | None) -> str:
    """What data_root.txt holds for a data root."""
    return DEMO if data_root is None else data_root


def _data_root_words(text: str) -> str:
    return "the built-in demo store" if text == DEMO else f"data.root={text}"


# --- a run folder's files ---

def write_result(run_dir: Path, summary: dict[str, Any], header: Sequence[str], rows: Iterable[Sequence]) -> None:
    """Write a complete result: the timeline, then the summary, which names the timeline's
    checksum. A folder counts as holding a result only when both are there and agree, so a
    process killed between the two renames never leaves a result that counts."""
    timeline = write_csv(run_dir / TIMELINE_FILE, header, rows)
    summary = {**summary, "timeline_sha256": hashlib.sha256(timeline).hexdigest()}
    write_atomic(run_dir / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")
    (run_dir / timeline_plot_file(summary.get("measure", "cka"))).unlink(missing_ok=True)  # drawn from the result it replaced


def read_result(run_dir: Path) -> dict[str, Any] | None:
    """The summary of the complete result in run_dir, or None where it holds none."""
    try:
        summary = json.loads((run_dir / SUMMARY_FILE).read_text())
        timeline = (run_dir / TIMELINE_FILE).read_bytes()
    except (OSError, ValueError):
        return None
    if not isinstance(summary, dict) or summary.get("timeline_sha256") != hashlib.sha256(timeline).hexdigest():
        return None
    return summary


def is_finished(run_dir: Path, settings: Mapping[str, Any], inputs: Mapping[str, Any],
                since: float | None = None) -> bool:
    """Whether run_dir holds the result of these settings on these inputs (representation
    folders, steps and the identity of each file read: a store that gained a final checkpoint
    makes `final` stale, and so does a file replaced in place), written at or after `since` (a
    time.time()) when given: the result an overwrite has yet to replace is not its own. The data
    root is the results dir's (check_data_root), not the result's: a store that moved keeps it."""
    summary = read_result(run_dir)
    if summary is None or _identity(summary.get("settings")) != _identity(settings) \
            or summary.get("inputs") != inputs or not _of_this_store(run_dir, summary, settings):
        return False
    try:
        return since is None or (run_dir / SUMMARY_FILE).stat().st_mtime >= since
    except OSError:
        return False


def extendable(run_dir: Path, settings: Mapping[str, Any], inputs: Mapping[str, Any]) -> dict[str, Any] | None:
    """The summary of run_dir's result when it is an earlier part of this one: the same settings
    and representation folders, steps that are all among these (some missing: the store gained
    checkpoints), each of their files as it was; else None (computed whole)."""
    summary = read_result(run_dir)
    if summary is None or _identity(summary.get("settings")) != _identity(settings) \
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
    theirs, ours = (data_root_text((s or {}).get("data.root")) for s in (summary.get("settings"), settings))
    results_dir = enclosing_results_dir(run_dir)
    roots = data_roots(results_dir) if results_dir else []
    return theirs == ours or (theirs in roots and roots[0] == ours)


def _identity(settings: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (settings or {}).items() if k not in _UNNAMED}


def conflict(run_dir: Path, settings: Mapping[str, Any]) -> str | None:
    """Why run_dir's result may not be replaced by one of these settings, or None when it holds
    none, or one of the same settings (on whichever data root: the results dir's is checked on
    its own, and a result of another is stale)."""
    summary = read_result(run_dir)
    theirs = _identity((summary or {}).get("settings"))
    ours = _identity(settings)
    differ = sorted(k for k in {*ours, *theirs} if ours.get(k) != theirs.get(k))
    if summary is None or not differ:
        return None
    return (f"{run_dir} holds a result of other settings ({', '.join(f'{k}={_text(theirs.get(k))}' for k in differ)}); "
            "set overwrite=true to replace it, or hydra.sweep.dir=... to write elsewhere")


def stale_inputs(summary: Mapping[str, Any], root: Path | None = None) -> list[str]:
    """The input files of a result that are missing below root (by default the data root it was
    computed from) now, or not the same (all of them, as ["(not recorded)"], for a result written
    before results recorded their files)."""
    stamps = (summary.get("inputs") or {}).get("files")
    if not isinstance(stamps, dict):
        return ["(not recorded)"]
    return changed_files(Path(summary.get("data_root", "/")) if root is None else root, stamps)


def _text(value: Any) -> str:
    """A value as an override spells it: null, true, [0,7], region:^A."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


@contextmanager
def computing(run_dir: Path) -> Iterator[None]:
    """Hold a lock while this process computes and writes run_dir's result, so that two sweeps
    or a run beside a sweep never compute one comparison at once: the second waits (and says
    so in its log), then finds the result. Its file, `.<name>.lock`, sits beside the run folder."""
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(run_dir.parent / f".{run_dir.name}.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info("waiting: another process is computing %s", run_dir)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def write_error(run_dir: Path, text: str) -> None:
    """Record why a run failed, unless run_dir holds a valid result: an error beside one would
    make it look failed. Beside a stale result (its files changed since: the failed run was its
    recompute) it is written, and the result no longer counts. (The job's log and jobs.csv say
    why in either case, also when the disk that failed the run refuses this file too.)"""
    summary = read_result(run_dir)
    recorded = summary is not None and (summary.get("inputs") or {}).get("files")
    if summary is None or (recorded and stale_inputs(summary)):
        with suppress(CannotWrite):
            write_atomic(run_dir / ERROR_FILE, text)


def clear_error(run_dir: Path) -> None:
    (run_dir / ERROR_FILE).unlink(missing_ok=True)


# --- the results dir ---

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
            f"{_data_root_words(text)} with sweep_dir=..." if for_report else
            "write these elsewhere (hydra.sweep.dir=...), or set overwrite=true to replace them")
    if recorded != DEMO and not Path(recorded).exists():  # gone: had it moved here, its files would match
        hint += (f" ({recorded} is gone, but no result's files are found unchanged below {text}: a store moved with "
                 "mv, or copied with cp -a, keeps its files' modification times; cp -r does not)")
    raise InputError(f"{results_dir} holds results computed from {_data_root_words(recorded)}, not "
                     f"{_data_root_words(text)}: {hint}")


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
