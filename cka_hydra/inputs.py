"""A comparison's inputs: its two instances, their checkpoints, the steps compared and the files
read, worked out from the config and the store's folder listings and checked against the regime,
before anything is computed. Reads no data file but the first step's city lists (the filter's
check), and imports no torch: the sweeper's process works out every job's inputs with it.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cka_hydra.cities import city_list, kept_cities
from cka_hydra.errors import FilterError, InputError
from cka_hydra.filters import CityFilter, parse_filter
from cka_hydra.identity import settings
from cka_hydra.pairs import excluded, instance_name, model_name, shared_tasks
from cka_hydra.registry import Needs
from cka_hydra.schema import DEVICE, RunConfig
from cka_hydra.store import METADATA_FILE, Layout, check_id_kinds, file_stamps, list_checkpoints

log = logging.getLogger(__name__)
# the fewest cities a comparison compares, and a PCA is fitted on
MIN_CITIES = 10


@dataclass(frozen=True)
class Side:
    """One instance (a model at a seed) taking part in a comparison."""

    model: str
    seed: str
    tasks: list[str]
    representations_dir: Path
    folder: str  # the instance's folder below data.root (a stand-in's, where the regime names one)
    excluded: str | None = None  # why the regime leaves it out, when allow_excluded compares it anyway

    @property
    def instance(self) -> str:
        return instance_name(self.model, self.seed)


def sides(run: RunConfig, root: Path) -> tuple[Side, Side]:
    """The two instances the config names, after checking them against the regime."""
    regime, pair, seed_pair = run.regime, run.pair, run.seed_pair
    layout = Layout(regime.original_dir, regime.seed_dir, regime.representations_dir, regime.folders)
    for index in (pair.a, pair.b):
        if index not in regime.models:
            raise InputError(
                f"pair={pair.a}_{pair.b}: regime {regime.name} has no model {index} (it has {sorted(regime.models)})"
            )
    for seed in (seed_pair.a, seed_pair.b):
        if seed not in regime.seeds:
            raise InputError(
                f"seed_pair={seed_pair.a}_{seed_pair.b}: regime {regime.name} has no seed {seed!r} "
                f"(it has {list(regime.seeds)})"
            )
    tasks_a, tasks_b = list(regime.models[pair.a]), list(regime.models[pair.b])
    shared = shared_tasks(tasks_a, tasks_b)
    if pair.a != pair.b and shared and not run.allow_overlap:
        raise InputError(
            f"pair={pair.a}_{pair.b}: {model_name(regime.name, pair.a)} and {model_name(regime.name, pair.b)} "
            f"share the training task {', '.join(shared)}; set allow_overlap=true to compare them anyway"
        )

    def side(index: int, seed: str, tasks: list[str], layer: int) -> Side:
        model = model_name(regime.name, index)
        left_out = excluded(regime.exclude, regime.name, index, seed)
        if left_out and not run.allow_excluded:
            raise InputError(f"{instance_name(model, seed)}: regime {regime.name} excludes {left_out} "
                             f"({regime.exclude[left_out]}); set allow_excluded=true to compare it anyway")
        return Side(model, seed, tasks, layout.representations_path(root, model, seed, tasks[0], layer),
                    layout.instance_dir(model, seed), regime.exclude[left_out] if left_out else None)

    return side(pair.a, seed_pair.a, tasks_a, run.layer), side(pair.b, seed_pair.b, tasks_b, run.layer_b)


class StepsError(InputError):
    """A list of steps that the two instances do not both hold: the setting's fault when it
    fits no job of a sweep, one instance's when only its jobs fail."""


def select_steps(spec: str | list[int], steps_a: Sequence[int], steps_b: Sequence[int], a: str, b: str) -> list[int]:
    """The checkpoint steps to compare: `final`, `all`, or a list of steps both sides hold."""
    common = sorted(set(steps_a) & set(steps_b))
    if not common:
        raise InputError(f"{a} and {b} share no checkpoint step: {a} has {list(steps_a)}, {b} has {list(steps_b)}")
    if spec == "final":
        return [common[-1]]
    if spec == "all":
        return common
    missing = [s for s in spec if s not in common]
    if missing:
        raise StepsError(f"checkpoints: steps {missing} are not held by both {a} and {b}; common steps: {common}")
    return list(spec)


@dataclass(frozen=True)
class PCASpec:
    """Each instance's PCA, for the measures on principal components: fitted on the cities
    `fit` keeps, applied to all, `components` kept."""

    fit: CityFilter
    components: int


@dataclass(frozen=True)
class Inputs:
    """What a job will compute, known from the config and folder listings alone."""

    a: Side
    b: Side
    root: Path
    city_filter: CityFilter
    pca: PCASpec | None
    checkpoints_a: dict[int, Path]
    checkpoints_b: dict[int, Path]
    steps: list[int]
    # the settings that decide the result (identity.settings), and the record of the inputs they
    # select (folders, steps, each file's stamp: summary.json's "inputs")
    settings: dict[str, Any]
    record: dict[str, Any]


