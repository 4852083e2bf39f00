"""The field's standard measures beside CKA: the shape metric, SVCCA, mutual kNN and RSA.

Independent implementations: rsatoolbox (RSA); scipy's orthogonal Procrustes with the partial
whitening written out (shape); PCA by eigendecomposition of the covariance and CCA by the classic
Cxx^-1/2 Cxy Cyy^-1/2 (SVCCA); neighbours by numpy's stable argsort and scipy's k-d tree (mutual
kNN), on random data and on the hidden layers of two networks trained on digits. Then their
properties (symmetry, identity, invariances and non-invariances, the triangle inequality), their
sensitivity to removing principal components (Ding et al. 2021), the permutation test's permuted
states, calibration, and the measures through real runs, the planner and refusals.
"""

import math

import numpy as np
import pandas as pd
import pytest
import rsatoolbox
import scipy.linalg
import torch
from hydra import compose, initialize_config_module
from scipy.spatial import cKDTree
from scipy.spatial.distance import cdist

from cka_hydra import engine, identity, measures
from cka_hydra.app import register
from cka_hydra.cka import UndefinedMeasureError
from cka_hydra.errors import InputError
from cka_hydra.measures import mutual_knn, nearest_neighbours, rsa, shape_metric, svcca, svcca_basis
from cka_hydra.overrides import hydra_argv
from cka_hydra.registry import REGISTRY, user_measure
from cka_hydra.schema import CKAConfig, MeasureConfig, Neighbourhood, RDM, run_config

from conftest import RUN, compare_into, read_json, reference_from_files, representations_dir, run_app, study_rows

NEW = ("shape", "svcca", "mknn", "rsa")
FUNCTIONS = {"shape": shape_metric, "svcca": svcca, "mknn": mutual_knn, "rsa": rsa}
# every setting of each measure worth telling apart, as keyword arguments of its function
SETTINGS = {
    "shape": [dict(alpha=1.0), dict(alpha=0.5), dict(alpha=0.0), dict(alpha=1.0, center=False),
              dict(alpha=0.5, center=False), dict(alpha=0.0, center=False)],
    "svcca": [dict(), dict(variance=0.9), dict(variance=None, components=4)],
    "mknn": [dict(), dict(k=3), dict(metric="euclidean"), dict(k=3, metric="euclidean")],
    "rsa": [dict(), dict(rdm="euclidean")],
}
EVERY_SETTING = [(name, settings) for name in NEW for settings in SETTINGS[name]]
FLOOR = 1e-7  # eigenvalues of X^T X / ||X||^2 below it count as it (netrep's eigval_tol, of X^T X)
# The shape metric's 0: computed by the chord, exact to rounding (arccos of the nuclear norm would
# give sqrt(2 e) for an error e in the cosine: 1.5e-8 for one ulp, ~6e-8 at d = 64)
SHAPE_ZERO = 1e-12


def rows(n, d, seed, offset=5.0):
    """Rows with a clearly ordered spectrum, a per-feature offset, and some structure shared with
    every other seed's rows of the same n."""
    g = np.random.default_rng(seed)
    shared = np.random.default_rng(1000 + n).normal(size=(n, 4))
    x = g.normal(size=(n, d)) * np.linspace(3, 0.2, d) + shared @ g.normal(size=(4, d))
    return x + offset * g.normal(size=d)


def geometric(n, d, seed, ratio=0.7):
    """Rows whose principal variances fall geometrically (ratio^2 per component), in a random basis."""
    g = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(g.normal(size=(d, d)))
    return (g.normal(size=(n, d)) * ratio ** np.arange(d)) @ basis + g.normal(size=d)


def value(name, x, y, **settings):
    return float(FUNCTIONS[name](torch.from_numpy(x), torch.from_numpy(y), **settings))


def similarity(name, v):
    """Higher is more alike, 1 for the same: shape's angle read as 1 - angle / (pi/2)."""
    return 1 - v / (math.pi / 2) if name == "shape" else v


def orthogonal(d, g):
    q, r = np.linalg.qr(g.normal(size=(d, d)))
    return q * np.sign(np.diag(r))


# --- independent implementations, sharing no code with cka_hydra ---

