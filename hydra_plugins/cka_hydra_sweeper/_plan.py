"""Planning a sweep: the valid jobs of each regime and combination of settings, each checked
before anything launches.

The jobs are the valid comparisons (`cka_hydra.pairs`, applied to each regime's data) times
every combination of the other swept settings, as Hydra's basic sweeper would form them. Each
regime and combination is composed once; nothing here composes a job to test it. What a job is
and whether it is done are cka_hydra's (identity, lifecycle).
"""

import dataclasses
import itertools
import logging
import math
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Dict, List, Tuple

from cka_hydra import lifecycle
from cka_hydra.errors import FilterError, InputError
from cka_hydra.identity import data_root_text, default_settings, demo_store, describe, settings, subdir
from cka_hydra.inputs import StepsError, check_city_filter
from cka_hydra.pairs import SeedPolicy, valid_comparisons, seed_pairs, shared_tasks
from cka_hydra.regime_files import check_regime_file
from cka_hydra.schema import PairConfig, SeedPairConfig, run_config
from cka_hydra.store import MissingFolder

from ._jobs import Job, SweepError, finished, plot_missing
from ._parse import index_pair, second_layers

log = logging.getLogger(__name__)


def plan_jobs(sweeper: Any, choices: Dict[str, List[str]], swept: List[List[str]], fixed: List[str]) -> List[Job]:
    runtime_choices = sweeper.config.hydra.runtime.choices
    regimes = choices.get("regime", [runtime_choices.regime])
    layers = [int(layer) for layer in choices.get("layer", [runtime_choices.layer])]
    layers_b = second_layers(choices.get("layer_b"))
    pairs = None
    if "pair" in choices:
        pairs = [(int(a), int(b)) for a, b in (index_pair(p, "pair") for p in choices["pair"])]
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
            seed_list = [index_pair(s, "seed_pair") for s in choices["seed_pair"]]
        else:
            seed_list = seed_pairs(sweeper.seed_policy, seeds)
        for name, what, values, known in (("pair", "model", pairs or [], models),
                                          ("seed_pair", "seed", seed_list, seeds)):
            missing = sorted({str(v) for v in itertools.chain(*values)} - {str(k) for k in known})
            if missing:
                raise SweepError(f"{name}: regime {regime} has no {what} {', '.join(missing)} "
                                 f"(it has {', '.join(map(str, known))})")
        exclude = {} if base.allow_excluded else base.regime.exclude
        comparisons, removed = valid_comparisons(regime, models, layers, seed_list, pairs, self_pairs, layers_b,
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
                            subdir(c, job_settings, defaults), describe(job_settings, defaults)))
    if not jobs:
        raise SweepError("no valid comparison in this sweep: every candidate was removed by the rules above "
                         "(two models that share a training task are compared only with allow_overlap=true)")
    log.info("sweep: %d jobs%s", len(jobs), f" ({len(jobs) // max(1, _n_combinations(swept))} comparisons x "
             f"{_n_combinations(swept)} settings)" if swept else "")
    _refuse_duplicates(jobs)
    return jobs


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
            if not differ:  # regime=pt1,pt1: the same value listed twice
                raise SweepError(f"two jobs would compute the same result into {job.run_dir}: a value is listed "
                                 f"twice in the sweep ({' '.join(job.overrides)}); list each value once")
            raise SweepError(
                f"two jobs would compute the same result into {job.run_dir}: {' '.join(other.overrides)} and "
                f"{' '.join(job.overrides)}: {', '.join(differ)} cannot change it. Sweep only values that change "
                "the result; sweep a setting that only some options use (measure.components with measure=cka, "
                "cka.sigma_frac with the linear kernel) in a sweep of those options alone"
            )


def check_jobs(jobs: List[Job], write_demo_store: bool) -> None:
    """Check what every job needs before launching any: what all jobs of a regime and settings
    share stops the sweep with one message; a job's own missing input fails that job alone.
    Without write_demo_store (a dry run), jobs on a demo store not yet written stay unchecked."""
    roots: Dict[Path, set] = defaultdict(set)
    for job in jobs:
        roots[job.results_dir].add(job.run.data.root)
    for results_dir, data_roots in roots.items():
        if len(data_roots) > 1:
            raise SweepError(f"{results_dir}: a results dir holds one data root's results, not "
                             f"{', '.join(map(data_root_text, data_roots))}: run one sweep per data root")

    roots_of: Dict[Tuple, Path] = {}  # per group, its store's folder (checked once)
    filter_checked = set()
    # per group, the failures before launch that are the setting's when every job of it has one: a
    # list of steps no job holds, a folder no job finds (the regime's templates)
    refused: Dict[Tuple, List[str]] = defaultdict(list)
    for job in jobs:
        run = job.run
        group = _group(job)
        try:
            if run.data.root is None and not demo_store(job.results_dir).is_dir() and not write_demo_store:
                continue
            if group not in roots_of:
                roots_of[group] = lifecycle.check_setup(run, job.results_dir)
        except InputError as err:
            raise SweepError(str(err)) from None
        try:
            job.inputs = lifecycle.check_job(run, job.run_dir, roots_of[group])
        except InputError as err:
            job.status, job.error = "failed", str(err)
            if isinstance(err, (StepsError, MissingFolder)):
                refused[group].append(str(err))
            continue
        if group not in filter_checked:  # on the first job of the group whose inputs can be read
            try:
                check_city_filter(job.inputs)
            except FilterError as err:  # the setting: every job of the group would fail
                raise SweepError(str(err)) from None
            except InputError as err:  # this job's file: it fails alone, the next job checks the filter
                job.status, job.error = "failed", str(err)
                continue
            filter_checked.add(group)
        if not run.overwrite and finished(job):
            job.draw_only = plot_missing(job)
            job.status = "pending" if job.draw_only else "skipped"
    sizes = Counter(map(_group, jobs))
    for group, errors in refused.items():
        if len(errors) == sizes[group]:  # none of them: the setting or the templates, not an instance
            raise SweepError(f"{errors[0]} (and so for every one of the {len(errors)} {group[2]} jobs{_with(group[1])}: "
                             "nothing was launched)")


def _group(job: Job) -> Tuple[Path, str, str]:
    """The jobs that share a results dir, settings and regime: what they share is checked once."""
    return job.results_dir, job.settings, job.run.regime.name


def _with(settings: str) -> str:
    return f" with {settings}" if settings else ""
