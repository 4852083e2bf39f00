"""Names of models and instances, and which of them may be compared.

Plain functions of a regime's data (model index -> training tasks, seed labels):
no files, no Hydra.
"""

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

ORIGINAL_SEED = "orig"


def model_name(regime: str, index: int) -> str:
    """`pt2`, 1 -> `pt2-1`."""
    return f"{regime}-{index}"


def instance_name(model: str, seed: str) -> str:
    """A model at a seed, as the store and result folders name it: `pt2-1`, `pt2-1_seed1`."""
    return model if seed == ORIGINAL_SEED else f"{model}_seed{seed}"


def regime_instances(regime: str, models: Iterable[int], seeds: Sequence[str]) -> set[str]:
    """The names of every instance of a regime: `pt1-5`, `pt1-5_seed2`, ..."""
    return {instance_name(model_name(regime, index), seed) for index in models for seed in seeds}


def excluded(exclude: Mapping[str, str], regime: str, index: int, seed: str) -> str | None:
    """The name under which a regime's `exclude` leaves out model `index` at `seed` (the model's
    own name leaves out every seed), or None."""
    model = model_name(regime, index)
    for name in (instance_name(model, seed), model):
        if name in exclude:
            return name
    return None


def shared_tasks(tasks_a: Sequence[str], tasks_b: Sequence[str]) -> list[str]:
    """The training tasks two models have in common, in the order of the first model's list."""
    return [task for task in tasks_a if task in set(tasks_b)]


class SeedPolicy(Enum):
    """Which seed pairs (first model's seed, second model's seed) a sweep compares."""

    study = "study"  # each unordered pair of different seeds once: orig_1, orig_2, 1_2
    cross = "cross"  # every ordered pair of different seeds: orig_1, 1_orig, ...
    all = "all"  # all ordered pairs, same seeds included
    same = "same"  # orig_orig, 1_1, 2_2
    matrix = "matrix"  # the full instance matrix: `all`, with every model against itself


def seed_pairs(policy: SeedPolicy, seeds: Sequence[str]) -> list[tuple[str, str]]:
    """The seed pairs a policy selects, in the order of the regime's seed list."""
    ordered = list(itertools.product(seeds, repeat=2))
    if policy is SeedPolicy.study:
        return list(itertools.combinations(seeds, 2))
    if policy is SeedPolicy.cross:
        return [(a, b) for a, b in ordered if a != b]
    if policy is SeedPolicy.same:
        return [(s, s) for s in seeds]
    return ordered


@dataclass(frozen=True)
class Comparison:
    """One job of a sweep: model a at seed_a and layer against model b at seed_b and layer_b."""

    regime: str
    a: int
    b: int
    seed_a: str
    seed_b: str
    layer: int
    layer_b: int

    @property
    def pair(self) -> str:
        return f"{self.a}_{self.b}"

    @property
    def seed_pair(self) -> str:
        return f"{self.seed_a}_{self.seed_b}"


def valid_comparisons(
    regime: str,
    models: Mapping[int, Sequence[str]],
    layers: Sequence[int],
    seed_pair_list: Sequence[tuple[str, str]],
    pairs: Sequence[tuple[int, int]] | None = None,
    self_pairs: bool = False,
    layers_b: Sequence[int] | None = None,
    exclude: Mapping[str, str] | None = None,
    allow_overlap: bool = False,
) -> tuple[list[Comparison], dict[str, int]]:
    """Every valid comparison of one regime, and how many candidates each rule removed.

    Candidates are the model pairs (all a < b, or those `pairs` names; with `self_pairs`, each
    of their models with itself too) times the seed pairs times the layer pairs: each layer with
    itself, or with each of `layers_b` (the second model's layers: a layer map). Rules, in order:
    - "shared training task": two different models that share a task are never compared
      (unless allow_overlap);
    - "excluded NAME (REASON)": an instance that `exclude` (a regime's entries: model or
      instance name -> reason) leaves out is never compared;
    - "same comparison twice": every measure is symmetric, so an unordered pair of
      (model, seed, layer) is compared once (this only bites a model paired with itself;
      model 1 at layer 3 against model 2 at layer 5 is another comparison than 2 at 3 against 1 at 5).
    """
    if pairs is None:
        indices = sorted(models)
        pairs = [(a, b) for a in indices for b in indices if a < b or (self_pairs and a == b)]
    elif self_pairs:  # each named model with itself as well, after the pairs that name it
        pairs = list(dict.fromkeys([*pairs, *((m, m) for pair in pairs for m in pair)]))
    layer_pairs = ([(layer, layer) for layer in layers] if layers_b is None
                   else list(itertools.product(layers, layers_b)))
    exclude = exclude or {}
    removed = {"shared training task": 0, **{f"excluded {name} ({reason})": 0 for name, reason in exclude.items()},
               "same comparison twice": 0}
    seen: set[frozenset[tuple[int, str, int]]] = set()
    kept = []
    for (a, b), (seed_a, seed_b), (layer, layer_b) in itertools.product(pairs, seed_pair_list, layer_pairs):
        sides = frozenset({(a, seed_a, layer), (b, seed_b, layer_b)})
        left_out = excluded(exclude, regime, a, seed_a) or excluded(exclude, regime, b, seed_b)
        if a != b and not allow_overlap and shared_tasks(models[a], models[b]):
            removed["shared training task"] += 1
        elif left_out:
            removed[f"excluded {left_out} ({exclude[left_out]})"] += 1
        elif sides in seen:
            removed["same comparison twice"] += 1
        else:
            seen.add(sides)
            kept.append(Comparison(regime, a, b, seed_a, seed_b, layer, layer_b))
    return kept, removed
