"""The cka sweeper's work: plan the valid jobs, check them, launch them in bounded batches, record each one.

The jobs are the valid comparisons (`cka_hydra.pairs`, applied to each regime's data) times
every combination of the other swept settings, as Hydra's basic sweeper would form them. Each
regime and combination is composed once; nothing here composes a job to test it. Run folders,
the manifest and what counts as finished belong to `cka_hydra.run_folder`.
"""

import dataclasses
import itertools
import logging
import math
import signal
import sys
import time
from collections import Counter, defaultdict
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, QuotedString
from hydra.core.utils import JobReturn, JobStatus, configure_log
from omegaconf import OmegaConf

from hydra_plugins.cka_hydra_configs.index_pairs import option_values

from cka_hydra import run_folder
from cka_hydra.__main__ import hydra_argv
from cka_hydra.atomic import write_atomic
from cka_hydra.config import (
    PairConfig, RunConfig, SeedPairConfig, check_regime_file, default_settings, run_config, settings,
)
from cka_hydra.errors import CannotWrite, FilterError, InputError
from cka_hydra.pairs import Comparison, SeedPolicy, plan_comparisons, seed_pairs, shared_tasks

log = logging.getLogger(__name__)

GROUPS = ("regime", "pair", "seed_pair", "layer")
# planned with the groups, by the validity and uniqueness rules: a setting, not a group
PLANNED = GROUPS + ("layer_b",)
# jobs a launch takes at most: the study's 252 in one, so that its workers' chunks follow its groups
DEFAULT_BATCH_SIZE = 256


class SweepError(SystemExit):
    """A sweep that cannot start, or that ended with failed or lost jobs: the message alone, exit
    status 1. (SystemExit: Hydra would add a hint about stack traces to any other exception.)"""

    def __init__(self, message: str) -> None:
        super().__init__(f"Error: {message}")


@dataclass
class Job:
    comparison: Comparison
    overrides: List[str]
    run: RunConfig
    results_dir: Path
    subdir: str
    settings: str  # the settings that differ from the defaults, as overrides
    plan: Any = None  # its JobPlan, once checked before launch
    draw_only: bool = False  # finished, run only to draw its timeline figure (save_timeline_plot)
    status: str = "pending"
    seconds: Optional[float] = None
    error: str = ""

    @property
    def run_dir(self) -> Path:
        return self.results_dir / self.subdir

    def row(self) -> Dict[str, Any]:
        c = self.comparison
        seconds = "" if self.seconds is None else f"{self.seconds:.3f}"
        return dict(regime=c.regime, pair=c.pair, seed_pair=c.seed_pair, layer=c.layer, layer_b=c.layer_b,
                    settings=self.settings,
                    run_dir=self.subdir, status=self.status, seconds=seconds, error=self.error)