def whitened(a, alpha):
    """a / ||a|| @ (alpha I + (1 - alpha) (a^T a / ||a||^2)^(-1/2)): scipy's matrix square root on a
    full-rank side; on a rank-deficient one (fewer rows than columns) by its SVD, the squared
    singular values (shares of the total) floored at FLOOR and the null directions (which a maps
    to 0) left out."""
    a = a / np.linalg.norm(a)
    if alpha >= 1:
        return a
    if np.linalg.matrix_rank(a) == a.shape[1]:
        root = np.real(scipy.linalg.sqrtm(a.T @ a))
        return a @ (alpha * np.eye(a.shape[1]) + (1 - alpha) * scipy.linalg.inv(root))
    u, s, vt = np.linalg.svd(a, full_matrices=False)
    return (u * (s * (alpha + (1 - alpha) / np.sqrt(np.maximum(s**2, FLOOR))))) @ vt


def reference_shape(x, y, alpha=1.0, center=True):
    """The angular shape metric by scipy's orthogonal Procrustes: each side (column-centred)
    partially whitened and scaled to unit norm, the narrower padded with zero columns, the second
    rotated onto the first; the angle between them, arccos <X, Y R>."""
    def prepared(a):
        a = whitened(a - a.mean(0) if center else a.copy(), alpha)
        return a / np.linalg.norm(a)

    xw, yw = prepared(x), prepared(y)
    width = max(xw.shape[1], yw.shape[1])
    xw, yw = (np.hstack([a, np.zeros((len(a), width - a.shape[1]))]) for a in (xw, yw))
    rotation, _ = scipy.linalg.orthogonal_procrustes(yw, xw)
    return float(np.arccos(np.clip(np.sum(xw * (yw @ rotation)), -1, 1)))


def reference_svcca(x, y, variance=0.99, components=None):
    """SVCCA by PCA from the covariance's eigendecomposition (the fewest components whose
    eigenvalues hold `variance` of their sum, or `components` of them), then the classic CCA:
    the singular values of Cxx^-1/2 Cxy Cyy^-1/2, the mean of the first min(kx, ky)."""
    def scores(a):
        a = a - a.mean(0)
        eigenvalues, vectors = np.linalg.eigh(np.cov(a, rowvar=False))
        eigenvalues, vectors = eigenvalues[::-1], vectors[:, ::-1]
        share = np.cumsum(eigenvalues) / eigenvalues.sum()
        k = components if variance is None else int(np.searchsorted(share, variance)) + 1
        return a @ vectors[:, :k]

    def inverse_root(m):
        w, v = np.linalg.eigh(m)
        return (v / np.sqrt(w)) @ v.T

    sx, sy = scores(x), scores(y)
    kx, ky = sx.shape[1], sy.shape[1]
    c = np.cov(np.hstack([sx, sy]), rowvar=False)
    rho = np.linalg.svd(inverse_root(c[:kx, :kx]) @ c[:kx, kx:] @ inverse_root(c[kx:, kx:]), compute_uv=False)
    return float(rho[:min(kx, ky)].mean())


def reference_neighbours(a, k, metric):
    """Each row's k nearest other rows: numpy's stable argsort of the whole distance matrix (the
    first of rows equally far first), the row itself put last."""
    if metric == "cosine":
        unit = a / np.linalg.norm(a, axis=1, keepdims=True)
        far = -(unit @ unit.T)
    else:
        far = cdist(a, a, "sqeuclidean")
    np.fill_diagonal(far, np.inf)
    return np.argsort(far, axis=1, kind="stable")[:, :k]


def kd_tree_neighbours(a, k):
    """Each row's k nearest other rows by Euclidean distance, from scipy's k-d tree (the row itself
    is its own nearest, at distance 0, on rows that are all distinct)."""
    return cKDTree(a).query(a, k + 1)[1][:, 1:]


def overlap(nx, ny):
    return float(np.mean([len(set(a) & set(b)) for a, b in zip(nx, ny)]) / nx.shape[1])


def reference_mknn(x, y, k=10, metric="cosine"):
    return overlap(reference_neighbours(x, k, metric), reference_neighbours(y, k, metric))


def reference_rsa(x, y, rdm="correlation"):
    """rsatoolbox: each side's RDM (correlation distance, or squared Euclidean distance over the
    number of features), compared by the Spearman correlation."""
    rdms = [rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(a), method=rdm) for a in (x, y)]
    return float(rsatoolbox.rdm.compare(rdms[0], rdms[1], method="spearman")[0, 0])


REFERENCES = {"shape": reference_shape, "svcca": reference_svcca, "mknn": reference_mknn, "rsa": reference_rsa}


# --- 1. against the independent implementations ---

SHAPES = [(80, 6, 9), (40, 60, 50), (150, 20, 20), (200, 30, 12)]  # n, d1, d2: n < d for one


