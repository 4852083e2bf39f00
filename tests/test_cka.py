"""The estimators against independent implementations and against their mathematical properties.

Independent implementations: ckatorch (a torch port of Kornblith et al.'s reference code)
and, below, a numpy transcription of the reference's Gram route with numpy's median.
"""

import ckatorch
import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from conftest import reference_cka, reference_rbf_cka

from cka_hydra.cka import (
    UndefinedMeasureError, bootstrap_interval, gram_cka, linear_cka, linear_kernel,
    median_squared_distance, rbf_cka,
)


def ckatorch_cka(x, y, **kwargs):
    return float(ckatorch.core.cka_base(torch.as_tensor(x), torch.as_tensor(y), **kwargs))


# --- data ---

def random_pair(rng, n, d1, d2, shared=0.5, offset=0.0):
    base = rng.normal(size=(n, 5))
    x = base @ rng.normal(size=(5, d1)) + rng.normal(size=(n, d1)) + offset
    y = shared * base @ rng.normal(size=(5, d2)) + rng.normal(size=(n, d2)) - offset
    return x, y


def structured_pair(rng, n, d1, d2):
    """Low rank, large per-feature offsets, a nonlinear relation between the sides."""
    z = rng.uniform(-2, 2, size=(n, 2))
    x = np.tanh(z @ rng.normal(size=(2, d1))) + rng.normal(size=d1) * 50
    y = np.sin(3 * z) @ rng.normal(size=(2, d2)) + 0.05 * rng.normal(size=(n, d2)) + 7
    return x, y


DATASETS = [
    ("random", 4, 3, 5), ("random", 5, 7, 2), ("random", 51, 10, 3), ("random", 300, 32, 64),
    ("random", 5000, 12, 8), ("structured", 9, 6, 4), ("structured", 200, 40, 12), ("structured", 2001, 16, 24),
]


def dataset(kind, n, d1, d2):
    rng = np.random.default_rng([n, d1, d2])
    return random_pair(rng, n, d1, d2, offset=3.0) if kind == "random" else structured_pair(rng, n, d1, d2)


def t(a):
    return torch.from_numpy(np.ascontiguousarray(a))


# --- agreement with independent implementations ---

@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("kind, n, d1, d2", DATASETS)
def test_linear_matches_ckatorch_and_the_reference(kind, n, d1, d2, debiased):
    if debiased and n < 4:
        pytest.skip("debiased CKA needs n >= 4")
    x, y = dataset(kind, n, d1, d2)
    got = linear_cka(t(x), t(y), debiased=debiased)
    assert got.dtype == torch.float64
    assert float(got) == pytest.approx(ckatorch_cka(x, y, unbiased=debiased), abs=1e-9)
    if n <= 2001:
        assert float(got) == pytest.approx(reference_cka(x, y, debiased), abs=1e-9)


@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("kind, n, d1, d2", [d for d in DATASETS if d[1] <= 2001])
def test_rbf_matches_the_reference(kind, n, d1, d2, debiased):
    x, y = dataset(kind, n, d1, d2)
    got = float(rbf_cka(t(x), t(y), sigma_frac=0.5, debiased=debiased, block_size=64))
    assert got == pytest.approx(reference_rbf_cka(x, y, 0.5, debiased), abs=1e-9)
    if n % 2:
        # n^2 odd: one middle value, so torch.median (the lower middle) and numpy's median agree
        assert got == pytest.approx(ckatorch_cka(x, y, kernel="rbf", threshold=0.5, unbiased=debiased), abs=1e-9)


def test_rbf_differs_from_ckatorch_only_by_its_median_convention():
    """For even n, ckatorch's torch.median takes the lower middle value where numpy averages the
    two; the bandwidth then differs slightly, and so does CKA: 1e-3 covers n >= 200 here."""
    x, y = dataset("random", 300, 32, 64)
    for debiased in (False, True):
        ours = float(rbf_cka(t(x), t(y), 0.5, debiased))
        assert ours == pytest.approx(ckatorch_cka(x, y, kernel="rbf", threshold=0.5, unbiased=debiased), abs=1e-3)


@pytest.mark.parametrize("debiased", [False, True])
def test_feature_space_and_gram_route_agree(debiased):
    x, y = dataset("structured", 200, 40, 12)
    xc, yc = t(x - x.mean(0)), t(y - y.mean(0))
    gram = gram_cka(linear_kernel(xc), linear_kernel(yc), 200, debiased, block_size=33)
    assert float(gram) == pytest.approx(float(linear_cka(t(x), t(y), debiased)), abs=1e-12)


@pytest.mark.parametrize("n", [5, 6, 64, 65])
def test_median_squared_distance_is_numpys_over_all_n_squared_pairs(n):
    x = t(np.random.default_rng(n).normal(size=(n, 3)))
    full = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1).numpy()
    assert float(median_squared_distance(x, block_size=7)) == pytest.approx(np.median(full), rel=1e-12)


