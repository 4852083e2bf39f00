"""One run folder's files: the result, an error, the lock held while computing, the timeline figure.

    <run folder>/                       <regime>/<A>_vs_<B>/layer<L>[_vs_layer<L_b>][-<settings>]
      summary.json  <measure>_timeline.csv   the result (cka_timeline.csv, procrustes_timeline.csv, ...)
      .hydra/  cka.log                  Hydra's record of the run
      error.txt                         why the run failed, only in a folder without a valid result

A result is complete when its summary names its timeline's checksum (`read_result`); whether it
is the result a job asks for is cka_hydra.lifecycle's question. Knows files, not Hydra, torch or CKA.
"""

import hashlib
import json
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from cka_hydra.atomic import write_atomic, write_csv
from cka_hydra.errors import CannotWrite
from cka_hydra.store import changed_files

log = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"
ERROR_FILE = "error.txt"


def timeline_file(measure: str) -> str:
    """A result's timeline, named after its measure as the research group's scripts name it:
    `cka_timeline.csv`, `procrustes_timeline.csv`."""
    return f"{measure}_timeline.csv"


def timeline_path(run_dir: Path, summary: Mapping[str, Any]) -> Path:
    """The timeline of the result whose summary this is (results written before timelines were
    named after their measure have `cka_timeline.csv`, whatever the measure)."""
    name = summary.get("timeline_file", timeline_file("cka"))
    if not isinstance(name, str) or not name.endswith("_timeline.csv") or "/" in name or "\\" in name:
        raise ValueError(f"{run_dir / SUMMARY_FILE}: timeline_file {name!r} is not a timeline's name")
    return run_dir / name


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


def write_result(run_dir: Path, summary: dict[str, Any], header: Sequence[str], rows: Iterable[Sequence]) -> None:
    """Write a complete result: the timeline, then the summary, which names the timeline's
    checksum. A folder counts as holding a result only when both are there and agree, so a
    process killed between the two renames never leaves a result that counts."""
    name = timeline_file(summary.get("measure", "cka"))
    timeline = write_csv(run_dir / name, header, rows)
    summary = {**summary, "timeline_file": name, "timeline_sha256": hashlib.sha256(timeline).hexdigest()}
    write_atomic(run_dir / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")
    # a run folder names its measure, so the only other timeline it can hold is one written before
    # timelines were named after their measure: cka_timeline.csv, now replaced
    if name != timeline_file("cka"):
        (run_dir / timeline_file("cka")).unlink(missing_ok=True)
    # drawn from the result it replaced
    (run_dir / timeline_plot_file(summary.get("measure", "cka"))).unlink(missing_ok=True)


def read_result(run_dir: Path) -> dict[str, Any] | None:
    """The summary of the complete result in run_dir, or None where it holds none."""
    try:
        summary = json.loads((run_dir / SUMMARY_FILE).read_text())
        timeline = timeline_path(run_dir, summary).read_bytes()
    except (OSError, ValueError, AttributeError, TypeError):  # AttributeError, TypeError: a summary that is no dict
        return None
    if summary.get("timeline_sha256") != hashlib.sha256(timeline).hexdigest():
        return None
    return summary


def stale_inputs(summary: Mapping[str, Any], root: Path | None = None) -> list[str]:
    """The input files of a result that are missing below root (by default the data root it was
    computed from) now, or not the same (all of them, as ["(not recorded)"], for a result written
    before results recorded their files)."""
    stamps = (summary.get("inputs") or {}).get("files")
    if not isinstance(stamps, dict):
        return ["(not recorded)"]
    return changed_files(Path(summary.get("data_root", "/")) if root is None else root, stamps)


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


