"""hydra-joblib-launcher, handing each worker its jobs in chunks (`hydra/launcher=workers`)."""
# No `from __future__ import annotations` here: it breaks the plugin discovery of Hydra 1.3.8.
import os
from dataclasses import dataclass
from typing import Any, Iterator, List, Optional, Sequence, Tuple

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn
from hydra_plugins.hydra_joblib_launcher.config import JobLibLauncherConf
from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher
from omegaconf import OmegaConf

from ._launch import in_order


class WorkersLauncher(JoblibLauncher):
    """The joblib launcher with one joblib task per chunk of jobs instead of per job: a task
    ships Hydra's whole state to the worker, and a worker composes jobs faster in a row. A worker
    computes its chunk's comparisons ahead, together (cka_hydra.lifecycle.compute_ahead)."""

    computes_ahead = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        n_jobs = kwargs.get("n_jobs")
        if not isinstance(n_jobs, int) or n_jobs == 0 or n_jobs < -os.cpu_count():  # type: ignore[operator]
            # SystemExit: Hydra would wrap any other exception in three lines
            raise SystemExit(f"Error: hydra.launcher.n_jobs={n_jobs}: expected a number of workers, 1 or more "
                             "(or -1 for one per core)")

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        return in_order(self.launch_parts(job_overrides, initial_job_idx), len(job_overrides))

    def launch_parts(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int,
                     plans: Optional[Sequence[Any]] = None) -> Iterator[Tuple[List[int], List[JobReturn]]]:
        """Each chunk's jobs (positions in job_overrides) and returns as it ends: the sweeper records
        them. plans: each job's config, inputs and run folder, for its worker to compute ahead."""
        from ._workers import launch_parts

        return launch_parts(self, job_overrides, initial_job_idx, plans or [None] * len(job_overrides))


@dataclass
class WorkersLauncherConf(JobLibLauncherConf):
    _target_: str = "hydra_plugins.cka_hydra_sweeper.workers_launcher.WorkersLauncher"


def workers(most: int) -> int:
    """`${cka_workers:4}`: 4 workers, or one per core on a machine with fewer (more would
    oversubscribe it: each worker imports torch and computes with all the cores it is given)."""
    return min(int(most), os.cpu_count() or 1)


if not OmegaConf.has_resolver("cka_workers"):
    OmegaConf.register_new_resolver("cka_workers", workers)
ConfigStore.instance().store(group="hydra/launcher", name="cka_workers", node=WorkersLauncherConf,
                             provider="cka_hydra")
