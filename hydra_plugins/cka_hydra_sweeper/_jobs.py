"""A sweep's jobs: each one's record (status, seconds, error), its row of jobs.csv, and how a
launch's answer settles it."""

import logging
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from hydra.core.utils import JobReturn, JobStatus

from cka_hydra import lifecycle, run_folder
from cka_hydra.errors import CannotWrite
from cka_hydra.pairs import Comparison
from cka_hydra.results_dir import update_jobs
from cka_hydra.schema import RunConfig

log = logging.getLogger(__name__)


class SweepError(SystemExit):
    """A sweep that cannot start, or that ended with failed or lost jobs: the message alone, exit
    status 1. (SystemExit: Hydra would add a hint about stack traces to any other exception.)"""

    def __init__(self, message: str) -> None:
        super().__init__(f"Error: {message}")


@dataclass
class Job:
    comparison: Comparison
    overrides: List[str]
    run: RunConfig
    results_dir: Path
    subdir: str
    settings: str  # the settings that differ from the defaults, as overrides
    inputs: Any = None  # its Inputs, once checked before launch
    draw_only: bool = False  # finished, run only to draw its timeline figure (save_timeline_plot)
    status: str = "pending"
    seconds: Optional[float] = None
    error: str = ""

    @property
    def run_dir(self) -> Path:
        return self.results_dir / self.subdir

    def row(self) -> Dict[str, Any]:
        c = self.comparison
        seconds = "" if self.seconds is None else f"{self.seconds:.3f}"
        return dict(regime=c.regime, pair=c.pair, seed_pair=c.seed_pair, layer=c.layer, layer_b=c.layer_b,
                    settings=self.settings,
                    run_dir=self.subdir, status=self.status, seconds=seconds, error=self.error)


def layer_b_text(comparison: Comparison) -> str:
    return "" if comparison.layer_b == comparison.layer else f" layer_b={comparison.layer_b}"


def record(job: Job, result: JobReturn, started: float) -> None:
    if result.status == JobStatus.COMPLETED:
        job.status, job.seconds = result.return_value["status"], result.return_value["seconds"]
    elif result.status == JobStatus.FAILED:
        # the job's own exception; not through .return_value, which prints Hydra's "Error executing job"
        err = result._return_value
        job.status, job.error = "failed", (str(err).splitlines() or [type(err).__name__])[0]
    else:  # the launcher has no word from the job (its array task timed out or was killed)
        settle([job], str(result._return_value), started)


def settle(batch: List[Job], reason: str, started: float) -> None:
    """A batch whose launch() gave no answer: its jobs that wrote their result since the sweep
    started (or before, when they were to keep it) are done (or extended), with the seconds their
    summary records, the rest lost."""
    for job in batch:
        if finished(job, since=started if job.run.overwrite else None):
            summary = run_folder.read_result(job.run_dir) or {}
            # extended in this sweep: its summary, written since, names the steps computed then
            job.status = "extended" if "computed_steps" in summary and finished(job, since=started) else "done"
            job.seconds = summary.get("seconds")
        else:
            job.status, job.error = "lost", reason


def plot_missing(job: Job) -> bool:
    """A finished job still runs, to draw its figure, with save_timeline_plot and none drawn from its result."""
    return job.run.save_timeline_plot and not run_folder.timeline_plot_current(job.run_dir, job.run.measure.name)


def finished(job: Job, since: Optional[float] = None) -> bool:
    return lifecycle.is_finished(job.run_dir, job.inputs.settings, job.inputs.record, since)


def write_jobs(jobs: List[Job]) -> None:
    by_dir: Dict[Path, List[Dict[str, Any]]] = defaultdict(list)
    for job in jobs:
        by_dir[job.results_dir].append(job.row())
    for results_dir, rows in by_dir.items():
        try:
            update_jobs(results_dir, rows)
        except CannotWrite as err:  # the disk is full or read-only: no job could write its result either
            raise SweepError(str(err)) from None


def log_progress(jobs: List[Job], n_run: int, n_todo: int, elapsed: float) -> None:
    counts = Counter(job.status for job in jobs)
    eta = elapsed / n_run * (n_todo - n_run) if n_run else 0.0
    log.info(
        "[%d/%d] done %d, %sskipped %d, failed %d, lost %d | %.0f s elapsed, ~%.0f s left",
        len(jobs) - counts["pending"] - counts["running"], len(jobs), counts["done"],
        f"extended {counts['extended']}, " if counts["extended"] else "", counts["skipped"], counts["failed"],
        counts["lost"], elapsed, eta,
    )
