"""The Hydra app's edge: the two tasks (a comparison per job; the report), the callbacks that
check them before Hydra writes a folder, and the schema and resolvers Hydra composes with.

Everything here hands a typed config to cka_hydra.lifecycle (a comparison) or cka_hydra.report.
"""

import logging
import sys
import traceback
from pathlib import Path
from typing import Any

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from cka_hydra import lifecycle, run_folder
from cka_hydra.errors import InputError
from cka_hydra.identity import results_dir_name, run_subdir
from cka_hydra.regime_files import check_regime_file, regime_exclusions
from cka_hydra.schema import ReportConfig, RunConfig, report_config, run_config

log = logging.getLogger(__name__)


def register() -> None:
    """Put the schemas in the ConfigStore and the resolvers that name result folders in OmegaConf."""
    ConfigStore.instance().store(name="cka_hydra_schema", node=RunConfig)
    ConfigStore.instance().store(name="cka_hydra_report_schema", node=ReportConfig)
    if not OmegaConf.has_resolver("cka_run_subdir"):
        OmegaConf.register_new_resolver("cka_results_dir", results_dir_name)
        OmegaConf.register_new_resolver("cka_run_subdir", lambda *, _root_: run_subdir(run_config(_root_)))


register()


def results_dir(run_dir: Path, sweep_dir: str) -> Path | None:
    """The results dir that holds run_dir (hydra.sweep.dir), or None for a run written elsewhere."""
    sweep = Path(sweep_dir).resolve()
    return sweep if run_dir.resolve().is_relative_to(sweep) else None


def checked_run(cfg: DictConfig) -> tuple[RunConfig, Path, Path | None]:
    """A composed comparison's typed config, run folder and results dir, once its regime file is
    checked (the same for a single run and the Python API; the sweeper checks each regime once)."""
    check_regime_file(cfg)
    run = run_config(cfg)  # before the folders, whose names resolve the config again
    run_dir = Path(cfg.hydra.run.dir).resolve()
    return run, run_dir, results_dir(run_dir, cfg.hydra.sweep.dir)


class RunChecks(Callback):
    """Checks a single run before Hydra writes its folder (`.hydra/`, the log): a run that
    would fail for its settings is refused with one line, and a run whose result is already
    there ends at once, leaving the folder as it was.

    Both end the process with SystemExit: Hydra turns a callback's exceptions into warnings,
    but SystemExit is no Exception and passes through."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            run, run_dir, results = checked_run(config)
            inputs = lifecycle.check(run, run_dir, results)
            for caution in run.cautions():
                log.warning("%s", caution)
        except InputError as err:
            raise SystemExit(f"Error: {err}") from None
        if not run.overwrite and lifecycle.is_finished(run_dir, inputs.settings, inputs.record):
            log.info("skipped: %s already holds this result (overwrite=true recomputes)", run_dir)
            if run.save_timeline_plot:
                lifecycle.draw_timeline(run_dir, only_if_missing=True)
            sys.exit(0)


@hydra.main(version_base="1.3", config_path="pkg://cka_hydra.conf", config_name="config")
def main(cfg: DictConfig) -> dict[str, Any]:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    try:
        run = run_config(cfg, hydra_cfg.runtime.choices)
        return lifecycle.run(run, run_dir, results_dir(run_dir, hydra_cfg.sweep.dir),
                             OmegaConf.select(hydra_cfg, "job.num", default=0) or 0)
    except Exception as err:
        # Hydra's job log does not hold the error (hydra#2284): log it, and keep the traceback
        # beside the run unless the folder holds a result
        log.error("%s", err)
        run_folder.write_error(run_dir, f"{err}\n\n{traceback.format_exc()}")
        if isinstance(err, InputError) and hydra_cfg.mode == RunMode.RUN:
            sys.exit(1)
        raise


def covariates_path(settings: ReportConfig) -> Path | None:
    """The report's covariates file, a relative path read from the folder the report is run from
    (as sweep_dir: Hydra does not change it, hydra.job.chdir being false)."""
    return None if settings.covariates is None else Path(settings.covariates).expanduser().resolve()


class ReportChecks(Callback):
    """Checks the report's settings and sweep_dir before Hydra creates out_dir (see RunChecks)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        from cka_hydra.covariates import read_covariates
        from cka_hydra.results import check_exclude, check_sweep_dir, compared

        try:
            settings = report_config(config)
            run_dirs = check_sweep_dir(Path(settings.sweep_dir).resolve(), settings.data.root,
                                       exclude=Path(settings.out_dir).resolve())
            check_exclude(settings.exclude, run_dirs)
            if settings.covariates is not None:  # the file's names and pairs against the run folders'
                read_covariates(covariates_path(settings), compared(run_dirs), settings.covariate_rule)
            regime_exclusions(config.hydra.runtime.config_sources)
        except InputError as err:
            raise SystemExit(f"Error: {err}") from None


@hydra.main(version_base="1.3", config_path="pkg://cka_hydra.conf", config_name="report")
def report(cfg: DictConfig) -> None:
    from cka_hydra.report import write_report  # matplotlib and scipy: only for the report

    try:
        settings = report_config(cfg)
        write_report(Path(settings.sweep_dir).resolve(), Path(settings.out_dir).resolve(), settings.exclude,
                     regime_exclusions(HydraConfig.get().runtime.config_sources), settings.allow_excluded,
                     settings.min_runs, covariates_path(settings), settings.covariate_rule,
                     settings.mantel_permutations, settings.mantel_seed)
    except InputError as err:
        log.error("%s", err)
        sys.exit(1)