def sweep(sweeper: Any, arguments: List[str]) -> List[JobReturn]:
    if sweeper.follow is not None:
        from ._follow import refuse_cluster

        refuse_cluster(sweeper)
    config_loader = sweeper.hydra_context.config_loader
    choices, swept, fixed = _split_overrides(config_loader, sweeper.config, sweeper.params, arguments)
    jobs = _plan(sweeper, choices, swept, fixed)
    _check(jobs, write_demo_store=not sweeper.dry_run)
    if sweeper.dry_run:
        for job in jobs:
            log.info("%s%s", " ".join(job.overrides), "" if job.status == "pending" else
                     f"  [{job.status}{': ' + job.error if job.error else ''}]")
        counts = Counter(job.status for job in jobs)
        log.info("%d jobs (dry run: nothing computed%s): %d to run, %d already done, %d failing before launch",
                 len(jobs), ", nothing followed" if sweeper.follow is not None else "", counts["pending"],
                 counts["skipped"], counts["failed"])
        if counts["failed"]:  # as the sweep itself would end
            raise SweepError(f"{counts['failed']} of {len(jobs)} jobs would fail before launch (marked failed above)")
        return []

    results_dirs = sorted({job.results_dir for job in jobs})
    manifests = ", ".join(str(d / run_folder.JOBS_FILE) for d in results_dirs)
    try:
        for results_dir in results_dirs:
            write_atomic(results_dir / "multirun.yaml", OmegaConf.to_yaml(sweeper.config))
    except CannotWrite as err:  # the disk is full or read-only: say so before any job tries
        raise SweepError(str(err)) from None
    _write_jobs(jobs)
    counts = Counter(job.status for job in jobs)
    drawing = sum(job.draw_only for job in jobs)
    log.info("%d jobs already have results for the same settings (skipped); %d failed before launch; %d to run%s",
             counts["skipped"], counts["failed"], counts["pending"],
             f" ({drawing} of them only to draw their timeline figure)" if drawing else "")

    todo = [job for job in jobs if job.status == "pending"]
    started = time.time()
    try:
        with _interruptible() as received:
            _launch_all(sweeper, jobs, todo, received, started)
            if sweeper.follow is not None:
                from ._follow import follow

                follow(sweeper, jobs, lambda due: _launch_all(sweeper, jobs, due, received, started, progress=False),
                       received)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM from a scheduler or kill
        running = [job for job in jobs if job.status == "running"]
        _settle(running, "interrupted", started)
        _write_jobs(running)
        counts = Counter(job.status for job in jobs)
        raise SweepError(
            f"interrupted: {counts['lost']} launched jobs have no result (marked lost) and {counts['pending']} "
            f"were not launched (see {manifests}); "
            "running the sweep again skips every job that finished and runs the rest") from None

    failed = [job for job in jobs if job.status in ("failed", "lost")]
    if failed:
        table = "\n".join(
            f"  {j.status:6} {j.comparison.regime} pair={j.comparison.pair} seed_pair={j.comparison.seed_pair} "
            f"layer={j.comparison.layer}{_layer_b(j.comparison)}{' ' + j.settings if j.settings else ''}: {j.error}"
            for j in failed
        )
        raise SweepError(
            f"{len(failed)} of {len(jobs)} jobs did not finish (see {manifests}; a failed job's folder holds "
            f"{run_folder.ERROR_FILE} when it was launched; running the sweep again retries only these):\n{table}"
        )
    return []  # each job's record is its run folder and jobs.csv; keeping every JobReturn costs 1 MB a job


def _layer_b(comparison: Comparison) -> str:
    return "" if comparison.layer_b == comparison.layer else f" layer_b={comparison.layer_b}"


def _launch_all(sweeper: Any, jobs: List[Job], todo: List[Job], received: List[int], started: float,
                progress: bool = True) -> None:
    """Launch the jobs of todo in batches, recording each in jobs.csv as its part ends (a worker's
    chunk, an array task); with progress, a console line as each part ends."""
    start = time.perf_counter()
    first = 0
    for batch in pack(todo, _batch_size(sweeper, len(todo)), lambda job: sharing_key(job.overrides)):
        for job in batch:
            job.status = "running"
        try:
            with closing(_launch(sweeper, batch, first)) as parts:  # closed on an interrupt: the launcher cancels
                for positions, results in parts:
                    # a job run in this process (basic launcher, one joblib worker) set logging up for its folder
                    configure_log(sweeper.config.hydra.hydra_logging, sweeper.config.hydra.verbose)
                    part = [batch[p] for p in positions]
                    for job, result in zip(part, results):
                        _record(job, result, started)
                    _write_jobs(part)
                    if received:
                        raise KeyboardInterrupt
                    if progress and any(job.status == "running" for job in batch):  # the batch's other parts run
                        _log_progress(jobs, first + sum(job.status != "running" for job in batch), len(todo),
                                      time.perf_counter() - start)
        except Exception as err:  # a worker died hard: only this batch's jobs without a record are lost
            log.error("the launcher failed (%s: %s): its batch's jobs without a result are lost",
                      type(err).__name__, err)
            unrecorded = [job for job in batch if job.status == "running"]
            _settle(unrecorded, f"launcher failed: {type(err).__name__}: {(str(err).splitlines() or [''])[0]}",
                    started)
            _write_jobs(unrecorded)
        finally:
            configure_log(sweeper.config.hydra.hydra_logging, sweeper.config.hydra.verbose)
        first += len(batch)
        if progress:
            _log_progress(jobs, first, len(todo), time.perf_counter() - start)
    if progress and not todo:
        _log_progress(jobs, 0, 0, 0.0)


def _launch(sweeper: Any, batch: List[Job], first: int) -> Iterator[Tuple[Sequence[int], List[JobReturn]]]:
    """The batch's returns, with their jobs' positions in it: part by part as they end with this
    project's launchers (launch_parts), else all at once."""
    launcher, overrides = sweeper.launcher, [job.overrides for job in batch]
    if hasattr(launcher, "launch_parts"):
        yield from launcher.launch_parts(overrides, first)
    else:
        yield range(len(batch)), launcher.launch(overrides, initial_job_idx=first)


