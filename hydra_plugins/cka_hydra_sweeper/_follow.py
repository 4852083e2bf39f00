"""Following a store while training writes it (`hydra.sweeper.follow=SECONDS`): after the sweep,
a round every SECONDS extends each timeline whose instances gained checkpoints, and runs the
comparisons whose instances appeared.

A round uses a checkpoint once it is settled: both its files written (store.checkpoint_folders)
and of the same size and modification time as at the poll before. Each job is pinned to the
newest step it may use (`until_step`, a setting that never changes a result), so that a
checkpoint folder written while the job runs waits for the next round.
"""

import dataclasses
import logging
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

from cka_hydra import lifecycle, run_folder
from cka_hydra.errors import InputError
from cka_hydra.inputs import sides
from cka_hydra.store import checkpoint_folders, file_stamps

from ._jobs import Job

log = logging.getLogger(__name__)

Stamp = Dict[str, List[int]]  # a checkpoint's files' sizes and modification times (store.file_stamps)
Scan = Dict[Path, Tuple[Dict[int, Stamp], List[int]]]  # a side's complete checkpoints, and those being written


def refuse_cluster(sweeper: Any) -> None:
    """Following is a loop on this machine, polling its store: not for array launchers."""
    if any(cls.__name__ == "BaseSubmititLauncher" for cls in type(sweeper.launcher).__mro__):
        raise SystemExit(f"Error: hydra.sweeper.follow={sweeper.follow:g}: following polls the store from this "
                         "machine in a loop, with its own workers: use it with hydra/launcher=workers (the default), "
                         "not a cluster launcher")


def follow(sweeper: Any, jobs: List[Job], launch: Callable[[List[Job]], None], received: List[int]) -> None:
    """Rounds until follow_idle seconds pass without a new checkpoint, or Ctrl-C or SIGTERM
    between rounds (one during a round ends it as it ends a sweep)."""
    log.info("following the store: a round every %g s, until Ctrl-C or %g s without a new checkpoint",
             sweeper.follow, sweeper.follow_idle)
    previous = _scan(jobs)
    last_new, number = time.monotonic(), 0
    while True:
        try:
            time.sleep(sweeper.follow)
            scan = _scan(jobs)
            due, waiting = _due(jobs, scan, previous)
        except KeyboardInterrupt:
            log.info("following stopped by %s after round %d; jobs.csv holds every job's state", _name(received),
                     number)
            return
        number += 1
        if scan != previous:
            last_new = time.monotonic()
        previous = scan
        launch(due)
        log.info("round %d: %s", number, _round_line(due, waiting))
        if time.monotonic() - last_new >= sweeper.follow_idle:
            log.info("following ended: no new checkpoint for %g s (hydra.sweeper.follow_idle)", sweeper.follow_idle)
            return


def _name(received: List[int]) -> str:
    return signal.Signals(received[-1]).name if received else "SIGINT"


def _scan(jobs: List[Job]) -> Scan:
    """Every side's checkpoints now, with their files' stamps."""
    scan: Scan = {}
    for job in jobs:
        for folder in _side_dirs(job):
            if folder not in scan:
                scan[folder] = _stamped(folder)
    return scan


def _side_dirs(job: Job) -> List[Path]:
    try:
        a, b = sides(job.run, lifecycle.store_root(job.run.data, job.results_dir, write_demo=False))
    except InputError:  # the job's settings fail it whatever the store holds
        return []
    return [a.representations_dir, b.representations_dir]


def _stamped(folder: Path) -> Tuple[Dict[int, Stamp], List[int]]:
    try:
        complete, writing = checkpoint_folders(folder)
    except InputError:  # not there yet: its instance may still appear
        return {}, []
    stamps: Dict[int, Stamp] = {}
    for step, checkpoint in complete.items():
        try:
            stamps[step] = file_stamps(folder, [checkpoint])
        except InputError:  # removed since the listing: being rewritten
            writing.append(step)
    return stamps, writing


def _due(jobs: List[Job], scan: Scan, previous: Scan) -> Tuple[List[Job], int]:
    """The jobs to run this round, each pinned to its newest settled step; and how many jobs wait
    for a checkpoint that both their sides hold, or are writing, to settle (a job waits whole
    while a step it holds, or would use, is rewritten)."""
    due, waiting = [], 0
    for job in jobs:
        folders = _side_dirs(job)
        if not folders:
            continue
        settled, present = [], []  # per side: the steps the same as at the previous poll; every step there
        for folder in folders:
            stamps, writing = scan[folder]
            before = previous.get(folder, ({}, []))[0]
            settled.append({step for step, stamp in stamps.items() if before.get(step) == stamp})
            present.append(set(stamps) | set(writing))
        usable = settled[0] & settled[1]
        step = max(usable, default=-1)
        unsettled = (present[0] & present[1]) - usable
        if unsettled:
            waiting += 1
            held = max(job.inputs.steps) if job.inputs is not None else -1
            if min(unsettled) < max(step, held + 1):  # a step it would use, or holds, is being rewritten
                continue
        if step < 0:
            continue
        run = dataclasses.replace(job.run, until_step=step)
        try:
            inputs = lifecycle.check_job(run, job.run_dir, lifecycle.store_root(run.data, job.results_dir,
                                                                              write_demo=False))
        except InputError:  # e.g. a list of steps that the sides do not hold yet
            continue
        if lifecycle.is_finished(job.run_dir, inputs.settings, inputs.record) or (
                job.status == "failed" and job.inputs is not None and job.inputs.record == inputs.record):
            continue  # nothing new; or it failed on these very inputs (a re-run of the sweep retries it)
        job.run, job.inputs, job.status, job.error, job.seconds = run, inputs, "pending", "", None
        job.overrides = [o for o in job.overrides if not o.startswith("until_step=")] + [f"until_step={step}"]
        due.append(job)
    return due, waiting


def _round_line(due: List[Job], waiting: int) -> str:
    """`12 timelines extended by 1 step, 0 computed, 0 failed` (the steps each extended result's
    summary says were computed), and the jobs that wait."""
    wait = f"{waiting} waiting for a checkpoint to settle" if waiting else ""
    if not due:
        return wait or "nothing new"
    counts = Counter(job.status for job in due)
    steps = sorted({len((run_folder.read_result(job.run_dir) or {}).get("computed_steps", []))
                    for job in due if job.status == "extended"})
    by = ("" if not steps else f" by {steps[0]} step{'s' if steps[0] != 1 else ''}" if len(steps) == 1
          else f" by {steps[0]}-{steps[-1]} steps")
    return ", ".join([f"{counts['extended']} timelines extended{by}", f"{counts['done']} computed",
                      f"{counts['failed'] + counts['lost']} failed"] + ([wait] if wait else []))
