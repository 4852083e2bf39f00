"""The cka sweeper's work: plan the valid jobs, launch them in bounded batches, record each one.

Validity comes from `cka_hydra.pairs`, applied to each regime's data composed once;
nothing here composes a job to test it.
"""

import csv
import io
import itertools
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, QuotedString
from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import CompactHydraException
from omegaconf import OmegaConf

from cka_hydra.job import write_atomic
from cka_hydra.pairs import Comparison, SeedPolicy, plan_comparisons, seed_pairs

log = logging.getLogger(__name__)

GROUPS = ("regime", "pair", "seed_pair", "layer")
JOBS_FILE = "jobs.csv"
JOBS_COLUMNS = ("regime", "pair", "seed_pair", "layer", "run_dir", "status", "seconds", "error")


class SweepError(CompactHydraException):
    """A sweep that cannot start, or that ended with failed or lost jobs: one message, no traceback."""


@dataclass
class Job:
    comparison: Comparison
    overrides: List[str]
    run_dir: str = ""
    status: str = "pending"
    seconds: Optional[float] = None
    error: str = ""

    def row(self) -> Dict[str, Any]:
        c = self.comparison
        seconds = "" if self.seconds is None else f"{self.seconds:.3f}"
        return dict(regime=c.regime, pair=c.pair, seed_pair=c.seed_pair, layer=c.layer,
                    run_dir=self.run_dir, status=self.status, seconds=seconds, error=self.error)