def read_inputs(run: RunConfig, root: Path) -> Inputs:
    """Check the config against the regime and the folders of the store at root, and list what
    the job will compare. Reads folder listings only, no data file."""
    a, b = sides(run, root)
    checkpoints_a = _checkpoints(a, run)
    try:
        checkpoints_b = _checkpoints(b, run)
    except InputError as err:
        if run.layer_b == run.layer:
            raise
        raise type(err)(f"layer_b={run.layer_b}: {err}") from None
    steps = select_steps(run.checkpoints, list(checkpoints_a), list(checkpoints_b), a.instance, b.instance)
    # what the result is of, below the data root: a store that moves keeps its results, and a
    # result whose files changed since is stale
    record = {"representations_a": a.representations_dir.relative_to(root).as_posix(),
              "representations_b": b.representations_dir.relative_to(root).as_posix(), "steps": steps,
              "files": file_stamps(root, [checkpoints[step] for step in steps
                                          for checkpoints in (checkpoints_a, checkpoints_b)])}
    pca = None
    if run.measure.registered.needs is Needs.pca_scores:
        # named as the user set it: a city_filter that keeps too few for a PCA is city_filter's fault
        setting = "measure.pca_filter" + (" (following city_filter)" if run.measure.pca_filter == run.city_filter
                                          else "")
        pca = PCASpec(parse_filter(run.measure.pca_filter, setting), run.measure.components)
    return Inputs(a, b, root, parse_filter(run.city_filter), pca, checkpoints_a, checkpoints_b, steps,
                   settings(run), record)


def _checkpoints(side: Side, run: RunConfig) -> dict[int, Path]:
    """A side's checkpoints (up to until_step); a missing folder that the regime's `folders` named says so."""
    try:
        checkpoints = list_checkpoints(side.representations_dir)
    except InputError as err:
        if side.instance in run.regime.folders:
            raise type(err)(f"{err}; regime {run.regime.name}'s folders names it: {side.instance}: "
                            f"{run.regime.folders[side.instance]}") from None
        raise
    if run.until_step is None:
        return checkpoints
    kept = {step: folder for step, folder in checkpoints.items() if step <= run.until_step}
    if not kept:
        raise InputError(f"until_step={run.until_step}: {side.representations_dir} has no checkpoint at or before it "
                         f"(its steps: {list(checkpoints)})")
    return kept


def check_city_filter(inputs: Inputs) -> None:
    """Refuse a filter field that no city of the job's first step has, in city_filter or
    measure.pca_filter, a PCA filter that keeps fewer cities than the PCA needs, and city lists
    whose ids are of different kinds; log each filter term that keeps no city of either side
    (reads the first step's metadata only)."""
    step = inputs.steps[0]
    city_lists = []
    for side, checkpoints in ((inputs.a, inputs.checkpoints_a), (inputs.b, inputs.checkpoints_b)):
        city_lists.append(city_list(checkpoints[step]).cities)
        kept = kept_cities(checkpoints[step], inputs.city_filter)
        if len(kept.rows) < MIN_CITIES:
            raise FilterError(f"{inputs.city_filter.setting} keeps {len(kept.rows)} of {side.instance}'s "
                              f"{kept.n_cities} cities at step {step}: a comparison needs at least {MIN_CITIES}")
        if inputs.pca is not None:
            check_pca_cities(inputs.pca, len(kept_cities(checkpoints[step], inputs.pca.fit).rows), kept.n_cities,
                             side.instance, step)
    # the PCA filter when it is another than city_filter (one that follows it is the same filter)
    city_filters = [inputs.city_filter, *([inputs.pca.fit] if inputs.pca and inputs.pca.fit != inputs.city_filter else [])]
    for city_filter in city_filters:
        for term in city_filter.dead_terms(*city_lists):
            log.warning("%s: the term %r keeps no city of %s or %s at step %d (a typo?)", city_filter.setting, term,
                        inputs.a.instance, inputs.b.instance, step)
    check_id_kinds(*(kept_cities(checkpoints[step], inputs.city_filter).kinds
                     for checkpoints in (inputs.checkpoints_a, inputs.checkpoints_b)),
                   str(inputs.checkpoints_a[step] / METADATA_FILE), str(inputs.checkpoints_b[step] / METADATA_FILE))


def check_pca_cities(pca: PCASpec, kept: int, of: int, instance: str, step: int) -> None:
    """Refuse a PCA fitted on fewer cities than MIN_CITIES or than its components."""
    needed = max(MIN_CITIES, pca.components)
    if kept < needed:
        raise FilterError(f"{pca.fit.setting} keeps {kept} of {instance}'s {of} cities at step {step}: a PCA of "
                          f"measure.components={pca.components} is fitted on at least {needed}")




def check_device(spec: str) -> None:
    """Refuse a GPU that torch does not see. (`auto` and `cpu` need no torch to check.)"""
    match = DEVICE.fullmatch(spec)
    if match is None:
        raise InputError(f"device={spec}: expected auto, cpu, cuda or cuda:N")
    if spec.startswith("cuda"):
        import torch

        count = torch.cuda.device_count()
        if int(match.group(1) or 0) >= count:
            raise InputError(f"device={spec}: torch sees {count} CUDA device(s)")
