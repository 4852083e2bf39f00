"""Launching: jobs in batches that keep the jobs sharing instances together, each recorded as its
part of the launch ends; Ctrl-C and SIGTERM end a sweep alike."""

import itertools
import logging
import math
import signal
import sys
import time
from collections import defaultdict
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from hydra.core.utils import JobReturn, configure_log

from cka_hydra.pairs import Comparison

from ._jobs import Job, log_progress, record, settle, write_jobs

log = logging.getLogger(__name__)


# jobs a launch takes at most: the study's 252 in one, so that its workers' chunks follow its groups
DEFAULT_BATCH_SIZE = 256


def launch_all(sweeper: Any, jobs: List[Job], todo: List[Job], received: List[int], started: float,
                progress: bool = True) -> None:
    """Launch the jobs of todo in batches, recording each in jobs.csv as its part ends (a worker's
    chunk, an array task); with progress, a console line as each part ends."""
    start = time.perf_counter()
    first = 0
    todo = trail(todo)
    for batch in pack(todo, _batch_size(sweeper, todo), lambda job: sharing_key(job.overrides)):
        for job in batch:
            job.status = "running"
        try:
            with closing(_launch(sweeper, batch, first)) as parts:  # closed on an interrupt: the launcher cancels
                for positions, results in parts:
                    # a job run in this process (basic launcher, one joblib worker) set logging up for its folder
                    configure_log(sweeper.config.hydra.hydra_logging, sweeper.config.hydra.verbose)
                    part = [batch[p] for p in positions]
                    for job, result in zip(part, results):
                        record(job, result, started)
                    write_jobs(part)
                    if received:
                        raise KeyboardInterrupt
                    if progress and any(job.status == "running" for job in batch):  # the batch's other parts run
                        log_progress(jobs, first + sum(job.status != "running" for job in batch), len(todo),
                                      time.perf_counter() - start)
        except Exception as err:  # a worker died hard: only this batch's jobs without a record are lost
            log.error("the launcher failed (%s: %s): its batch's jobs without a result are lost",
                      type(err).__name__, err)
            unrecorded = [job for job in batch if job.status == "running"]
            settle(unrecorded, f"launcher failed: {type(err).__name__}: {(str(err).splitlines() or [''])[0]}",
                    started)
            write_jobs(unrecorded)
        finally:
            configure_log(sweeper.config.hydra.hydra_logging, sweeper.config.hydra.verbose)
        first += len(batch)
        if progress:
            log_progress(jobs, first, len(todo), time.perf_counter() - start)
    if progress and not todo:
        log_progress(jobs, 0, 0, 0.0)


def _launch(sweeper: Any, batch: List[Job], first: int) -> Iterator[Tuple[Sequence[int], List[JobReturn]]]:
    """The batch's returns, with their jobs' positions in it: part by part as they end with this
    project's launchers (launch_parts; the workers launcher's also hands each worker its jobs'
    checked configs and inputs, to compute their comparisons ahead, together), else all at once."""
    launcher, overrides = sweeper.launcher, [job.overrides for job in batch]
    if getattr(launcher, "computes_ahead", False):
        yield from launcher.launch_parts(overrides, first, [ahead_plan(job) for job in batch])
    elif hasattr(launcher, "launch_parts"):
        yield from launcher.launch_parts(overrides, first)
    else:
        yield range(len(batch)), launcher.launch(overrides, initial_job_idx=first)


def ahead_plan(job: Job) -> Optional[Tuple[Any, Any, Path]]:
    """What a worker needs to compute a job's comparison ahead (cka_hydra.lifecycle.compute_ahead):
    its config, its inputs as checked before launch, its run folder; None for a job that only
    draws its figure."""
    return None if job.inputs is None or job.draw_only else (job.run, job.inputs, job.run_dir)


@contextmanager
def interruptible() -> Iterator[List[int]]:
    """Ctrl-C and SIGTERM (a scheduler's, or kill's) end the sweep alike: KeyboardInterrupt, so the
    launcher stops its workers and jobs.csv records what finished. (By default SIGTERM would end
    this process alone, leaving the workers running and jobs.csv unwritten.) Yields the signals
    received: an interrupt that lands in a garbage collector's callback is lost there, so the
    sweep also checks this list between batches."""
    received: List[int] = []

    def interrupt(signum: int, frame: Any) -> None:
        received.append(signum)
        raise KeyboardInterrupt

    previous = {signum: signal.signal(signum, interrupt) for signum in (signal.SIGINT, signal.SIGTERM)}
    default_hook, sys.unraisablehook = sys.unraisablehook, quiet_interrupts(sys.unraisablehook)
    try:
        yield received
    finally:
        sys.unraisablehook = default_hook
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def quiet_interrupts(hook: Any) -> Any:
    """sys.unraisablehook as hook, but silent for a KeyboardInterrupt: one that lands in a garbage
    collector's callback is lost there, and would print a traceback."""
    def unraisable(info: Any) -> None:
        if not issubclass(info.exc_type, KeyboardInterrupt):
            hook(info)

    return unraisable


def sharing_key(overrides: List[str]) -> Tuple[str, ...]:
    """What the jobs that read the same instances share: every override but the pair's, the seed
    pair's and the measure's (regime, layer, layer_b and the other settings). The measures of one
    comparison go out together: their instances' rows are read once for all of them."""
    return tuple(o for o in overrides if not o.startswith(("pair=", "seed_pair=", "measure=", "measure.")))