def test_block_size_does_not_change_rbf():
    x, y = dataset("random", 300, 32, 64)
    values = {round(float(rbf_cka(t(x), t(y), 0.4, block_size=b)), 12) for b in (1, 17, 300, 4096)}
    assert len(values) == 1


# --- precision ---

@pytest.mark.parametrize("offset", [1e3, 1e4])
@pytest.mark.parametrize("estimator", [
    lambda x, y: linear_cka(x, y), lambda x, y: linear_cka(x, y, debiased=True), lambda x, y: rbf_cka(x, y, 0.4),
])
def test_float32_input_with_a_large_offset(offset, estimator):
    rng = np.random.default_rng(2)
    x, y = random_pair(rng, 1000, 64, 48)
    shifted = [m + offset * rng.uniform(0.5, 1.5, size=m.shape[1]) for m in (x, y)]
    x32, y32 = (torch.from_numpy(m).float() for m in shifted)
    # exactly the stored float32 values, offset removed in float64: our result must not see the offset
    exact = float(estimator(*(m.double() - torch.from_numpy(o).mean(0) for m, o in zip((x32, y32), shifted))))
    assert float(estimator(x32, y32)) == pytest.approx(exact, abs=1e-10)
    # and the offset costs only float32 storage's rounding of the features (~offset * 6e-8)
    assert float(estimator(x32, y32)) == pytest.approx(float(estimator(t(x), t(y))), abs=1e-4)


def test_float32_precision_error_is_small():
    x, y = random_pair(np.random.default_rng(3), 4500, 256, 256)
    x32, y32 = t(x + 1e3).float(), t(y).float()
    exact = float(linear_cka(x32, y32))
    assert float(linear_cka(x32, y32, dtype=torch.float32)) == pytest.approx(exact, abs=1e-5)
    assert float(linear_cka(x32, y32, debiased=True, dtype=torch.float32)) == pytest.approx(
        float(linear_cka(x32, y32, debiased=True)), abs=1e-5)


# --- properties ---

def matrices(n, d):
    return arrays(np.float64, (n, d), elements=st.integers(-50, 50).map(float))


@st.composite
def pairs(draw):
    n = draw(st.integers(4, 24))
    x = draw(matrices(n, draw(st.integers(1, 6))))
    y = draw(matrices(n, draw(st.integers(1, 6))))
    assume(np.ptp(x, axis=0).any() and np.ptp(y, axis=0).any())  # constant: CKA undefined
    return x, y


ESTIMATORS = {
    "linear": lambda x, y: linear_cka(x, y),
    "rbf": lambda x, y: rbf_cka(x, y, 0.8),
}


def undefined_or(estimator, x, y):
    try:
        return float(estimator(t(x), t(y)))
    except UndefinedMeasureError:  # e.g. rbf when most pairs of rows coincide
        assume(False)


@settings(max_examples=60, deadline=None)
@given(pairs(), st.sampled_from(list(ESTIMATORS)))
def test_symmetric_and_one_with_itself(pair, name):
    x, y = pair
    value = undefined_or(ESTIMATORS[name], x, y)
    assert value == pytest.approx(undefined_or(ESTIMATORS[name], y, x), abs=1e-9)
    assert undefined_or(ESTIMATORS[name], x, x) == pytest.approx(1.0, abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(pairs(), st.sampled_from(list(ESTIMATORS)), st.floats(1e-3, 1e3), st.integers(0, 2**32 - 1))
def test_invariant_to_orthogonal_maps_isotropic_scaling_and_row_permutation(pair, name, scale, seed):
    x, y = pair
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(x.shape[1], x.shape[1])))
    perm = rng.permutation(x.shape[0])
    value = undefined_or(ESTIMATORS[name], x, y)
    assert undefined_or(ESTIMATORS[name], x @ q, y) == pytest.approx(value, abs=1e-9)
    assert undefined_or(ESTIMATORS[name], x, scale * y) == pytest.approx(value, abs=1e-9)
    assert undefined_or(ESTIMATORS[name], x[perm], y[perm]) == pytest.approx(value, abs=1e-9)


@settings(max_examples=100, deadline=None)
@given(pairs())
def test_biased_linear_is_in_the_unit_interval(pair):
    value = undefined_or(ESTIMATORS["linear"], *pair)
    assert -1e-12 <= value <= 1 + 1e-12


def test_not_invariant_to_a_general_invertible_map():
    rng = np.random.default_rng(5)
    x, y = random_pair(rng, 120, 8, 8)
    stretch = np.diag([100.0, 1, 1, 1, 1, 1, 1, 1])  # invertible, not orthogonal
    assert abs(float(linear_cka(t(x), t(y))) - float(linear_cka(t(x @ stretch), t(y)))) > 0.05