def check_against_references(x, y):
    """Every measure and setting of x against y equals its independent implementation to 1e-9."""
    for name, settings in EVERY_SETTING:
        if name == "shape" and settings["alpha"] == 0 and x.shape[0] <= max(x.shape[1], y.shape[1]):
            continue  # fully whitened sides of n <= d rows all have one shape (the test below)
        got, expected = value(name, x, y, **settings), REFERENCES[name](x, y, **settings)
        assert got == pytest.approx(expected, abs=1e-9), (name, settings)
    for k in (1, 5):  # the k-d tree as a second Euclidean reference
        assert value("mknn", x, y, k=k, metric="euclidean") == pytest.approx(
            overlap(kd_tree_neighbours(x, k), kd_tree_neighbours(y, k)), abs=1e-12)


@pytest.mark.parametrize("n, d1, d2", SHAPES)
def test_each_measure_equals_its_independent_implementation_on_random_data(n, d1, d2):
    check_against_references(rows(n, d1, seed=d1), rows(n, d2, seed=d2 + 1, offset=-3.0))


def test_the_networks_learned_the_task(digits_layers):
    assert digits_layers["net0_accuracy"] > 0.85 and digits_layers["net1_accuracy"] > 0.85


@pytest.mark.parametrize("layer_a, layer_b", [(0, 0), (1, 1), (0, 1)])
def test_each_measure_equals_its_independent_implementation_on_trained_networks(digits_layers, layer_a, layer_b):
    """Hidden layers (397 held-out digits; 64 and 32 features) of two networks trained from
    different seeds."""
    check_against_references(digits_layers[f"net0_layer{layer_a}"], digits_layers[f"net1_layer{layer_b}"])


def test_fully_whitened_sides_of_fewer_rows_than_features_all_have_one_shape():
    # centred and whitened, each side is an orthonormal basis of the same (n - 1)-dimensional space
    assert value("shape", rows(30, 40, 1), rows(30, 35, 2), alpha=0.0) < SHAPE_ZERO


def test_neighbours_tied_at_the_kth_place_are_the_first_rows():
    """On a grid every distance is an exact integer: many ties, broken as numpy's stable argsort
    does (the row of the lowest index first)."""
    g = np.random.default_rng(0)
    x, y = (g.integers(0, 3, size=(60, d)).astype(float) for d in (3, 4))
    for k in (1, 3, 10):
        got = nearest_neighbours(torch.from_numpy(x), k, "euclidean").numpy()
        assert (np.sort(got, axis=1) == np.sort(reference_neighbours(x, k, "euclidean"), axis=1)).all(), k
        assert value("mknn", x, y, k=k, metric="euclidean") == pytest.approx(
            reference_mknn(x, y, k, "euclidean"), abs=1e-12)
    # tied dissimilarities take their mean rank, as rsatoolbox's (scipy's) rankdata
    assert value("rsa", x, y, rdm="euclidean") == pytest.approx(reference_rsa(x, y, "euclidean"), abs=1e-12)


def test_blocks_of_rows_give_the_whole_matrix_result(monkeypatch):
    """mknn and RSA build their n x n matrices ROW_BLOCK rows at a time: blocks of 7 rows (the
    last one short) give what the references give."""
    x, y = rows(50, 8, 1), rows(50, 5, 2)
    monkeypatch.setattr(measures, "ROW_BLOCK", 7)
    for name, settings in EVERY_SETTING:
        if name in ("mknn", "rsa"):
            assert value(name, x, y, **settings) == pytest.approx(REFERENCES[name](x, y, **settings), abs=1e-12)


def test_svcca_keeps_the_fewest_components_holding_the_variance_and_never_more_than_the_rank():
    g = np.random.default_rng(3)
    x = geometric(200, 12, seed=4)
    variances = np.linalg.svd(x - x.mean(0), compute_uv=False) ** 2
    share = np.cumsum(variances) / variances.sum()
    for variance in (0.5, 0.9, 0.99):
        assert svcca_basis(torch.from_numpy(x), variance).shape == (200, int((share < variance).sum()) + 1)
    assert svcca_basis(torch.from_numpy(x), None, 5).shape == (200, 5)
    for seed in range(5):  # a side of rank r: variance=1 keeps r, not directions beyond it
        r = 2 + seed % 3
        low_rank = g.normal(size=(60, r)) @ g.normal(size=(r, 10)) * 10.0 ** (seed - 2)
        assert svcca_basis(torch.from_numpy(low_rank), 1.0).shape == (60, r)
    with pytest.raises(UndefinedMeasureError, match="SVCCA with 4 components: the first representation has rank 3"):
        svcca(torch.from_numpy(g.normal(size=(40, 3)) @ g.normal(size=(3, 10))), torch.from_numpy(x[:40]), None, 4)


