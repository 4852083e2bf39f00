"""The workers launcher's work: hydra-joblib-launcher's launch, with the jobs sent in chunks: a
chunk's jobs share instances, which its worker's engine prepares once (cka_hydra.engine)."""
import ctypes
import logging
import math
import os
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Sequence, Tuple

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, setup_globals
from hydra.types import HydraContext, TaskFunction
from hydra_plugins.hydra_joblib_launcher._core import process_joblib_cfg
from joblib import Parallel, delayed, effective_n_jobs
from omegaconf import DictConfig

from cka_hydra.lifecycle import compute_ahead

from ._launch import balanced_pieces, instances, quiet_interrupts, sharing_key
from ._run_job import run_sweep_job

log = logging.getLogger(__name__)


def keep_freed_memory() -> None:
    """Have glibc keep the memory a worker frees for its next allocations: by default it hands
    freed blocks of a few MB back to the system, and a worker that prepares one instance after
    another then spends a tenth of its time faulting fresh pages in. Its peak is unchanged: the
    memory kept is what it used. (Elsewhere than glibc: nothing to do.)"""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # malloc.h
    libc.mallopt(m_mmap_threshold, 32 * 2**20)  # the most glibc takes: larger blocks are mapped, and unmapped
    libc.mallopt(m_trim_threshold, 2**30)


def run_chunk(jobs: List[Tuple[int, Sequence[str], Any]], hydra_context: HydraContext, config: DictConfig,
              task_function: TaskFunction, singleton_state: Dict[Any, Any]
              ) -> Tuple[List[Tuple[int, Sequence[str], Any]], List[JobReturn]]:
    """A chunk's comparisons computed ahead, together (cka_hydra.lifecycle.compute_ahead: each
    instance-step prepared once), then its jobs in turn, each as hydra-joblib-launcher's
    execute_job runs one (through this plugin's run_job: the same files, less copying), in the
    sweep's working directory (relative result paths): loky keeps its workers for the next
    launch in the same process, which may have moved since."""
    os.chdir(config.hydra.runtime.cwd)
    setup_globals()
    keep_freed_memory()
    # a terminal's Ctrl-C reaches the workers too (its process group): the sweep's process stops
    # them and says so, and an idle worker's interrupt must print nothing
    if sys.unraisablehook is sys.__unraisablehook__:  # once per worker process
        sys.unraisablehook = quiet_interrupts(sys.__unraisablehook__)
    compute_ahead([(*plan, idx) for idx, _, plan in jobs if plan is not None])
    returns = []
    for idx, overrides, _ in jobs:
        Singleton.set_state(singleton_state)
        job_return = run_sweep_job(hydra_context, task_function, config, overrides, idx)
        # the job's configs are in its run folder's .hydra/; the sweeper reads the status and value
        job_return.cfg = job_return.hydra_cfg = None
        returns.append(job_return)
    return jobs, returns


def launch_parts(launcher: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int,
                 plans: Sequence[Any]) -> Iterator[Tuple[List[int], List[JobReturn]]]:
    """Yields each chunk's jobs (their positions in job_overrides) and returns as the chunk ends;
    plans: each job's for compute_ahead, or None."""
    setup_globals()
    configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)
    Path(str(launcher.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
    joblib_cfg = dict(launcher.joblib, backend="loky")  # the plugin's choice: threads are incompatible with Hydra
    process_joblib_cfg(joblib_cfg)
    jobs = [(initial_job_idx + i, overrides, plan) for i, (overrides, plan) in enumerate(zip(job_overrides, plans))]
    workers = effective_n_jobs(joblib_cfg["n_jobs"])
    # a chunk per run of jobs that share instances, split so that every worker gets one, with as
    # much work as the others
    chunks = balanced_pieces(jobs, max(1, math.ceil(len(jobs) / workers)), lambda job: sharing_key(job[1]),
                             lambda job: instances(job[2][0].comparison) if job[2] else ((job[0],), (job[0],)))
    log.info("launching %d jobs on %d workers in %d chunks", len(jobs), workers, len(chunks))
    state = Singleton.get_state()
    for chunk, returns in Parallel(**joblib_cfg, return_as="generator_unordered")(
            delayed(run_chunk)(chunk, launcher.hydra_context, launcher.config, launcher.task_function, state)
            for chunk in chunks):
        yield [idx - initial_job_idx for idx, _, _ in chunk], returns