def sweep(sweeper: Any, arguments: List[str]) -> List[JobReturn]:
    config_loader = sweeper.hydra_context.config_loader
    choices, fixed = _split_overrides(config_loader, sweeper.params, arguments)
    jobs = _plan(sweeper, choices, fixed)
    if sweeper.dry_run:
        for job in jobs:
            print(" ".join(job.overrides))
        print(f"{len(jobs)} jobs (dry run: nothing computed)")
        return []

    sweep_dir = Path(str(sweeper.config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(sweeper.config, sweep_dir / "multirun.yaml")
    _write_jobs(sweep_dir, jobs)

    returns: List[JobReturn] = []
    start = time.perf_counter()
    for first in range(0, len(jobs), sweeper.batch_size):
        batch = jobs[first:first + sweeper.batch_size]
        try:
            results = sweeper.launcher.launch([job.overrides for job in batch], initial_job_idx=first)
        except Exception as err:  # a worker died hard: only this batch is lost
            log.error("lost %d jobs: the launcher failed (%s: %s)", len(batch), type(err).__name__, err)
            for job in batch:
                job.status, job.error = "lost", f"launcher failed: {type(err).__name__}"
                job.run_dir = _run_dir(config_loader, sweeper.config, job.overrides)
        else:
            for job, result in zip(batch, results):
                _record(job, result)
            returns.extend(results)
        _write_jobs(sweep_dir, jobs)
        _log_progress(jobs, first + len(batch), time.perf_counter() - start)

    failed = [job for job in jobs if job.status in ("failed", "lost")]
    if failed:
        table = "\n".join(
            f"  {j.status:6} {j.comparison.regime} pair={j.comparison.pair} seed_pair={j.comparison.seed_pair} "
            f"layer={j.comparison.layer}: {j.error}" for j in failed
        )
        raise SweepError(
            f"{len(failed)} of {len(jobs)} jobs did not finish (see {sweep_dir / JOBS_FILE}; "
            f"each failed job's folder has error.txt; re-running retries only these):\n{table}"
        )
    return returns


def _split_overrides(config_loader: Any, params: Dict[str, str], arguments: List[str]):
    """Values of the four groups by name, and the other overrides that every job gets.

    The sweeper's params come first, so the command line replaces them key by key.
    """
    parser = OverridesParser.create(config_loader=config_loader)
    lines = [f"{key}={value}" for key, value in params.items()] + list(arguments)
    choices: Dict[str, List[str]] = {}
    fixed: Dict[str, str] = {}
    for override in parser.parse_overrides(lines):
        key = override.get_key_element()
        if key in GROUPS:
            choices[key] = _values(override)
        elif override.is_sweep_override():
            raise SweepError(
                f"{override.input_line}: only {', '.join(GROUPS)} can take several values in a sweep "
                "(they name the run folders); run one sweep per value, each with its own hydra.sweep.dir"
            )
        else:
            fixed[key] = override.input_line
    for group, values in choices.items():
        known = config_loader.get_group_options(group)
        unknown = [v for v in values if v not in known]
        if unknown:
            raise SweepError(f"{group}={','.join(unknown)}: no such option; {group} has: {', '.join(known)}")
    return choices, list(fixed.values())


def _values(override: Override) -> List[str]:
    values = list(override.sweep_iterator()) if override.is_sweep_override() else [override.value()]
    return [v.text if isinstance(v, QuotedString) else str(v) for v in values]


def _index_pair(option: str, group: str) -> Sequence[str]:
    first, sep, second = option.partition("_")
    if not sep:
        raise SweepError(f"{group}={option}: expected <first>_<second>, e.g. 1_2 (quote numbers in YAML: '1_2')")
    return first, second


def _plan(sweeper: Any, choices: Dict[str, List[str]], fixed: List[str]) -> List[Job]:
    runtime_choices = sweeper.config.hydra.runtime.choices
    regimes = choices.get("regime", [runtime_choices.regime])
    layers = [int(layer) for layer in choices.get("layer", [runtime_choices.layer])]
    pairs = None
    if "pair" in choices:
        pairs = [tuple(int(i) for i in _index_pair(p, "pair")) for p in choices["pair"]]
    # the full instance matrix pairs every model with itself too
    self_pairs = sweeper.self_pairs or sweeper.seed_policy is SeedPolicy.matrix

    jobs = []
    for regime in regimes:
        regime_cfg = sweeper.hydra_context.config_loader.load_sweep_config(
            sweeper.config, [f"regime={regime}", *fixed]
        ).regime
        models = {int(k): list(v) for k, v in regime_cfg.models.items()}
        seeds = list(regime_cfg.seeds)
        if "seed_pair" in choices:
            seed_list = [_index_pair(s, "seed_pair") for s in choices["seed_pair"]]
        else:
            seed_list = seed_pairs(sweeper.seed_policy, seeds)
        for name, values, known in (("pair", pairs or [], models), ("seed_pair", seed_list, seeds)):
            missing = sorted({str(v) for v in itertools.chain(*values)} - {str(k) for k in known})
            if missing:
                raise SweepError(f"{name}: regime {regime} has no {', '.join(missing)} (it has {', '.join(map(str, known))})")
        comparisons, removed = plan_comparisons(regime, models, layers, seed_list, pairs, self_pairs)
        n_candidates = len(comparisons) + sum(removed.values())
        log.info(
            "%s: %d candidates; removed %s; %d jobs", regime, n_candidates,
            ", ".join(f"{n} for {rule}" for rule, n in removed.items()), len(comparisons),
        )
        jobs += [Job(c, _job_overrides(c) + fixed) for c in comparisons]
    log.info("sweep: %d jobs", len(jobs))
    return jobs


def _job_overrides(c: Comparison) -> List[str]:
    # quoted: Hydra would read pair=1_2 and layer=5 as integers, which are no group choice
    return [f"regime={c.regime}", f"pair='{c.pair}'", f"seed_pair='{c.seed_pair}'", f"layer='{c.layer}'"]


def _record(job: Job, result: JobReturn) -> None:
    job.run_dir = str(result.hydra_cfg.hydra.runtime.output_dir)
    if result.status == JobStatus.COMPLETED:
        job.status, job.seconds = result.return_value["status"], result.return_value["seconds"]
    else:
        job.status = "failed"
        try:
            result.return_value
        except Exception as err:  # the job's own exception, re-raised by JobReturn
            job.error = (str(err).splitlines() or [type(err).__name__])[0]


def _run_dir(config_loader: Any, config: Any, overrides: List[str]) -> str:
    """Where a job that never returned would have written (composed only for lost jobs)."""
    job_cfg = config_loader.load_sweep_config(config, overrides)
    return os.path.abspath(os.path.join(str(job_cfg.hydra.sweep.dir), str(job_cfg.hydra.sweep.subdir)))


def _write_jobs(sweep_dir: Path, jobs: List[Job]) -> None:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=JOBS_COLUMNS)
    writer.writeheader()
    writer.writerows(job.row() for job in jobs)
    write_atomic(sweep_dir / JOBS_FILE, out.getvalue())


def _log_progress(jobs: List[Job], n_launched: int, elapsed: float) -> None:
    counts = Counter(job.status for job in jobs)
    left = len(jobs) - n_launched
    eta = elapsed / n_launched * left
    log.info(
        "[%d/%d] done %d, skipped %d, failed %d, lost %d | %.0f s elapsed, ~%.0f s left",
        n_launched, len(jobs), counts["done"], counts["skipped"], counts["failed"], counts["lost"], elapsed, eta,
    )