def test_undefined_inputs_are_refused_naming_the_side():
    x = torch.from_numpy(rows(20, 4, 1))
    cases = [
        (lambda: shape_metric(x, torch.ones(20, 3, dtype=torch.float64)), "second representation is constant"),
        (lambda: shape_metric(torch.zeros(20, 3, dtype=torch.float64), x, center=False),
         "first representation is all zeros"),
        (lambda: svcca(torch.ones(20, 3, dtype=torch.float64), x), "SVCCA is undefined: the first"),
        (lambda: mutual_knn(x, torch.cat([x[:19], torch.zeros(1, 4, dtype=torch.float64)])),
         "the second representation has a zero row"),
        (lambda: mutual_knn(x, x, k=20), "k=20 needs more than k cities, got 20"),
        (lambda: rsa(x, torch.ones(20, 3, dtype=torch.float64)), "row constant across features"),
        (lambda: rsa(torch.ones(20, 3, dtype=torch.float64), x, rdm="euclidean"), "first representation's "
                                                                                   "dissimilarities are all equal"),
    ]
    for compute, message in cases:
        with pytest.raises(UndefinedMeasureError, match=message):
            compute()
    assert value("mknn", rows(20, 4, 1), rows(20, 4, 2), k=19) == 1.0  # every other city: the most k can be


# --- 2. properties ---

@pytest.mark.parametrize("name, settings", EVERY_SETTING)
def test_each_measure_is_symmetric(name, settings):
    for n, d1, d2 in SHAPES[:2]:
        x, y = rows(n, d1, 1), rows(n, d2, 2)
        assert value(name, x, y, **settings) == pytest.approx(value(name, y, x, **settings), abs=1e-12)


@pytest.mark.parametrize("name, settings", EVERY_SETTING)
def test_each_measure_of_a_side_with_itself_is_identity(name, settings):
    x = rows(100, 8, 3)
    got = value(name, x, x, **settings)
    if name == "shape":
        assert 0 <= got < SHAPE_ZERO
    else:
        assert got == pytest.approx(1.0, abs=1e-12)


def rotation(x, g):
    return x @ orthogonal(x.shape[1], g)


def scaling(x, g):
    return 3.7 * x


def translation(x, g):
    return x + 10 * g.normal(size=x.shape[1])


def feature_permutation(x, g):
    return x[:, g.permutation(x.shape[1])]


def rotation_fixing_ones(x, g):
    """An orthogonal map Q with Q 1 = 1: it keeps each row's mean over the features."""
    d = x.shape[1]
    complement = scipy.linalg.null_space(np.ones((1, d)))
    q = np.ones((d, d)) / d + complement @ orthogonal(d - 1, g) @ complement.T
    return x @ q


def row_shift_and_scale(x, g):
    """Each city's row shifted and scaled by numbers of its own."""
    return x * g.uniform(0.5, 2, size=(len(x), 1)) + g.normal(size=(len(x), 1))


def invertible_map(x, g):
    return x @ (g.normal(size=(x.shape[1], x.shape[1])) + 3 * np.eye(x.shape[1]))


def anisotropic_scaling(x, g):
    return x * np.geomspace(0.05, 20, x.shape[1])


INVARIANCES = [
    *[(rotation, "shape", dict(alpha=alpha)) for alpha in (1.0, 0.5, 0.0)],
    (rotation, "svcca", {}), (rotation, "mknn", {}), (rotation, "mknn", dict(metric="euclidean")),
    (rotation, "rsa", dict(rdm="euclidean")),
    # the correlation RDM's Pearson correlations are over each row's features: invariant to maps
    # that keep each row's mean and norm (feature permutations), not to every rotation (below)
    (feature_permutation, "rsa", {}), (rotation_fixing_ones, "rsa", {}), (row_shift_and_scale, "rsa", {}),
    # (not shape between alpha = 0 and 1: see test_partial_whitening_depends_on_the_scale_...)
    *[(scaling, name, settings) for name, settings in EVERY_SETTING if settings.get("alpha", 0) in (0, 1)],
    (translation, "shape", dict(alpha=1.0)), (translation, "shape", dict(alpha=0.5)),
    (translation, "svcca", {}), (translation, "svcca", dict(variance=None, components=4)),
    (translation, "mknn", dict(metric="euclidean")), (translation, "rsa", dict(rdm="euclidean")),
    (invertible_map, "shape", dict(alpha=0.0)), (invertible_map, "svcca", dict(variance=1.0)),
]


