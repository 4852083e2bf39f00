"""The cka sweeper's work: plan the valid jobs, check them, launch them in bounded batches, record
each one, and follow the store when asked.

    _parse   the overrides: the planned groups, the swept settings, the fixed ones
    _plan    the valid jobs of each regime and settings, checked before launch
    _launch  batches, launchers' parts as they end, interrupts
    _jobs    each job's record and jobs.csv
    _follow  rounds that extend timelines as training writes checkpoints
"""

import logging
import time
from collections import Counter
from typing import Any, List

from hydra.core.utils import JobReturn
from omegaconf import OmegaConf

from cka_hydra.atomic import write_atomic
from cka_hydra.errors import CannotWrite
from cka_hydra.results_dir import JOBS_FILE
from cka_hydra.run_folder import ERROR_FILE

from ._jobs import SweepError, layer_b_text, settle, write_jobs
from ._launch import interruptible, launch_all
from ._parse import split_overrides
from ._plan import check_jobs, plan_jobs

log = logging.getLogger(__name__)


def sweep(sweeper: Any, arguments: List[str]) -> List[JobReturn]:
    if sweeper.follow is not None:
        from ._follow import refuse_cluster  # follow's imports: only for a sweep that follows

        refuse_cluster(sweeper)
    config_loader = sweeper.hydra_context.config_loader
    choices, swept, fixed = split_overrides(config_loader, sweeper.config, sweeper.params, arguments)
    jobs = plan_jobs(sweeper, choices, swept, fixed)
    check_jobs(jobs, write_demo_store=not sweeper.dry_run)
    if sweeper.dry_run:
        for job in jobs:
            log.info("%s%s", " ".join(job.overrides), "" if job.status == "pending" else
                     f"  [{job.status}{': ' + job.error if job.error else ''}]")
        counts = Counter(job.status for job in jobs)
        log.info("%d jobs (dry run: nothing computed%s): %d to run, %d already done, %d failing before launch",
                 len(jobs), ", nothing followed" if sweeper.follow is not None else "", counts["pending"],
                 counts["skipped"], counts["failed"])
        if counts["failed"]:  # as the sweep itself would end
            raise SweepError(f"{counts['failed']} of {len(jobs)} jobs would fail before launch (marked failed above)")
        return []

    results_dirs = sorted({job.results_dir for job in jobs})
    manifests = ", ".join(str(d / JOBS_FILE) for d in results_dirs)
    try:
        for results_dir in results_dirs:
            write_atomic(results_dir / "multirun.yaml", OmegaConf.to_yaml(sweeper.config))
    except CannotWrite as err:  # the disk is full or read-only: say so before any job tries
        raise SweepError(str(err)) from None
    write_jobs(jobs)
    counts = Counter(job.status for job in jobs)
    drawing = sum(job.draw_only for job in jobs)
    log.info("%d jobs already have results for the same settings (skipped); %d failed before launch; %d to run%s",
             counts["skipped"], counts["failed"], counts["pending"],
             f" ({drawing} of them only to draw their timeline figure)" if drawing else "")

    todo = [job for job in jobs if job.status == "pending"]
    started = time.time()
    try:
        with interruptible() as received:
            launch_all(sweeper, jobs, todo, received, started)
            if sweeper.follow is not None:
                from ._follow import follow

                follow(sweeper, jobs, lambda due: launch_all(sweeper, jobs, due, received, started, progress=False),
                       received)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM from a scheduler or kill
        running = [job for job in jobs if job.status == "running"]
        settle(running, "interrupted", started)
        write_jobs(running)
        counts = Counter(job.status for job in jobs)
        raise SweepError(
            f"interrupted: {counts['lost']} launched jobs have no result (marked lost) and {counts['pending']} "
            f"were not launched (see {manifests}); "
            "running the sweep again skips every job that finished and runs the rest") from None

    failed = [job for job in jobs if job.status in ("failed", "lost")]
    if failed:
        table = "\n".join(
            f"  {j.status:6} {j.comparison.regime} pair={j.comparison.pair} seed_pair={j.comparison.seed_pair} "
            f"layer={j.comparison.layer}{layer_b_text(j.comparison)}{' ' + j.settings if j.settings else ''}: {j.error}"
            for j in failed
        )
        raise SweepError(
            f"{len(failed)} of {len(jobs)} jobs did not finish (see {manifests}; a failed job's folder holds "
            f"{ERROR_FILE} when it was launched; running the sweep again retries only these):\n{table}"
        )
    return []  # each job's record is its run folder and jobs.csv; keeping every JobReturn costs 1 MB a job


