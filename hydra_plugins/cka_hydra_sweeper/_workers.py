"""The workers launcher's work: hydra-joblib-launcher's launch, with the jobs sent in chunks: a
chunk's jobs share instances, which its worker's engine prepares once (cka_hydra.engine)."""
import logging
import math
import os
from pathlib import Path
from typing import Any, Dict, Iterator, List, Sequence, Tuple

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, setup_globals
from hydra.types import HydraContext, TaskFunction
from hydra_plugins.hydra_joblib_launcher._core import process_joblib_cfg
from joblib import Parallel, delayed, effective_n_jobs
from omegaconf import DictConfig, open_dict

from ._launch import pieces, sharing_key
from ._run_job import run_job

log = logging.getLogger(__name__)


def run_chunk(jobs: List[Tuple[int, Sequence[str]]], hydra_context: HydraContext, config: DictConfig,
              task_function: TaskFunction, singleton_state: Dict[Any, Any]
              ) -> Tuple[List[Tuple[int, Sequence[str]]], List[JobReturn]]:
    """A chunk's jobs in turn, each as hydra-joblib-launcher's execute_job runs one (through this
    plugin's run_job: the same files, less copying), in the sweep's working directory (relative
    result paths): loky keeps its workers for the next launch in the same process, which may
    have moved since."""
    os.chdir(config.hydra.runtime.cwd)
    setup_globals()
    returns = []
    for idx, overrides in jobs:
        Singleton.set_state(singleton_state)
        sweep_config = hydra_context.config_loader.load_sweep_config(config, list(overrides))
        with open_dict(sweep_config):
            sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{idx}"
            sweep_config.hydra.job.num = idx
        job_return = run_job(hydra_context, task_function, sweep_config)
        # the job's configs are in its run folder's .hydra/; the sweeper reads the status and value
        job_return.cfg = job_return.hydra_cfg = None
        returns.append(job_return)
    return jobs, returns


def launch_parts(launcher: Any, job_overrides: Sequence[Sequence[str]],
                 initial_job_idx: int) -> Iterator[Tuple[List[int], List[JobReturn]]]:
    """Yields each chunk's jobs (their positions in job_overrides) and returns as the chunk ends."""
    setup_globals()
    configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)
    Path(str(launcher.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
    joblib_cfg = dict(launcher.joblib, backend="loky")  # the plugin's choice: threads are incompatible with Hydra
    process_joblib_cfg(joblib_cfg)
    jobs = [(initial_job_idx + i, overrides) for i, overrides in enumerate(job_overrides)]
    workers = effective_n_jobs(joblib_cfg["n_jobs"])
    # a chunk per run of jobs that share instances, split so that every worker gets one
    chunks = pieces(jobs, max(1, math.ceil(len(jobs) / workers)), lambda job: sharing_key(job[1]))
    log.info("launching %d jobs on %d workers in %d chunks", len(jobs), workers, len(chunks))
    state = Singleton.get_state()
    for chunk, returns in Parallel(**joblib_cfg, return_as="generator_unordered")(
            delayed(run_chunk)(chunk, launcher.hydra_context, launcher.config, launcher.task_function, state)
            for chunk in chunks):
        yield [idx - initial_job_idx for idx, _ in chunk], returns