def test_zero_for_unrelated_centred_signals():
    x = torch.tensor([[1.0], [-1.0], [1.0], [-1.0]])
    y = torch.tensor([[1.0], [1.0], [-1.0], [-1.0]])
    assert float(linear_cka(x, y)) == 0.0


def test_debiased_can_be_slightly_negative_for_unrelated_data():
    rng = np.random.default_rng(7)
    values = [float(linear_cka(t(rng.normal(size=(40, 3))), t(rng.normal(size=(40, 3))), debiased=True))
              for _ in range(50)]
    assert min(values) < 0 < max(values)
    assert all(abs(v) < 0.3 for v in values)


# --- batches, errors ---

def test_batched_values_equal_one_by_one():
    rng = np.random.default_rng(8)
    xs, ys = zip(*(random_pair(rng, 50, 6, 4, shared=s) for s in (0.1, 1.0, 3.0)))
    bx, by = t(np.stack(xs)), t(np.stack(ys))
    for estimator in (lambda x, y: linear_cka(x, y), lambda x, y: linear_cka(x, y, debiased=True),
                      lambda x, y: rbf_cka(x, y, 0.4)):
        batched = estimator(bx, by)
        assert batched.shape == (3,)
        for i in range(3):
            assert float(batched[i]) == pytest.approx(float(estimator(t(xs[i]), t(ys[i]))), abs=1e-14)


@pytest.mark.parametrize("constant", [0.0, 0.1, 1234.5])
@pytest.mark.parametrize("estimator", [linear_cka, lambda x, y: linear_cka(x, y, debiased=True), rbf_cka])
def test_constant_representation_is_an_error_not_nan_or_zero(constant, estimator):
    y = torch.randn(20, 3)
    with pytest.raises(UndefinedMeasureError, match="first representation is constant"):
        estimator(torch.full((20, 4), constant), y)
    with pytest.raises(UndefinedMeasureError, match="second representation is constant"):
        estimator(y, torch.full((20, 4), constant, dtype=torch.float32))


def test_batch_error_names_the_item():
    x = torch.randn(3, 20, 4)
    x[1] = 7.0
    for estimator in (linear_cka, rbf_cka):
        with pytest.raises(UndefinedMeasureError) as err:
            estimator(x, torch.randn(3, 20, 2))
        assert err.value.index == 1


def test_rbf_bandwidth_undefined_when_most_rows_coincide():
    x = torch.zeros(10, 2)
    x[0] = 1.0  # not constant, but the median squared distance is 0
    with pytest.raises(UndefinedMeasureError, match="median squared distance between examples is 0"):
        rbf_cka(x, torch.randn(10, 2))


def test_bad_shapes():
    with pytest.raises(ValueError, match="same n"):
        linear_cka(torch.randn(10, 3), torch.randn(11, 3))
    with pytest.raises(ValueError, match="at least 4 examples"):
        linear_cka(torch.randn(3, 3), torch.randn(3, 3), debiased=True)


@pytest.mark.parametrize("sigma_frac", [0.0, -0.4, float("nan")])
def test_rbf_refuses_a_bandwidth_that_is_not_positive(sigma_frac):
    with pytest.raises(ValueError, match="sigma_frac must be positive"):
        rbf_cka(torch.randn(10, 3), torch.randn(10, 3), sigma_frac=sigma_frac)


# --- bootstrap ---

def test_bootstrap_interval():
    x, y = random_pair(np.random.default_rng(9), 400, 16, 8)
    x, y = t(x), t(y)
    value = float(linear_cka(x, y))

    def interval(seed, n_resamples=200, rows=slice(None)):
        return bootstrap_interval(linear_cka, x[rows], y[rows], n_resamples, 0.9, torch.Generator().manual_seed(seed))

    low, high = interval(0)
    assert low < value < high
    assert interval(0) == (low, high)  # reproducible
    assert interval(1) != (low, high)
    small_low, small_high = interval(0, rows=slice(0, 50))
    assert small_high - small_low > high - low  # fewer cities, wider interval
    one_low, one_high = bootstrap_interval(linear_cka, x, x, 20, 0.95, torch.Generator().manual_seed(0))
    assert one_low == pytest.approx(1.0, abs=1e-12) and one_high == pytest.approx(1.0, abs=1e-12)


def test_bootstrap_resamples_cities_with_replacement():
    """A hand-rolled percentile bootstrap with the same draws gives the same interval."""
    x, y = random_pair(np.random.default_rng(10), 30, 4, 3)
    x, y = t(x), t(y)
    draws = torch.randint(30, (50, 30), generator=torch.Generator().manual_seed(4))
    values = np.array([float(linear_cka(x[r], y[r])) for r in draws])
    expected = np.percentile(values, [2.5, 97.5])
    got = bootstrap_interval(linear_cka, x, y, 50, 0.95, torch.Generator().manual_seed(4))
    assert got == pytest.approx(tuple(expected), abs=1e-12)