def trail(jobs: List[Job]) -> List[Job]:
    """The jobs in launch order: those of one sharing_key together (in the order of their first
    job), and within them each job sharing an instance with one just before it wherever one does,
    the newest first. A worker's chunk is a piece of such a trail: it meets few instances, each
    prepared once for all its jobs (cka_hydra.engine.compute_ahead). Where jobs run one at a time
    (an array task, the basic launcher), the engine's cache (least recently used going first at
    its limit) still holds the instances the next job shares with the last ones."""
    groups: Dict[Tuple[str, ...], List[Job]] = defaultdict(list)
    for job in jobs:
        groups[sharing_key(job.overrides)].append(job)
    return [job for group in groups.values() for job in _trail(group)]


RECENT = 4  # the instances a trail looks back to: the last two jobs' (a timeline's two take 640 MB of the cache)


def _trail(jobs: List[Job]) -> List[Job]:
    sides = [instances(job.comparison) for job in jobs]
    by_instance: Dict[Tuple, List[int]] = defaultdict(list)  # each instance's jobs, in order
    for position, pair in enumerate(sides):
        for instance in pair:
            by_instance[instance].append(position)
    done = [False] * len(jobs)
    recent: List[Tuple] = []  # the instances met, the newest last
    order: List[Job] = []
    first_undone = 0
    while len(order) < len(jobs):
        position = next((p for instance in reversed(recent[-RECENT:]) for p in by_instance[instance] if not done[p]),
                        None)
        if position is None:  # nothing shares an instance with the last jobs: the next in the plan's order
            while done[first_undone]:
                first_undone += 1
            position = first_undone
        done[position] = True
        order.append(jobs[position])
        # the instance met before first, then the new one: the trail goes on from the new one
        for instance in sorted(sides[position], key=lambda instance: instance not in recent):
            if instance in recent:
                recent.remove(instance)
            recent.append(instance)
        del recent[:-RECENT]
    return order


def instances(comparison: Comparison) -> Tuple[Tuple, Tuple]:
    """The two instances a comparison reads, each as (model, seed, layer)."""
    return ((comparison.a, comparison.seed_a, comparison.layer), (comparison.b, comparison.seed_b, comparison.layer_b))


def pieces(items: List[Any], size: int, key: Any) -> List[List[Any]]:
    """Consecutive items of one key in pieces of at most size, each run of a key split evenly."""
    result = []
    for _, run in itertools.groupby(items, key):
        group = list(run)
        step = math.ceil(len(group) / math.ceil(len(group) / size))
        result += [group[i:i + step] for i in range(0, len(group), step)]
    return result


# the work of a prepared instance (reading it, centring it, its self-term) in cross terms
INSTANCE_COST = 2


def balanced_pieces(items: List[Any], size: int, key: Any, sides: Any) -> List[List[Any]]:
    """As many pieces as pieces() makes, each run of a key cut where the pieces' work is even
    rather than their number of items: an item (a job; sides(item), its two instances) costs its
    cross term, and each instance new to its piece INSTANCE_COST more (a worker prepares it once
    for all its jobs). The cuts: the least work per piece that cuts the run into that many."""
    result = []
    for _, run in itertools.groupby(items, key):
        group = list(run)
        count = math.ceil(len(group) / size)
        low, high = 1, len(group) * (1 + 2 * INSTANCE_COST)  # a piece's work: too little, enough
        while low < high:
            middle = (low + high) // 2
            if len(_cut(group, middle, sides)) <= count:
                high = middle
            else:
                low = middle + 1
        result += _cut(group, high, sides)
    return result


def _cut(group: List[Any], most: int, sides: Any) -> List[List[Any]]:
    """The group in pieces of at most `most` work each (at least one item each), cut in turn."""
    pieces_: List[List[Any]] = [[]]
    seen: set = set()
    for item in group:
        new = set(sides(item)) - seen
        if pieces_[-1] and len(pieces_[-1]) + 1 + INSTANCE_COST * (len(seen) + len(new)) > most:
            pieces_.append([])
            seen, new = set(), set(sides(item))
        pieces_[-1].append(item)
        seen |= new
    return pieces_


def pack(items: List[Any], size: int, key: Any) -> List[List[Any]]:
    """Items in batches of at most size, each holding whole runs of a key where they fit (pieces
    of a run longer than size otherwise): a batch's jobs share instances."""
    batches: List[List[Any]] = []
    for piece in pieces(items, size, key):
        if batches and len(batches[-1]) + len(piece) <= size:
            batches[-1] += piece
        else:
            batches.append(list(piece))
    return batches


def in_order(parts: Iterator[Tuple[List[int], List[JobReturn]]], n_jobs: int) -> List[JobReturn]:
    """A launch's returns in its jobs' order, from its parts as they ended (launch_parts)."""
    returns: List[Any] = [None] * n_jobs
    for positions, part in parts:
        for position, job_return in zip(positions, part):
            returns[position] = job_return
    return returns


def _batch_size(sweeper: Any, todo: List[Job]) -> int:
    """hydra.sweeper.batch_size, else 256 comparisons with all their measures (a sweep of six
    measures launches the study at once: each batch ends waiting on its slowest worker): when
    one worker dies, joblib (or the plugin's submitit launchers) lose the whole launch() call.
    A launcher whose array tasks fail alone takes every job at once, since the sweeper waits
    for each call to finish before the next."""
    if sweeper.batch_size is not None:
        return sweeper.batch_size
    if getattr(sweeper.launcher, "array_tasks_fail_alone", False):
        return max(1, len(todo))
    measures = {o for job in todo for o in job.overrides if o.startswith("measure=")}
    return DEFAULT_BATCH_SIZE * max(1, len(measures))