@contextmanager
def _interruptible() -> Iterator[List[int]]:
    """Ctrl-C and SIGTERM (a scheduler's, or kill's) end the sweep alike: KeyboardInterrupt, so the
    launcher stops its workers and jobs.csv records what finished. (By default SIGTERM would end
    this process alone, leaving the workers running and jobs.csv unwritten.) Yields the signals
    received: an interrupt that lands in a garbage collector's callback is lost there, so the
    sweep also checks this list between batches."""
    received: List[int] = []

    def interrupt(signum: int, frame: Any) -> None:
        received.append(signum)
        raise KeyboardInterrupt

    def unraisable(info: Any) -> None:  # that lost interrupt would print a traceback
        if not issubclass(info.exc_type, KeyboardInterrupt):
            default_hook(info)

    previous = {signum: signal.signal(signum, interrupt) for signum in (signal.SIGINT, signal.SIGTERM)}
    default_hook, sys.unraisablehook = sys.unraisablehook, unraisable
    try:
        yield received
    finally:
        sys.unraisablehook = default_hook
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def sharing_key(overrides: List[str]) -> Tuple[str, ...]:
    """What the jobs that read the same instances share: every override but the pair's and the
    seed pair's (regime, layer, layer_b and the settings)."""
    return tuple(o for o in overrides if not o.startswith(("pair=", "seed_pair=")))


def pieces(items: List[Any], size: int, key: Any) -> List[List[Any]]:
    """Consecutive items of one key in pieces of at most size, each run of a key split evenly."""
    result = []
    for _, run in itertools.groupby(items, key):
        group = list(run)
        step = math.ceil(len(group) / math.ceil(len(group) / size))
        result += [group[i:i + step] for i in range(0, len(group), step)]
    return result


def pack(items: List[Any], size: int, key: Any) -> List[List[Any]]:
    """Items in batches of at most size, each holding whole runs of a key where they fit (pieces
    of a run longer than size otherwise): a batch's jobs share instances."""
    batches: List[List[Any]] = []
    for piece in pieces(items, size, key):
        if batches and len(batches[-1]) + len(piece) <= size:
            batches[-1] += piece
        else:
            batches.append(list(piece))
    return batches


def in_order(parts: Iterator[Tuple[List[int], List[JobReturn]]], n_jobs: int) -> List[JobReturn]:
    """A launch's returns in its jobs' order, from its parts as they ended (launch_parts)."""
    returns: List[Any] = [None] * n_jobs
    for positions, part in parts:
        for position, job_return in zip(positions, part):
            returns[position] = job_return
    return returns


def _batch_size(sweeper: Any, n_jobs: int) -> int:
    """hydra.sweeper.batch_size, else 256: when one worker dies, joblib (or the plugin's submitit
    launchers) lose the whole launch() call. A launcher whose array tasks fail alone takes every
    job at once, since the sweeper waits for each call to finish before the next."""
    if sweeper.batch_size is not None:
        return sweeper.batch_size
    return max(1, n_jobs) if getattr(sweeper.launcher, "array_tasks_fail_alone", False) else DEFAULT_BATCH_SIZE


