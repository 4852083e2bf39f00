from typing import Any, Dict, List, Optional

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from cka_hydra.pairs import SeedPolicy


class CKASweeper(Sweeper):
    """Plans the valid comparisons from the regime data and launches them in bounded batches."""

    def __init__(
        self, params: Optional[Dict[str, str]], seed_policy: SeedPolicy, self_pairs: bool,
        batch_size: Optional[int], dry_run: bool, follow: Optional[float], follow_idle: float,
    ) -> None:
        # SystemExit: Hydra would wrap any other exception
        if batch_size is not None and batch_size < 1:
            raise SystemExit(f"Error: hydra.sweeper.batch_size={batch_size}: expected 1 or more, or null "
                             "(256, or the whole sweep for array launchers)")
        if follow is not None and not follow > 0:
            raise SystemExit(f"Error: hydra.sweeper.follow={follow:g}: expected seconds between polls of the store, "
                             "more than 0 (or null: end with the sweep)")
        if not follow_idle > 0:
            raise SystemExit(f"Error: hydra.sweeper.follow_idle={follow_idle:g}: expected the seconds without a new "
                             "checkpoint after which following ends, more than 0")
        self.params = dict(params or {})
        self.seed_policy = SeedPolicy(seed_policy)
        self.self_pairs = self_pairs
        self.batch_size = batch_size
        self.dry_run = dry_run
        self.follow = follow
        self.follow_idle = follow_idle
        self.hydra_context: Optional[HydraContext] = None
        self.config: Optional[DictConfig] = None
        self.launcher = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        from ._job_configs import JobConfigLoader

        self.hydra_context = hydra_context
        self.config = config
        # the launcher composes each job: through JobConfigLoader, once per regime and settings
        jobs_context = HydraContext(config_loader=JobConfigLoader(hydra_context.config_loader),
                                    callbacks=hydra_context.callbacks)
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=jobs_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: List[str]) -> Any:
        from ._core import sweep

        return sweep(self, arguments)