@pytest.mark.parametrize("transform, name, settings", INVARIANCES,
                         ids=[f"{t.__name__}-{n}-{s}" for t, n, s in INVARIANCES])
def test_each_measure_is_invariant_to_what_it_claims(transform, name, settings):
    x, y = rows(120, 7, 1), rows(120, 9, 2)
    g = np.random.default_rng(5)
    before = value(name, x, y, **settings)
    assert value(name, x, transform(y, g), **settings) == pytest.approx(before, abs=1e-9)
    assert value(name, transform(x, g), y, **settings) == pytest.approx(before, abs=1e-9)


NON_INVARIANCES = [  # (transform, measure, settings, the least change of similarity it makes)
    (anisotropic_scaling, "mknn", {}, 0.2), (anisotropic_scaling, "mknn", dict(metric="euclidean"), 0.2),
    (invertible_map, "shape", dict(alpha=1.0), 0.1), (invertible_map, "shape", dict(alpha=0.5), 0.05),
    (translation, "shape", dict(alpha=1.0, center=False), 0.1),
    (rotation, "rsa", {}, 0.05),  # the correlation RDM under a rotation that moves the ones vector
    (translation, "rsa", {}, 0.05),
    (translation, "mknn", {}, 0.2),  # cosine: a translation moves the origin the angles are seen from
]


@pytest.mark.parametrize("transform, name, settings, change", NON_INVARIANCES,
                         ids=[f"{t.__name__}-{n}-{s}" for t, n, s, _ in NON_INVARIANCES])
def test_each_measure_sees_what_it_does_not_claim_to_ignore(transform, name, settings, change):
    x = rows(120, 7, 1)
    moved = transform(x, np.random.default_rng(5))
    assert similarity(name, value(name, x, moved, **settings)) < 1 - change


def test_partial_whitening_depends_neither_on_the_scale_nor_on_the_number_of_cities():
    """Each side is scaled to unit norm before it is whitened: at every alpha the shape metric is
    invariant to an isotropic scaling (of either side, down to scales whose X^T X would fall below
    netrep's absolute floor of 1e-7) and to repeating every city (netrep's raw X^T X makes both
    move the value between alpha = 1's and alpha = 0's), and alpha moves it from one to the other."""
    x, y = rows(120, 7, 1), rows(120, 9, 2)
    values = {alpha: value("shape", x, y, alpha=alpha) for alpha in (0.0, 0.1, 0.5, 0.9, 1.0)}
    for alpha, expected in values.items():
        for c in (1e-6, 1e-2, 1e4):
            assert value("shape", c * x, y, alpha=alpha) == pytest.approx(expected, abs=1e-9), (alpha, c)
        assert value("shape", np.vstack([x] * 4), np.vstack([y] * 4), alpha=alpha) == pytest.approx(expected, abs=1e-9)
        assert value("shape", x, 1e-2 * y, alpha=alpha) == pytest.approx(reference_shape(x, 1e-2 * y, alpha), abs=1e-9)
    assert abs(values[0.0] - values[1.0]) > 0.05
    assert len({round(v, 6) for v in values.values()}) == len(values)  # each alpha its own value


@pytest.mark.parametrize("alpha", [1.0, 0.5, 0.0])
def test_the_shape_metric_satisfies_the_triangle_inequality(alpha):
    g = np.random.default_rng(int(alpha * 10))
    tightest = -np.inf
    for trial in range(20):
        widths = g.integers(3, 9, size=3) if trial % 2 else [6, 6, 6]
        x, y, z = (rows(60, int(d), seed=int(g.integers(1 << 30))) for d in widths)
        if not trial % 2:  # y halfway between x and z aligned onto it: a nearly tight triangle
            xs, zs = ((a - a.mean(0)) / np.linalg.norm(a - a.mean(0)) for a in (x, z))
            y = 0.5 * (xs + zs @ scipy.linalg.orthogonal_procrustes(zs, xs)[0]) + 1e-3 * g.normal(size=x.shape)
        xy, yz, xz = (value("shape", a, b, alpha=alpha) for a, b in ((x, y), (y, z), (x, z)))
        assert xz <= xy + yz + 1e-12 and 0 <= min(xy, yz, xz) and max(xy, yz, xz) <= math.pi / 2
        tightest = max(tightest, xz - xy - yz)
    # some triples come near equality (at alpha = 1 the halfway side is on the geodesic; partial
    # whitening moves it off): the inequality was tested, not trivially true
    assert tightest > (-1e-2 if alpha == 1 else -0.1)


