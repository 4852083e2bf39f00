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
from omegaconf import DictConfig, OmegaConf, read_write

from cka_hydra.errors import InputError
from cka_hydra.atomic import write_atomic
from cka_hydra.job import is_finished, plan_job
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
    jobs = _plan(sweeper, choices, fixed, check_finished=not sweeper.dry_run)
    if sweeper.dry_run:
        for job in jobs:
            print(" ".join(job.overrides))
        print(f"{len(jobs)} jobs (dry run: nothing computed)")
        return []

    sweep_dir = Path(str(sweeper.config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(sweeper.config, sweep_dir / "multirun.yaml")
    _write_jobs(sweep_dir, jobs)

    todo = [job for job in jobs if job.status == "pending"]
    log.info("%d jobs already have results for the same settings (skipped); %d to run",
             len(jobs) - len(todo), len(todo))
    returns: List[JobReturn] = []
    start = time.perf_counter()
    for first in range(0, len(todo), sweeper.batch_size):
        batch = todo[first:first + sweeper.batch_size]
        try:
            results = sweeper.launcher.launch([job.overrides for job in batch], initial_job_idx=first)
        except Exception as err:  # a worker died hard: only this batch is lost
            log.error("lost %d jobs: the launcher failed (%s: %s)", len(batch), type(err).__name__, err)
            for job in batch:
                job.status, job.error = "lost", f"launcher failed: {type(err).__name__}"
        else:
            for job, result in zip(batch, results):
                _record(job, result)
            returns.extend(results)
        _write_jobs(sweep_dir, jobs)
        _log_progress(jobs, first + len(batch), len(todo), time.perf_counter() - start)
    if not todo:
        _log_progress(jobs, 0, 0, 0.0)

    failed = [job for job in jobs if job.status in ("failed", "lost")]
    if failed:
        table = "\n".join(
            f"  {j.status:6} {j.comparison.regime} pair={j.comparison.pair} seed_pair={j.comparison.seed_pair} "
            f"layer={j.comparison.layer}: {j.error}" for j in failed
        )
        raise SweepError(
            f"{len(failed)} of {len(jobs)} jobs did not finish (see {sweep_dir / JOBS_FILE}; a failed job's "
            f"folder holds error.txt; running the sweep again retries only these):\n{table}"
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


def _plan(sweeper: Any, choices: Dict[str, List[str]], fixed: List[str], check_finished: bool) -> List[Job]:
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
        # composed once per regime; each job's values are then set on it, not composed again
        job_cfg = sweeper.hydra_context.config_loader.load_sweep_config(sweeper.config, [f"regime={regime}", *fixed])
        models = {int(k): list(v) for k, v in job_cfg.regime.models.items()}
        seeds = list(job_cfg.regime.seeds)
        if "seed_pair" in choices:
            seed_list = [_index_pair(s, "seed_pair") for s in choices["seed_pair"]]
        else:
            seed_list = seed_pairs(sweeper.seed_policy, seeds)
        for name, values, known in (("pair", pairs or [], models), ("seed_pair", seed_list, seeds)):
            missing = sorted({str(v) for v in itertools.chain(*values)} - {str(k) for k in known})
            if missing:
                raise SweepError(
                    f"{name}: regime {regime} has no {', '.join(missing)} (it has {', '.join(map(str, known))})"
                )
        comparisons, removed = plan_comparisons(regime, models, layers, seed_list, pairs, self_pairs)
        n_candidates = len(comparisons) + sum(removed.values())
        log.info(
            "%s: %d candidates; removed %s; %d jobs", regime, n_candidates,
            ", ".join(f"{n} for {rule}" for rule, n in removed.items()), len(comparisons),
        )
        jobs += [_job(job_cfg, c, fixed, check_finished) for c in comparisons]
    log.info("sweep: %d jobs", len(jobs))
    return jobs


def _job(job_cfg: DictConfig, c: Comparison, fixed: List[str], check_finished: bool) -> Job:
    """A job with its run folder; with check_finished, marked skipped when that folder
    already holds results for the same settings.

    Sets the comparison's values on job_cfg (a regime's composed config) as the pair,
    seed_pair and layer options would, which is far cheaper than composing the job.
    """
    with read_write(job_cfg):
        job_cfg.pair.a, job_cfg.pair.b = c.a, c.b
        job_cfg.seed_pair.a, job_cfg.seed_pair.b = c.seed_a, c.seed_b
        job_cfg.layer = c.layer
    run_dir = os.path.abspath(os.path.join(str(job_cfg.hydra.sweep.dir), str(job_cfg.hydra.sweep.subdir)))
    # quoted: Hydra would read pair=1_2 and layer=5 as integers, which are no group choice
    overrides = [f"regime={c.regime}", f"pair='{c.pair}'", f"seed_pair='{c.seed_pair}'", f"layer='{c.layer}'"]
    job = Job(c, overrides + fixed, run_dir)
    if check_finished and not job_cfg.overwrite:
        try:
            if is_finished(plan_job(job_cfg), Path(run_dir)):
                job.status = "skipped"
        except InputError:
            pass  # the job itself will fail and say why
    return job


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


def _write_jobs(sweep_dir: Path, jobs: List[Job]) -> None:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=JOBS_COLUMNS)
    writer.writeheader()
    writer.writerows(job.row() for job in jobs)
    write_atomic(sweep_dir / JOBS_FILE, out.getvalue())


def _log_progress(jobs: List[Job], n_run: int, n_todo: int, elapsed: float) -> None:
    counts = Counter(job.status for job in jobs)
    eta = elapsed / n_run * (n_todo - n_run) if n_run else 0.0
    log.info(
        "[%d/%d] done %d, skipped %d, failed %d, lost %d | %.0f s elapsed, ~%.0f s left",
        len(jobs) - counts["pending"], len(jobs), counts["done"], counts["skipped"], counts["failed"],
        counts["lost"], elapsed, eta,
    )