def _split_overrides(
    config_loader: Any, config: Any, params: Dict[str, str], arguments: List[str]
) -> Tuple[Dict[str, List[str]], List[List[str]], List[str]]:
    """The values of the four groups by name; each other swept key's overrides, one per value;
    and the overrides every job gets. The sweeper's params come first, so the command line
    replaces them key by key."""
    parser = OverridesParser.create(config_loader=config_loader)
    # quoted as on the command line: the grammar reads a params value 1_5 as the integer 15
    lines = hydra_argv([f"{key}={_params_value(value)}" for key, value in params.items()]) + list(arguments)
    choices: Dict[str, List[str]] = {}
    swept: Dict[str, List[str]] = {}
    fixed: Dict[str, str] = {}
    for override in parser.parse_overrides(lines):
        key = override.get_key_element()
        for table in (choices, swept, fixed):
            table.pop(key, None)
        if key in PLANNED:
            choices[key] = _values(override)
        elif override.is_sweep_override():
            if not override.is_discrete_sweep():
                raise SweepError(f"{override.input_line}: only lists of values can be swept here, not intervals")
            swept[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
        else:
            fixed[key] = override.input_line
    for key, values in choices.items():
        group = "layer" if key == "layer_b" else key  # layer_b names a layer, as the group layer does
        # the primary config and Hydra's overrides give the search path (hydra.searchpath=[...] adds to it)
        known = config_loader.get_group_options(group, config_name=config.hydra.job.config_name,
                                                overrides=list(config.hydra.overrides.hydra))
        # a pair or seed pair of any index or seed is an option (index_pairs); the regime checks it
        unknown = [v for v in values if v not in known and not (key == "layer_b" and v == "None")
                   and option_values(group, v) is None]
        if unknown:
            hint = (" (a YAML file reads 1_5 as the number 15: quote it, '1_5')"
                    if group in ("pair", "seed_pair") and all(v.isdigit() for v in unknown) else "")
            raise SweepError(f"{key}={','.join(unknown)}: no such option{hint}; {group} has: {', '.join(known)}")
    return choices, list(swept.values()), list(fixed.values())


def _params_value(value: Any) -> str:
    """A params value as a sweep of its items: `3,4,5,6` as written, or a YAML list [3, 4, 5, 6]."""
    return ",".join(map(str, value)) if OmegaConf.is_list(value) or isinstance(value, list) else str(value)


def _values(override: Override) -> List[str]:
    values = list(override.sweep_iterator()) if override.is_sweep_override() else [override.value()]
    return [v.text if isinstance(v, QuotedString) else str(v) for v in values]


def _index_pair(option: str, group: str) -> Tuple[str, str]:
    first, sep, second = option.partition("_")
    if not sep:
        raise SweepError(f"{group}={option}: expected <first>_<second>, e.g. 1_2 (quote numbers in YAML: '1_2')")
    return first, second


def _plan(sweeper: Any, choices: Dict[str, List[str]], swept: List[List[str]], fixed: List[str]) -> List[Job]:
    runtime_choices = sweeper.config.hydra.runtime.choices
    regimes = choices.get("regime", [runtime_choices.regime])
    layers = [int(layer) for layer in choices.get("layer", [runtime_choices.layer])]
    layers_b = _layers_b(choices.get("layer_b"))
    pairs = None
    if "pair" in choices:
        pairs = [(int(a), int(b)) for a, b in (_index_pair(p, "pair") for p in choices["pair"])]
    # the full instance matrix pairs every model with itself too
    self_pairs = sweeper.self_pairs or sweeper.seed_policy is SeedPolicy.matrix
    defaults = default_settings()

    jobs: List[Job] = []
    first_combination = next(itertools.product(*swept))
    for combination, regime in itertools.product(itertools.product(*swept), regimes):
        # composed once per regime and combination; each job's values are then set on it
        job_cfg = sweeper.hydra_context.config_loader.load_sweep_config(
            sweeper.config, [f"regime={regime}", *fixed, *combination])
        try:
            check_regime_file(job_cfg)
            base = run_config(job_cfg)
        except InputError as err:
            raise SweepError(f"{err}{' (with ' + ' '.join(combination) + ')' if combination else ''}") from None
        if regime == regimes[0]:
            for caution in base.cautions():
                log.warning("%s%s", caution, f" (with {' '.join(combination)})" if combination else "")
        results_dir = Path(str(job_cfg.hydra.sweep.dir)).resolve()
        models = {int(k): list(v) for k, v in base.regime.models.items()}
        seeds = list(base.regime.seeds)
        if "seed_pair" in choices:
            seed_list = [_index_pair(s, "seed_pair") for s in choices["seed_pair"]]
        else:
            seed_list = seed_pairs(sweeper.seed_policy, seeds)
        for name, what, values, known in (("pair", "model", pairs or [], models),
                                          ("seed_pair", "seed", seed_list, seeds)):
            missing = sorted({str(v) for v in itertools.chain(*values)} - {str(k) for k in known})
            if missing:
                raise SweepError(f"{name}: regime {regime} has no {what} {', '.join(missing)} "
                                 f"(it has {', '.join(map(str, known))})")
        exclude = {} if base.allow_excluded else base.regime.exclude
        comparisons, removed = plan_comparisons(regime, models, layers, seed_list, pairs, self_pairs, layers_b,
                                                exclude, base.allow_overlap)
        if combination == first_combination:  # the rules give the same counts for every combination
            overlapping = sum(c.a != c.b and bool(shared_tasks(models[c.a], models[c.b])) for c in comparisons)
            log.info("%s: %d candidates; removed %s; %d jobs%s", regime, len(comparisons) + sum(removed.values()),
                     ", ".join(f"{n} for {rule}" for rule, n in removed.items() if n or not rule.startswith("excluded")),
                     len(comparisons), f" ({overlapping} of them share a training task: allow_overlap=true)"
                     if base.allow_overlap else "")
        job_settings = settings(base)
        # by layer: the jobs that read the same instances run close together (sharing_key), and a
        # worker's chunk of them prepares each instance once
        for planned in sorted(comparisons, key=lambda c: (c.layer, c.layer_b)):
            run = dataclasses.replace(base, pair=PairConfig(planned.a, planned.b),
                                      seed_pair=SeedPairConfig(planned.seed_a, planned.seed_b), layer=planned.layer,
                                      layer_b=planned.layer_b)
            c = run.comparison  # as the job will see it (a model against itself: seeds in the regime's order)
            # quoted: Hydra would read pair=1_2 and layer=5 as integers, which are no group choice
            overrides = [f"regime={c.regime}", f"pair='{c.pair}'", f"seed_pair='{c.seed_pair}'", f"layer='{c.layer}'"]
            if layers_b is not None:
                overrides.append(f"layer_b={c.layer_b}")
            jobs.append(Job(c, overrides + fixed + list(combination), run, results_dir,
                            run_folder.subdir(c, job_settings, defaults), run_folder.describe(job_settings, defaults)))
    if not jobs:
        raise SweepError("no valid comparison in this sweep: every candidate was removed by the rules above "
                         "(two models that share a training task are compared only with allow_overlap=true)")
    log.info("sweep: %d jobs%s", len(jobs), f" ({len(jobs) // max(1, _n_combinations(swept))} comparisons x "
             f"{_n_combinations(swept)} settings)" if swept else "")
    _refuse_duplicates(jobs)
    return jobs


def _layers_b(values: Optional[List[str]]) -> Optional[List[int]]:
    """The second instances' layers; None: each the same as the first's (also for layer_b=null)."""
    if values is None or values == ["None"]:
        return None
    if "None" in values:
        raise SweepError(f"layer_b={','.join(v if v != 'None' else 'null' for v in values)}: null (the same layer as "
                         "layer) cannot be listed with layer indices; list the layers, e.g. layer_b=3,4,5,6")
    return [int(value) for value in values]


def _n_combinations(swept: List[List[str]]) -> int:
    return math.prod(len(values) for values in swept)


def _refuse_duplicates(jobs: List[Job]) -> None:
    """Swept values that cannot change a result (device, or sigma_frac with the linear kernel)
    would send two jobs to one run folder: say so instead."""
    seen: Dict[Path, Job] = {}
    for job in jobs:
        other = seen.setdefault(job.run_dir, job)
        if other is not job:
            differ = sorted({line.split("=")[0] for line in set(other.overrides) ^ set(job.overrides)})
            raise SweepError(
                f"two jobs would compute the same result into {job.run_dir}: {' '.join(other.overrides)} and "
                f"{' '.join(job.overrides)}: {', '.join(differ)} cannot change it. Sweep only values that change "
                "the result; sweep a setting that only some options use (measure.components with measure=cka, "
                "cka.sigma_frac with the linear kernel) in a sweep of those options alone"
            )


def _check(jobs: List[Job], write_demo_store: bool) -> None:
    """Check what every job needs before launching any: what all jobs of a regime and settings
    share stops the sweep with one message; a job's own missing input fails that job alone.
    Without write_demo_store (a dry run), jobs on a demo store not yet written stay unchecked."""
    from cka_hydra.demo import ensure_demo_store
    from cka_hydra.plan import StepsError, check_city_filter, check_device, data_root, preflight

    roots: Dict[Path, set] = defaultdict(set)
    for job in jobs:
        roots[job.results_dir].add(job.run.data.root)
    for results_dir, data_roots in roots.items():
        if len(data_roots) > 1:
            raise SweepError(f"{results_dir}: a results dir holds one data root's results, not "
                             f"{', '.join(map(run_folder.data_root_text, data_roots))}: run one sweep per data root")

    checked, filter_checked = set(), set()
    steps_refused: Dict[Tuple, List[str]] = defaultdict(list)  # per group, the step lists no job could take
    for job in jobs:
        run = job.run
        group = _group(job)
        try:
            if run.data.root is None and not run.data.path.is_dir() and not write_demo_store:
                continue
            if group not in checked:
                checked.add(group)
                if run.data.root is None:
                    ensure_demo_store(run.data.path)
                data_root(run.data)
                check_device(run.device)
                run_folder.check_data_root(job.results_dir, run.data.root, run.overwrite)
        except InputError as err:
            raise SweepError(str(err)) from None
        try:
            job.plan = preflight(run, job.run_dir, job.results_dir)
        except InputError as err:
            job.status, job.error = "failed", str(err)
            if isinstance(err, StepsError):
                steps_refused[group].append(str(err))
            continue
        if group not in filter_checked:  # on the first job of the group whose inputs can be read
            try:
                check_city_filter(job.plan)
            except FilterError as err:  # the setting: every job of the group would fail
                raise SweepError(str(err)) from None
            except InputError as err:  # this job's file: it fails alone, the next job checks the filter
                job.status, job.error = "failed", str(err)
                continue
            filter_checked.add(group)
        if not run.overwrite and _finished(job):
            job.draw_only = _plot_missing(job)
            job.status = "pending" if job.draw_only else "skipped"
    sizes = Counter(map(_group, jobs))
    for group, errors in steps_refused.items():
        if len(errors) == sizes[group]:  # the step list fits none of them: the setting, not an instance
            raise SweepError(f"{errors[0]} (and so for every one of the {len(errors)} {group[2]} jobs{_with(group[1])}: "
                             "nothing was launched)")


def _group(job: Job) -> Tuple[Path, str, str]:
    """The jobs that share a results dir, settings and regime: what they share is checked once."""
    return job.results_dir, job.settings, job.run.regime.name


def _with(settings: str) -> str:
    return f" with {settings}" if settings else ""


def _record(job: Job, result: JobReturn, started: float) -> None:
    if result.status == JobStatus.COMPLETED:
        job.status, job.seconds = result.return_value["status"], result.return_value["seconds"]
    elif result.status == JobStatus.FAILED:
        # the job's own exception; not through .return_value, which prints Hydra's "Error executing job"
        err = result._return_value
        job.status, job.error = "failed", (str(err).splitlines() or [type(err).__name__])[0]
    else:  # the launcher has no word from the job (its array task timed out or was killed)
        _settle([job], str(result._return_value), started)


def _settle(batch: List[Job], reason: str, started: float) -> None:
    """A batch whose launch() gave no answer: its jobs that wrote their result since the sweep
    started (or before, when they were to keep it) are done (or extended), with the seconds their
    summary records, the rest lost."""
    for job in batch:
        if _finished(job, since=started if job.run.overwrite else None):
            summary = run_folder.read_result(job.run_dir) or {}
            # extended in this sweep: its summary, written since, names the steps computed then
            job.status = "extended" if "computed_steps" in summary and _finished(job, since=started) else "done"
            job.seconds = summary.get("seconds")
        else:
            job.status, job.error = "lost", reason


def _plot_missing(job: Job) -> bool:
    """A finished job still runs, to draw its figure, with save_timeline_plot and none drawn from its result."""
    return job.run.save_timeline_plot and not run_folder.timeline_plot_current(job.run_dir, job.run.measure.name)


def _finished(job: Job, since: Optional[float] = None) -> bool:
    return run_folder.is_finished(job.run_dir, job.plan.settings, job.plan.inputs, since)


def _write_jobs(jobs: List[Job]) -> None:
    by_dir: Dict[Path, List[Dict[str, Any]]] = defaultdict(list)
    for job in jobs:
        by_dir[job.results_dir].append(job.row())
    for results_dir, rows in by_dir.items():
        try:
            run_folder.update_jobs(results_dir, rows)
        except CannotWrite as err:  # the disk is full or read-only: no job could write its result either
            raise SweepError(str(err)) from None


def _log_progress(jobs: List[Job], n_run: int, n_todo: int, elapsed: float) -> None:
    counts = Counter(job.status for job in jobs)
    eta = elapsed / n_run * (n_todo - n_run) if n_run else 0.0
    log.info(
        "[%d/%d] done %d, %sskipped %d, failed %d, lost %d | %.0f s elapsed, ~%.0f s left",
        len(jobs) - counts["pending"] - counts["running"], len(jobs), counts["done"],
        f"extended {counts['extended']}, " if counts["extended"] else "", counts["skipped"], counts["failed"],
        counts["lost"], elapsed, eta,
    )