# --- 3. sensitivity to the principal components (Ding et al. 2021) ---

def without_top_components(x, i):
    """x with its first i principal components projected out (its mean kept)."""
    xc = x - x.mean(0)
    _, _, vt = np.linalg.svd(xc, full_matrices=False)
    return x - xc @ vt[:i].T @ vt[:i]


SENSITIVITY = [("shape", dict(alpha=1.0)), ("shape", dict(alpha=0.5)), ("shape", dict(alpha=0.0)),
               ("svcca", {}), ("svcca", dict(variance=None, components=5)), ("mknn", {}),
               ("mknn", dict(metric="euclidean")), ("rsa", {}), ("rsa", dict(rdm="euclidean"))]


@pytest.mark.parametrize("data", ["network", "geometric"])
def test_removing_more_top_components_moves_each_measure_further_from_identity(digits_layers, data):
    x = digits_layers["net0_layer0"] if data == "network" else geometric(300, 20, seed=0)
    for name, settings in SENSITIVITY:
        similarities = [similarity(name, value(name, x, without_top_components(x, i), **settings))
                        for i in range(6)]
        assert similarities[0] == pytest.approx(1, abs=SHAPE_ZERO), (name, settings)
        assert all(b < a - 1e-3 for a, b in zip(similarities, similarities[1:])), (name, settings, similarities)


# --- 4. the permutation test's permuted states ---

@pytest.mark.parametrize("name, settings", [
    ("shape", {}), ("shape", dict(alpha=0.5, center=False)), ("svcca", {}),
    ("svcca", dict(variance=None, components=4)), ("mknn", {}), ("mknn", dict(k=3, metric=Neighbourhood.euclidean)),
    ("rsa", {}), ("rsa", dict(rdm=RDM.euclidean)),
])
def test_a_permuted_state_is_the_state_of_the_permuted_rows(name, settings):
    t = REGISTRY[name].terms(CKAConfig(), MeasureConfig(name, **settings))
    function_settings = {key: getattr(v, "value", v) for key, v in settings.items()}
    x, y = rows(45, 6, 1), rows(45, 5, 2)
    a, b = t.prepare(torch.from_numpy(x)), t.prepare(torch.from_numpy(y))
    perms = engine.permutations(6, seed=3, n=45)
    scratch = np.array([value(name, x, y[p.numpy()], **function_settings) for p in perms])
    single = np.array([float(t.compare(a, t.permute(b, p))) for p in perms])
    batched = t.compare(a, t.permute(b, perms)).numpy()
    assert batched.shape == (6,)
    assert np.abs(single - scratch).max() < 1e-12 and np.abs(batched - scratch).max() < 1e-12
    assert np.abs(scratch - value(name, x, y, **function_settings)).max() > 1e-3  # the permutations mattered
    assert np.abs(engine.null_values(t, a, b, perms).numpy() - scratch).max() < 1e-12


# --- 5. calibration ---

def test_calibration_is_the_similarity_above_chance_over_its_room_above_chance():
    assert REGISTRY["rsa"].calibrated(0.6, 0.1) == pytest.approx((0.6 - 0.1) / (1 - 0.1), abs=1e-15)
    assert REGISTRY["svcca"].calibrated(0.3, 0.3) == 0
    # shape: similarity 1 - angle / (pi/2), so (s - s0) / (1 - s0) = (angle0 - angle) / angle0
    s, s0 = 1 - 0.3 / (math.pi / 2), 1 - 1.2 / (math.pi / 2)
    assert REGISTRY["shape"].calibrated(0.3, 1.2) == pytest.approx((s - s0) / (1 - s0), abs=1e-15)
    assert REGISTRY["shape"].calibrated(0.3, 1.2) == pytest.approx(0.75, abs=1e-15)
    assert REGISTRY["shape"].similarity(math.pi / 2) == pytest.approx(0, abs=1e-15)


def test_a_runs_calibrated_value_is_computed_from_its_value_and_null_mean(small_store, tmp_path):
    run_dir = compare_into(tmp_path, *RUN, f"data.root={small_store}", "measure=rsa", "null.permutations=19")
    assert run_dir.name == "layer5-rsa-null19"
    summary = read_json(run_dir / "summary.json")
    s, s0 = summary["final_value"], summary["final_null_mean"]
    assert summary["permutations"] == 19 and -0.5 < s0 < 0.5 < s
    assert summary["final_calibrated"] == pytest.approx((s - s0) / (1 - s0), abs=1e-12)


# --- 6. through a real run ---

