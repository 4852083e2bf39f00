"""Which comparisons a sweep runs: the rule code, against counts derived here by hand."""

import pytest
from conftest import DISJOINT

from cka_hydra.demo import load_regime
from cka_hydra.pairs import (
    SeedPolicy, instance_name, model_name, valid_comparisons, seed_pairs, shared_tasks,
)

# The task tables of regimes.md, written out again so the shipped YAML is checked too.
TASKS = {
    "pt1": {i: [t] for i, t in enumerate(
        ["distance", "trianglearea", "angle", "compass", "inside", "perimeter", "crossing"], 1)},
    "pt2": {1: ["distance", "trianglearea"], 2: ["angle", "compass"], 3: ["inside", "perimeter"],
            4: ["crossing", "distance"], 5: ["trianglearea", "angle"], 6: ["compass", "inside"],
            7: ["perimeter", "crossing"]},
    "pt3": {1: ["distance", "trianglearea", "angle"], 2: ["compass", "inside", "perimeter"],
            3: ["crossing", "distance", "trianglearea"], 4: ["angle", "compass", "inside"],
            5: ["perimeter", "crossing", "distance"], 6: ["trianglearea", "angle", "compass"],
            7: ["inside", "perimeter", "crossing"]},
}
SEEDS = ["orig", "1", "2"]
LAYERS = [3, 4, 5, 6]


def valid(regime, policy=SeedPolicy.study, layers=LAYERS, pairs=None, self_pairs=False, seed_list=None):
    seed_list = seed_list or seed_pairs(policy, SEEDS)
    return valid_comparisons(regime, TASKS[regime], layers, seed_list, pairs, self_pairs)


@pytest.mark.parametrize("regime", ["pt1", "pt2", "pt3"])
def test_shipped_regimes_match_the_tables(regime):
    data = load_regime(regime)
    assert data["name"] == regime
    assert data["models"] == TASKS[regime]
    assert data["seeds"] == SEEDS


def test_names():
    assert model_name("pt2", 1) == "pt2-1"
    assert instance_name("pt2-1", "orig") == "pt2-1"
    assert instance_name("pt2-1", "2") == "pt2-1_seed2"
    assert shared_tasks(["a", "b", "c"], ["c", "x", "a"]) == ["a", "c"]


@pytest.mark.parametrize("regime", ["pt1", "pt2", "pt3"])
def test_only_disjoint_pairs_are_planned(regime):
    jobs, removed = valid(regime)
    assert sorted({(j.a, j.b) for j in jobs}) == DISJOINT[regime]
    assert removed["shared training task"] == (21 - len(DISJOINT[regime])) * 3 * 4


def test_the_study_is_252_jobs():
    pt2, _ = valid("pt2")
    pt3, _ = valid("pt3")
    pt1, _ = valid("pt1")
    assert (len(pt2), len(pt3), len(pt2) + len(pt3)) == (168, 84, 252)
    assert len(pt1) == 252
    assert {j.seed_pair for j in pt2} == {"orig_1", "orig_2", "1_2"}


@pytest.mark.parametrize(
    "policy, per_pair",
    [
        (SeedPolicy.study, 3),  # unordered pairs of different seeds: C(3, 2)
        (SeedPolicy.cross, 6),  # ordered pairs of different seeds: 3 * 2
        (SeedPolicy.all, 9),  # every ordered pair: 3 * 3
        (SeedPolicy.same, 3),  # one per seed
    ],
)
def test_seed_policies_between_different_models(policy, per_pair):
    for regime in TASKS:
        jobs, _ = valid(regime, policy)
        assert len(jobs) == len(DISJOINT[regime]) * per_pair * 4


@pytest.mark.parametrize(
    "policy, per_model",
    [
        (SeedPolicy.study, 3),  # orig-1, orig-2, 1-2
        (SeedPolicy.cross, 3),  # 6 ordered, each instance pair twice
        (SeedPolicy.all, 6),  # 3 cross-seed + 3 instance-with-itself
        (SeedPolicy.same, 3),  # each instance with itself
    ],
)
def test_self_pairs_add_each_model_against_itself_once_per_instance_pair(policy, per_model):
    with_self, _ = valid("pt2", policy, self_pairs=True)
    without, _ = valid("pt2", policy)
    assert len(with_self) - len(without) == 7 * per_model * 4


def test_full_pt1_instance_matrix_is_one_option():
    jobs, removed = valid("pt1", SeedPolicy.matrix, layers=[5], self_pairs=True)
    # 21 instances: 21 * 20 / 2 distinct pairs + 21 instances with themselves
    assert len(jobs) == 231
    assert removed == {"shared training task": 0, "same comparison twice": 21}


@pytest.mark.parametrize("policy", list(SeedPolicy))
def test_no_comparison_is_planned_twice(policy):
    for regime in TASKS:
        jobs, _ = valid(regime, policy, self_pairs=True)
        keys = [(frozenset({(j.a, j.seed_a), (j.b, j.seed_b)}), j.layer) for j in jobs]
        assert len(keys) == len(set(keys))


def test_narrowing():
    jobs, _ = valid("pt2", layers=[5])
    assert len(jobs) == 14 * 3
    jobs, _ = valid("pt2", layers=[3, 6], pairs=[(1, 2), (2, 3)])
    assert len(jobs) == 2 * 3 * 2
    jobs, _ = valid("pt3", seed_list=[("orig", "1")])
    assert len(jobs) == 7 * 4
    assert {j.seed_pair for j in jobs} == {"orig_1"}


def test_a_requested_pair_that_shares_a_task_is_never_planned():
    jobs, removed = valid("pt2", pairs=[(1, 2), (1, 4)], layers=[5])
    assert {(j.a, j.b) for j in jobs} == {(1, 2)}
    assert removed["shared training task"] == 3
