"""A timeline's values are the same whether its steps are stacked into batches or not."""

import functools

import pytest
import torch

from cka_hydra.cka import UndefinedMeasureError, linear_cka, rbf_cka, timeline


def steps(n_steps=7, n=40):
    g = torch.Generator().manual_seed(0)
    pairs = []
    for i in range(n_steps):
        x = torch.randn(n, 6, generator=g)
        pairs.append((x, (i / n_steps) * x[:, :3] + torch.randn(n, 3, generator=g)))
    return pairs


@pytest.mark.parametrize("estimate", [linear_cka, functools.partial(linear_cka, debiased=True),
                                      functools.partial(rbf_cka, sigma_frac=0.5)])
def test_batched_equals_step_by_step(estimate):
    pairs = steps()
    one_by_one = [float(estimate(x, y)) for x, y in pairs]
    step_bytes = 8 * 40 * 9
    for budget in (0, 3 * step_bytes, 2**30):
        assert timeline(estimate, pairs, budget) == pytest.approx(one_by_one, abs=1e-14)


def test_steps_with_other_cities_are_not_stacked_together():
    pairs = steps()
    pairs[3] = (pairs[3][0][:30], pairs[3][1][:30])
    expected = [float(linear_cka(x, y)) for x, y in pairs]
    assert timeline(linear_cka, pairs, 2**30) == pytest.approx(expected, abs=1e-14)


@pytest.mark.parametrize("budget", [0, 8 * 40 * 9 * 2, 2**30])
def test_an_undefined_value_names_its_step(budget):
    pairs = steps()
    pairs[5] = (torch.ones(40, 6), pairs[5][1])
    with pytest.raises(UndefinedMeasureError) as err:
        timeline(linear_cka, pairs, budget)
    assert err.value.index == 5