COLUMNS = {"shape": "shape_angle", "svcca": "svcca", "mknn": "mknn", "rsa": "rsa"}
SIDES = [("pt2-1", "distance"), ("revision/exp2/pt2-2_seed1", "angle")]


@pytest.mark.parametrize("measure, overrides, folder, settings", [
    *[(name, [], f"layer5-{name}-all", {}) for name in NEW],
    ("mknn", ["measure.k=5", "measure.metric=euclidean"], "layer5-mknn-knn5-nn-euclidean-all",
     dict(k=5, metric="euclidean")),
])
def test_a_run_of_each_standard_measure_equals_the_independent_implementations(small_store, tmp_path, measure,
                                                                               overrides, folder, settings):
    run_dir = compare_into(tmp_path, *RUN, f"data.root={small_store}", f"measure={measure}", *overrides,
                           "checkpoints=all")
    assert run_dir.name == folder
    summary = read_json(run_dir / "summary.json")
    timeline = pd.read_csv(run_dir / f"{measure}_timeline.csv")
    column = COLUMNS[measure]
    assert list(timeline.columns) == ["step", column, "n_cities"] and len(timeline) == 3
    for step, got in zip(timeline["step"], timeline[column]):
        folders = [representations_dir(small_store, instance, task, 5) / f"checkpoint-{step}"
                   for instance, task in SIDES]
        expected, n_cities = reference_from_files(
            *folders, estimator=lambda x, y: REFERENCES[measure](x, y, **settings), load=study_rows)
        assert got == pytest.approx(expected, abs=1e-9), step
        # the other way round: the same value (one run folder serves both orders, below)
        assert reference_from_files(*folders[::-1], estimator=lambda x, y: REFERENCES[measure](x, y, **settings),
                                    load=study_rows)[0] == pytest.approx(expected, abs=1e-12)
    assert timeline["n_cities"].iloc[-1] == n_cities
    assert summary["final_value"] == timeline[column].iloc[-1] and summary["measure"] == measure
    assert "final_cka" not in summary and "kernel" not in summary


def composed(*overrides):
    register()
    with initialize_config_module(config_module="cka_hydra.conf", version_base="1.3"):
        return run_config(compose("config", overrides=hydra_argv(overrides)))


@pytest.mark.parametrize("overrides, label", [
    (["measure=shape"], "shape"),
    (["measure=shape", "measure.alpha=0"], "shape-alpha0.0"),
    (["measure=shape", "measure.center=false"], "shape-uncentred"),
    (["measure=svcca", "measure.variance=0.9"], "svcca-var0.9"),
    (["measure=svcca", "measure.variance=null", "measure.components=5"], "svcca-k5"),
    (["measure=mknn", "measure.k=5"], "mknn-knn5"),
    (["measure=mknn", "measure.metric=euclidean"], "mknn-nn-euclidean"),
    (["measure=rsa", "measure.rdm=euclidean"], "rsa-rdm-euclidean"),
    # another measure's settings: not this measure's result, not its folder
    (["measure=rsa", "measure.k=5"], "rsa"),
    (["measure=svcca", "measure.components=5"], "svcca"),  # read only with variance=null
    (["measure=shape", "measure.variance=0.5", "measure.metric=euclidean", "measure.rdm=euclidean",
      "measure.components=7"], "shape"),
    (["measure=mknn", "measure.alpha=0", "measure.center=false"], "mknn"),
])
def test_a_measures_own_settings_and_no_others_name_its_run_folder(overrides, label):
    run = composed(*RUN, *overrides)
    assert identity.run_subdir(run) == f"pt2/pt2-1_vs_pt2-2_seed1/layer5-{label}"
    # what the measure does not read is said, once, each setting as it was typed
    ignored = {o for o in overrides[1:] if o.split("=")[0].removeprefix("measure.") in run.measure.unused()}
    cautions = run.measure.cautions()
    assert len(cautions) == (1 if ignored else 0)
    if ignored:
        said, reason = cautions[0].split(": ")
        assert set(said.replace(".0", "").split(", ")) == ignored
        assert reason == f"ignored, as {overrides[0]} does not read {'it' if len(ignored) == 1 else 'them'} " \
                         "with these settings"


# --- 7. symmetry in the planner ---

