"""hydra-submitit-launcher with several comparisons per array task (`hydra/launcher=slurm`).

A cluster charges for every scheduled task, and a comparison takes seconds: each array task
runs `jobs_per_task` jobs one after another, each through the plugin's own per-job call (and
so through Hydra's run_job), so that each still gets its own run folder, `.hydra/` and log.
Imported only where the optional extra is installed (pip install "cka-hydra[slurm]").
"""
# No `from __future__ import annotations` here: it breaks Hydra's plugin discovery (hydra-notes).
import logging
from dataclasses import dataclass
from typing import Any, List, Sequence, Tuple

from hydra.core.config_store import ConfigStore
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf, LocalQueueConf, SlurmQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import BaseSubmititLauncher
from omegaconf import OmegaConf

from ._core import pack, sharing_key

log = logging.getLogger(__name__)

JobArgs = Tuple[List[str], str, int, str, Any]  # the arguments of BaseSubmititLauncher.__call__


class ArrayTask:
    """What one array task runs: its jobs in turn. A job that raises is a failed JobReturn (run_job
    catches it) and the next job runs; a task killed by the scheduler loses the jobs it had left."""

    def __init__(self, launcher: BaseSubmititLauncher) -> None:
        self.launcher = launcher

    def __call__(self, jobs: List[JobArgs]) -> List[JobReturn]:
        try:
            return [self.launcher(*job) for job in jobs]
        except KeyboardInterrupt:  # Ctrl-C in the terminal reaches local tasks too: end without a traceback
            raise SystemExit(130) from None

    def checkpoint(self, jobs: List[JobArgs]) -> Any:
        """On preemption, submitit requeues the task; its finished jobs are skipped when it reruns."""
        import submitit

        return submitit.helpers.DelayedSubmission(self, jobs)


class ChunkedSubmititLauncher(BaseSubmititLauncher):
    # each array task's failure is reported alone (as lost jobs), so the sweeper may hand over every job at once
    array_tasks_fail_alone = True

    def __init__(self, jobs_per_task: int, **params: Any) -> None:
        super().__init__(**params)
        if jobs_per_task < 1:  # SystemExit: Hydra would wrap any other exception in three lines
            raise SystemExit(f"Error: hydra.launcher.jobs_per_task={jobs_per_task}: expected 1 or more")
        self.jobs_per_task = jobs_per_task

    def _executor(self) -> Any:
        """The executor, set up as the plugin's own launch() sets it up."""
        import submitit

        params = dict(self.params)
        init = {"folder": params.pop("submitit_folder")}
        if "max_num_timeout" in params:
            init[f"{self._EXECUTOR}_max_num_timeout"] = params.pop("max_num_timeout")
        executor = submitit.AutoExecutor(cluster=self._EXECUTOR, **init)
        shared = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{k if k in shared else f"{self._EXECUTOR}_{k}": v for k, v in params.items()})
        return executor

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        assert self.config is not None
        state = Singleton.get_state()
        jobs = [(list(overrides), "hydra.sweep.dir", initial_job_idx + i, f"job_id_for_{initial_job_idx + i}", state)
                for i, overrides in enumerate(job_overrides)]
        chunks = pack(jobs, self.jobs_per_task, lambda job: sharing_key(job[0]))  # a task's jobs share instances
        tasks = self._executor().map_array(ArrayTask(self), chunks)
        if self._EXECUTOR == "local":
            for task in tasks:  # this machine's files: submitit's 15 s wait for a slow shared filesystem
                task._results_timeout_s = 0  # only delays the report of a task that died (as its own tests do)
        log.info("submitted %d jobs as %d array task(s) of up to %d jobs (%s job %s)", len(jobs), len(tasks),
                 max(map(len, chunks)), self._EXECUTOR, tasks[0].job_id.split("_")[0])
        returns: List[JobReturn] = []
        try:
            for number, (task, chunk) in enumerate(zip(tasks, chunks), 1):
                try:
                    returns += task.results()[0]
                except Exception as err:  # timed out, preempted past max_num_timeout, killed: its jobs are lost
                    reason = f"array task {task.job_id} ended without a result ({type(err).__name__})"
                    returns += [JobReturn(status=JobStatus.UNKNOWN, _return_value=reason) for _ in chunk]
                log.info("array task %d/%d ended (%d of %d jobs)", number, len(tasks), len(returns), len(jobs))
        except KeyboardInterrupt:
            waiting = [task for task in tasks if not task.done()]
            if self._EXECUTOR == "local":  # this machine's own processes: end them with the sweep
                for task in waiting:
                    task.cancel(check=False)
                log.error("interrupted: cancelled %d array task(s) still running", len(waiting))
            else:
                log.error("interrupted: %d array task(s) are still queued or running; cancel them with: scancel %s "
                          "(running the sweep again skips every job they finish)", len(waiting),
                          " ".join(task.job_id for task in waiting))
            raise
        return returns


class ChunkedSlurmLauncher(ChunkedSubmititLauncher):
    _EXECUTOR = "slurm"


class ChunkedLocalLauncher(ChunkedSubmititLauncher):
    _EXECUTOR = "local"


@dataclass
class ChunkedSlurmConf(SlurmQueueConf):
    _target_: str = "hydra_plugins.cka_hydra_sweeper._chunked.ChunkedSlurmLauncher"
    # comparisons that one array task runs in turn
    jobs_per_task: int = 8


@dataclass
class ChunkedLocalConf(LocalQueueConf):
    _target_: str = "hydra_plugins.cka_hydra_sweeper._chunked.ChunkedLocalLauncher"
    jobs_per_task: int = 8


ConfigStore.instance().store(group="hydra/launcher", name="cka_submitit_slurm", node=ChunkedSlurmConf,
                             provider="cka_hydra")
ConfigStore.instance().store(group="hydra/launcher", name="cka_submitit_local", node=ChunkedLocalConf,
                             provider="cka_hydra")
