"""The Hydra tasks: one comparison per job, in single runs and sweeps alike; and the report."""

import logging
import sys
import traceback
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from cka_hydra import config
from cka_hydra.errors import InputError
from cka_hydra.atomic import write_atomic
from cka_hydra.job import ERROR_FILE, run_comparison

log = logging.getLogger(__name__)
config.register()


@hydra.main(version_base="1.3", config_path="pkg://conf", config_name="config")
def main(cfg: DictConfig) -> dict[str, Any]:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    try:
        return run_comparison(cfg, run_dir, OmegaConf.select(hydra_cfg, "job.num", default=0) or 0)
    except Exception as err:
        # Hydra's job log does not hold the traceback (hydra#2284): keep it beside the results
        write_atomic(run_dir / ERROR_FILE, f"{err}\n\n{traceback.format_exc()}")
        if isinstance(err, InputError) and hydra_cfg.mode == RunMode.RUN:
            log.error("%s", err)
            sys.exit(1)
        raise


@hydra.main(version_base="1.3", config_path="pkg://conf", config_name="report")
def report(cfg: DictConfig) -> None:
    from cka_hydra.report import write_report  # matplotlib and scipy: only for the report

    try:
        write_report(Path(cfg.sweep_dir).resolve(), Path(cfg.out_dir).resolve())
    except InputError as err:
        log.error("%s", err)
        sys.exit(1)