@pytest.mark.parametrize("measure", NEW)
def test_either_order_of_a_pair_is_one_comparison_and_one_folder(measure):
    forward = composed("regime=pt3", "pair=1_2", "seed_pair=1_orig", "layer=5", f"measure={measure}")
    backward = composed("regime=pt3", "pair=2_1", "seed_pair=orig_1", "layer=5", f"measure={measure}")
    assert forward.comparison == backward.comparison
    assert identity.run_subdir(forward) == identity.run_subdir(backward) == (
        f"pt3/pt3-1_seed1_vs_pt3-2/layer5-{measure}")
    # a model against itself at two layers, either way round
    assert composed("pair=1_1", "seed_pair=orig_1", "layer=5", "layer_b=3", f"measure={measure}").comparison == \
        composed("pair=1_1", "seed_pair=1_orig", "layer=3", "layer_b=5", f"measure={measure}").comparison


def test_a_sweep_plans_each_unordered_pair_once_for_each_new_measure(small_store, tmp_path):
    result = run_app("-m", "sweep", "regime=pt3", "layer=5", "pair=1_1,1_2", "seed_pair=orig_1,1_orig",
                     f"measure={','.join(NEW)}", f"data.root={small_store}", "hydra.sweeper.dry_run=true",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    # pt3-1 orig against pt3-1 seed 1 is planned once, not again as seed 1 against orig
    assert "pt3: 4 candidates; removed 0 for shared training task, 1 for same comparison twice; 3 jobs" in \
        result.stdout
    assert "sweep: 12 jobs (3 comparisons x 4 settings)" in result.stdout
    for measure in NEW:
        jobs = [line for line in result.stdout.splitlines() if line.endswith(f"measure={measure}")]
        assert len(jobs) == 3 and sum("pair='1_1'" in line for line in jobs) == 1, result.stdout


# --- 8. refusals ---

def one_error(result):
    assert result.returncode == 1 and "Traceback" not in result.stdout, result.stdout
    errors = [line for line in result.stdout.splitlines() if "Error" in line or "[ERROR]" in line]
    assert len(errors) == 1, result.stdout
    return errors[0]


def test_a_user_measure_may_not_take_a_new_built_in_name(small_store, tmp_path):
    for name in NEW:
        with pytest.raises(InputError, match=f"^measure {name} \\(_target_: mymeasures.f\\): {name} is a built-in "):
            user_measure(name, "mymeasures.f", "similarity")
    (tmp_path / "mymeasures.py").write_text("def f(x, y):\n    return 0.5\n")
    (tmp_path / "conf" / "measure").mkdir(parents=True)
    (tmp_path / "conf" / "measure" / "shape.yaml").write_text("_target_: mymeasures.f\nkind: similarity\n")
    result = run_app(*RUN, f"data.root={small_store}", "measure=shape", "--config-dir", "conf", cwd=tmp_path)
    assert one_error(result).endswith("Error: measure shape (_target_: mymeasures.f): shape is a built-in measure's "
                                      "name; name your measure's file otherwise")
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize("overrides, message", [
    (["measure=shape", "measure.alpha=1.5"], "Error: measure.alpha=1.5: expected a number from 0"),
    (["measure=shape", "measure.alpha=-0.1"], "Error: measure.alpha=-0.1: expected a number from 0"),
    (["measure=svcca", "measure.variance=0"], "Error: measure.variance=0.0: expected a share of the variance"),
    (["measure=svcca", "measure.variance=1.5"], "Error: measure.variance=1.5: expected a share of the variance"),
    (["measure=mknn", "measure.k=0"], "Error: measure.k=0: expected 1 or more neighbours per city"),
])
def test_a_setting_out_of_its_range_is_refused_with_one_line(small_store, tmp_path, overrides, message):
    result = run_app(*RUN, f"data.root={small_store}", *overrides, cwd=tmp_path)
    assert one_error(result).startswith(message)
    assert not (tmp_path / "outputs").exists()


def test_more_neighbours_than_cities_fail_the_job_naming_measure_k(small_store, tmp_path):
    # the small store's pt2-1 and pt2-2_seed1 share 50 cities the default filter keeps: k must be under 50
    for k in (50, 60):
        result = run_app(*RUN, f"data.root={small_store}", "measure=mknn", f"measure.k={k}", cwd=tmp_path)
        assert f"measure.k={k}: expected fewer neighbours per city than the 50 cities compared" in one_error(result)
    assert not list(tmp_path.rglob("summary.json"))
    # k = 49: every other city is a neighbour on both sides
    run_dir = compare_into(tmp_path, *RUN, f"data.root={small_store}", "measure=mknn", "measure.k=49")
    assert read_json(run_dir / "summary.json")["final_value"] == 1.0
    with pytest.raises(InputError, match="measure.k=0"):
        MeasureConfig("mknn", k=0)
