"""Linear CKA against an independent float64 reference and against its mathematical properties."""

import numpy as np
import pytest
import torch

from cka_hydra.cka import ZeroVarianceError, center_columns, linear_cka


def reference_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Kornblith et al.'s Gram route with an explicit centring matrix H, in numpy float64."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    n = x.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    k, l = h @ x @ x.T @ h, h @ y @ y.T @ h
    return float(np.sum(k * l) / np.sqrt(np.sum(k * k) * np.sum(l * l)))


def random_pair(rng, n, d1, d2, shared=0.5):
    base = rng.normal(size=(n, 5))
    x = base @ rng.normal(size=(5, d1)) + rng.normal(size=(n, d1))
    y = shared * base @ rng.normal(size=(5, d2)) + rng.normal(size=(n, d2))
    return x, y


@pytest.mark.parametrize("n, d1, d2", [(4, 3, 7), (50, 10, 3), (300, 64, 32), (1000, 20, 120)])
def test_matches_reference(n, d1, d2):
    x, y = random_pair(np.random.default_rng(n), n, d1, d2)
    got = linear_cka(torch.from_numpy(x), torch.from_numpy(y))
    assert got.dtype == torch.float64
    assert float(got) == pytest.approx(reference_cka(x, y), abs=1e-12)


def test_low_rank_and_offsets_match_reference():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 2)) @ rng.normal(size=(2, 40)) + 50.0
    y = rng.normal(size=(200, 30)) - 7.0
    assert float(linear_cka(torch.from_numpy(x), torch.from_numpy(y))) == pytest.approx(reference_cka(x, y), abs=1e-12)


@pytest.mark.parametrize("offset", [1e3, 1e4])
def test_float32_with_large_offsets_matches_float64(offset):
    rng = np.random.default_rng(2)
    x, y = random_pair(rng, 1000, 64, 48)
    exact = reference_cka(x, y)
    shifted = [torch.from_numpy(m + offset * rng.uniform(0.5, 1.5, size=m.shape[1])).float() for m in (x, y)]
    # float32 storage itself rounds the features by ~offset * 6e-8; centring in float64 keeps that the only error
    assert float(linear_cka(*shifted)) == pytest.approx(exact, abs=1e-5)


def test_symmetric_and_self_similarity_is_one():
    x, y = random_pair(np.random.default_rng(3), 100, 12, 9)
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    assert float(linear_cka(x, y)) == pytest.approx(float(linear_cka(y, x)), abs=1e-14)
    assert float(linear_cka(x, x)) == pytest.approx(1.0, abs=1e-14)


def test_invariant_to_orthogonal_maps_scaling_and_row_permutation():
    rng = np.random.default_rng(4)
    x, y = random_pair(rng, 120, 16, 10)
    q, _ = np.linalg.qr(rng.normal(size=(16, 16)))
    perm = rng.permutation(120)
    base = float(linear_cka(torch.from_numpy(x), torch.from_numpy(y)))
    assert float(linear_cka(torch.from_numpy(3.7 * x @ q), torch.from_numpy(y))) == pytest.approx(base, abs=1e-12)
    assert float(linear_cka(torch.from_numpy(x[perm]), torch.from_numpy(y[perm]))) == pytest.approx(base, abs=1e-12)


def test_not_invariant_to_a_general_invertible_map():
    rng = np.random.default_rng(5)
    x, y = random_pair(rng, 120, 8, 8)
    stretch = np.diag([100.0, 1, 1, 1, 1, 1, 1, 1])  # invertible, not orthogonal
    before = float(linear_cka(torch.from_numpy(x), torch.from_numpy(y)))
    after = float(linear_cka(torch.from_numpy(x @ stretch), torch.from_numpy(y)))
    assert abs(before - after) > 0.05


def test_in_unit_interval_and_zero_for_orthogonal_signals():
    rng = np.random.default_rng(6)
    for _ in range(20):
        x, y = random_pair(rng, 30, 4, 6, shared=rng.uniform(0, 3))
        assert 0.0 <= float(linear_cka(torch.from_numpy(x), torch.from_numpy(y))) <= 1.0
    # centred, mutually orthogonal columns: no alignment at all
    x = torch.tensor([[1.0], [-1.0], [1.0], [-1.0]])
    y = torch.tensor([[1.0], [1.0], [-1.0], [-1.0]])
    assert float(linear_cka(x, y)) == 0.0


def test_center_columns():
    x = torch.tensor([[1.0, 10.0], [3.0, 30.0]])
    assert torch.equal(center_columns(x), torch.tensor([[-1.0, -10.0], [1.0, 10.0]]))


@pytest.mark.parametrize("constant", [0.0, 0.1, 1234.5])
def test_constant_representation_is_an_error_not_nan_or_zero(constant):
    y = torch.randn(20, 3)
    with pytest.raises(ZeroVarianceError, match="first representation is constant"):
        linear_cka(torch.full((20, 4), constant), y)
    with pytest.raises(ZeroVarianceError, match="second representation is constant"):
        linear_cka(y, torch.full((20, 4), constant, dtype=torch.float32))


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="same n"):
        linear_cka(torch.randn(10, 3), torch.randn(11, 3))
