"""hydra-submitit-launcher with several comparisons per array task (`hydra/launcher=slurm`).

A cluster charges for every scheduled task, and a comparison takes seconds: each array task
runs `jobs_per_task` jobs one after another, each as the plugin's own per-job call runs it (through
this plugin's run_job: _run_job.py), so that each still gets its own run folder, `.hydra/` and log.
Imported only where the optional extra is installed (pip install "cka-hydra[slurm]").
"""
# No `from __future__ import annotations` here: it breaks the plugin discovery of Hydra 1.3.8.
import os
import signal

# An array task imports this module while submitit loads its pickle, before submitit sets its own
# handler for the warning signal (SIGUSR2, signal_delay_s before the time limit: at once where the
# limit is shorter). Arriving then, the signal would end the task as FAILED and lose its jobs
# without the scheduler's reason; from here on it is held, and ArrayTask hands it on. (Only where
# no handler is set yet: a sweep that itself runs as a submitit job keeps submitit's.)
EARLY_WARNINGS: list = []
if os.environ.get("SUBMITIT_FOLDER") and signal.getsignal(signal.SIGUSR2) is signal.SIG_DFL:
    signal.signal(signal.SIGUSR2, lambda signum, frame: EARLY_WARNINGS.append((signum, frame)))

import logging
import math
import subprocess
import time
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Sequence, Tuple

from hydra.core.config_store import ConfigStore
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, setup_globals
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf, LocalQueueConf, SlurmQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import BaseSubmititLauncher
from omegaconf import OmegaConf

from ._launch import in_order, pack, sharing_key
from ._run_job import run_sweep_job

log = logging.getLogger(__name__)

JobArgs = Tuple[List[str], str, int, str, Any]  # the arguments of BaseSubmititLauncher.__call__
# how often the scheduler is asked about an array (one sacct call for all its tasks): a task it
# ended without a result (cancelled, past its time limit, its node lost) is noticed within this
# plus RESULT_GRACE_S. (submitit's own wait asks at ever longer intervals, up to 10 minutes, and
# waits 15 s for each such task in turn.)
STATE_POLL_S = 5
RESULT_GRACE_S = 10


class ArrayTask:
    """What one array task runs: its jobs in turn. A job that raises is a failed JobReturn (run_job
    catches it) and the next job runs; a task killed by the scheduler loses the jobs it had left.

    submitit's warning signal (SIGUSR2, `signal_delay_s` before the time limit, or on preemption)
    would raise inside whichever comparison runs, failing it in the measure's name: it is held
    until that comparison ends. Then submitit's own handler requeues the task where it can
    (max_num_timeout, preemption: its finished jobs are skipped when it reruns); where it cannot,
    the task runs on, and the scheduler ends it at its limit (its jobs without a result are lost,
    TIMEOUT)."""

    def __init__(self, launcher: BaseSubmititLauncher) -> None:
        self.launcher = launcher

    def __call__(self, jobs: List[JobArgs]) -> List[JobReturn]:
        from submitit import JobEnvironment
        from submitit.core.utils import UncompletedJobError

        from ._workers import keep_freed_memory

        warning = JobEnvironment._usr_sig()
        handler = signal.getsignal(warning)
        held = [*EARLY_WARNINGS] if warning == signal.SIGUSR2 else []  # come while the task was loading
        EARLY_WARNINGS.clear()
        signal.signal(warning, lambda signum, frame: held.append((signum, frame)))
        returns = []
        try:
            keep_freed_memory()
            for job in jobs:
                returns.append(self.launcher(*job))
                if held and callable(handler):
                    try:
                        handler(*held.pop())
                    except UncompletedJobError:  # no requeue left: run on until the scheduler's limit
                        pass
        except KeyboardInterrupt:  # Ctrl-C in the terminal reaches local tasks too: end without a traceback
            raise SystemExit(130) from None
        finally:
            if handler is not None:  # None: not set from Python
                signal.signal(warning, handler)
        return returns

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

    def __call__(self, sweep_overrides: List[str], job_dir_key: str, job_num: int, job_id: str,
                 singleton_state: Dict[type, Singleton]) -> JobReturn:
        """One job, as the plugin's own __call__ runs it, through this plugin's run_job (the same
        files, less copying)."""
        import submitit

        Singleton.set_state(singleton_state)
        setup_globals()
        return run_sweep_job(self.hydra_context, self.task_function, self.config, sweep_overrides, job_num,
                             submitit.JobEnvironment().job_id, job_dir_key)

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
        return in_order(self.launch_parts(job_overrides, initial_job_idx), len(job_overrides))

    def launch_parts(self, job_overrides: Sequence[Sequence[str]],
                     initial_job_idx: int) -> Iterator[Tuple[List[int], List[JobReturn]]]:
        """Submits the jobs as one array and yields each array task's jobs (their positions in
        job_overrides) and returns as the task ends, in the order they end. A task runs its jobs
        in turn, each computed on its own (not ahead, together, as the workers launcher's are):
        the scheduler may end a task at its time limit, and the jobs it finished by then count."""
        assert self.config is not None
        state = Singleton.get_state()
        jobs = [(list(overrides), "hydra.sweep.dir", initial_job_idx + i, f"job_id_for_{initial_job_idx + i}", state)
                for i, overrides in enumerate(job_overrides)]
        chunks = pack(list(range(len(jobs))), self.jobs_per_task,
                      lambda i: sharing_key(jobs[i][0]))  # a task's jobs share instances
        tasks = self._executor().map_array(ArrayTask(self), [[jobs[i] for i in chunk] for chunk in chunks])
        log.info("submitted %d jobs as %d array task(s) of up to %d jobs (%s job %s)", len(jobs), len(tasks),
                 max(map(len, chunks)), self._EXECUTOR, tasks[0].job_id.split("_")[0])
        waiting = dict(enumerate(tasks))
        try:
            for number, outcome in self._ended(waiting):
                lost = [JobReturn(status=JobStatus.UNKNOWN, _return_value=outcome) for _ in chunks[number]]
                yield chunks[number], lost if isinstance(outcome, str) else outcome
        except (KeyboardInterrupt, GeneratorExit):  # Ctrl-C or SIGTERM, or the sweeper stopped listening
            self._cancel(list(waiting.values()))
            raise

    def _ended(self, waiting: Dict[int, Any]) -> Iterator[Tuple[int, Any]]:
        """Each task's returns as it ends, or why it has none, removing it from waiting. The
        scheduler is asked about all of them at once every STATE_POLL_S; a task it reports ended
        without a result file gets RESULT_GRACE_S for the file to appear (a shared filesystem's
        delay), all such waits running side by side, before its jobs are lost with the
        scheduler's reason."""
        grace = RESULT_GRACE_S if self._EXECUTOR == "slurm" else 0
        ended_at: Dict[int, float] = {}
        polled = -math.inf
        while waiting:
            now = time.monotonic()
            if self._EXECUTOR == "slurm" and now - polled >= STATE_POLL_S:
                next(iter(waiting.values())).watcher.update()  # one sacct call for the whole array
                polled = now
            for number, task in list(waiting.items()):
                if task.paths.result_pickle.exists():
                    yield number, self._returns(task)
                elif task.done() and now - ended_at.setdefault(number, now) >= grace:
                    yield number, f"array task {task.job_id} ended without a result ({task.state})"
                else:
                    continue
                del waiting[number]
            time.sleep(0.2)

    @staticmethod
    def _returns(task: Any) -> Any:
        try:
            return task.results()[0]
        except Exception as err:  # the task itself raised (preempted past max_num_timeout, say): its jobs are lost
            return (f"array task {task.job_id} ended without a result "
                    f"({type(err).__name__}: {(str(err).splitlines() or [''])[0]})")

    def _cancel(self, waiting: List[Any]) -> None:
        """Ctrl-C or SIGTERM while the array runs: its tasks still queued or running are cancelled
        (their finished jobs count; a re-run runs the rest)."""
        ids = [task.job_id for task in waiting]
        if not ids:
            return
        if self._EXECUTOR == "local":  # this machine's own processes
            for task in waiting:
                task.cancel(check=False)
        elif subprocess.run(["scancel", *ids], capture_output=True).returncode != 0 or not self._gone(ids):
            log.error("interrupted: %d array task(s) may still be queued or running; cancel them with: scancel %s "
                      "(running the sweep again skips every job they finish)", len(ids), " ".join(ids))
            return
        log.error("interrupted: cancelled %d array task(s) still queued or running (%s)", len(ids), " ".join(ids))

    @staticmethod
    def _gone(ids: List[str], wait_s: float = 30) -> bool:
        """Whether squeue lists none of the tasks within wait_s (a cancelled task is listed while it ends)."""
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            listed = subprocess.run(["squeue", "-h", "-o", "%i", "-j", ",".join(ids)], capture_output=True, text=True)
            # a job the controller has already forgotten (past MinJobAge) is an invalid id
            if listed.returncode == 0 and not listed.stdout.split() or "Invalid job id" in listed.stderr:
                return True
            time.sleep(0.5)
        return False


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
