"""The field's standard measures beside CKA, as pure tensor functions: the shape metric, SVCCA,
mutual k-nearest neighbours and RSA.

Each measure is two steps, so that a sweep prepares each instance once and a comparison costs
only its cross term: a `*_prepared` function of one side's rows (n, d) (cities as rows), and a
function of two prepared sides named after the measure's formula. Everything is computed in
float64 on the input's device. Each is symmetric in its two sides. A side for which the measure
has no value (constant rows, a zero row for cosine) raises UndefinedMeasureError.
"""

import functools
import math
from typing import NamedTuple

import torch
from torch import Tensor

from cka_hydra.cka import UndefinedMeasureError, centred

# the shape metric's whitening: eigenvalues of X^T X below this count as this (netrep's eigval_tol)
EIGENVALUE_FLOOR = 1e-7
# rows of an n x n similarity matrix built at once (mutual kNN, RSA): 8 n * ROW_BLOCK bytes
ROW_BLOCK = 1024


# --- the shape metric (Williams et al. 2021) ---

def shape_prepared(x: Tensor, alpha: float = 1.0, center: bool = True, side: str = "first") -> Tensor:
    """One side of the shape metric: X (column-centred when `center`) scaled to unit Frobenius
    norm, partially whitened,

        X_w = X V diag(alpha + (1 - alpha) lambda^(-1/2)) V^T

    with X^T X = V diag(lambda) V^T (eigenvalues floored at EIGENVALUE_FLOOR, a share of the
    total variance), and scaled to unit norm again. alpha = 1 leaves X as it is (rotations only);
    alpha = 0 whitens it fully (any invertible linear map). As netrep's LinearMetric(alpha,
    center_columns), but for the first scaling: netrep whitens by X's raw X^T X, which makes a
    value at 0 < alpha < 1 depend on the data's units and number of rows; here it does not."""
    if center:
        xw = centred(x, torch.float64, side, "the shape metric")
    else:
        xw = x.to(torch.float64, copy=True)
    xw = _unit_norm(xw, side)
    if alpha < 1 - EIGENVALUE_FLOOR:
        eigenvalues, vectors = torch.linalg.eigh(xw.mT @ xw)
        scale = alpha + (1 - alpha) * eigenvalues.clamp(min=EIGENVALUE_FLOOR).rsqrt()
        xw = _unit_norm((xw @ vectors) * scale[..., None, :] @ vectors.mT, side)
    return xw


def _unit_norm(x: Tensor, side: str) -> Tensor:
    norm = torch.linalg.matrix_norm(x)
    if (norm == 0).any():
        raise UndefinedMeasureError(f"the shape metric is undefined: the {side} representation is all zeros")
    return x / norm[..., None, None]


def angular_shape_distance(xw: Tensor, yw: Tensor) -> Tensor:
    """The angle between two prepared sides after the best rotation of one onto the other:

        theta = arccos ||X_w^T Y_w||_*  =  2 arcsin(||X_w - Y_w Q||_F / 2)

    (||.||_* the nuclear norm; Q = V U^T from X_w^T Y_w = U S V^T, the rotation of the narrower
    side into the wider's space that maximises <X_w, Y_w Q>). Computed by the chord, which keeps
    its precision near 0 where arccos loses half of it. 0 for the same shape, at most pi/2 (a
    centred side); a metric. yw may be a batch (..., n, d)."""
    u, _, vh = torch.linalg.svd(xw.mT @ yw, full_matrices=False)
    if xw.shape[-1] >= yw.shape[-1]:  # the narrower side turned: its norm stays 1
        chord = torch.linalg.matrix_norm(yw @ (u @ vh).mT - xw)
    else:
        chord = torch.linalg.matrix_norm(xw @ (u @ vh) - yw)
    return 2 * torch.arcsin((chord / 2).clamp(max=1))


def shape_metric(x: Tensor, y: Tensor, alpha: float = 1.0, center: bool = True) -> Tensor:
    return angular_shape_distance(shape_prepared(x, alpha, center, "first"), shape_prepared(y, alpha, center, "second"))


# --- SVCCA (Raghu et al. 2017) ---

def svcca_basis(x: Tensor, variance: float | None = 0.99, components: int | None = None,
                side: str = "first") -> Tensor:
    """One side of SVCCA: an orthonormal basis U_k (n, k) of its centred rows' top k singular
    directions, X_c = U S V^T: k the fewest components whose squared singular values hold
    `variance` of the total (at most its rank), or `components` when variance is None. Refuses
    components beyond the side's rank (its directions there would be arbitrary)."""
    xc = centred(x, torch.float64, side, "SVCCA")
    u, s, _ = torch.linalg.svd(xc, full_matrices=False)
    rank = int((s > s[0] * max(xc.shape) * torch.finfo(s.dtype).eps).sum())
    if variance is not None:
        share = torch.cumsum(s**2, 0) / (s**2).sum()
        k = min(int((share < variance).sum()) + 1, rank)  # never a direction of no variance
    else:
        k = components
        if k > rank:
            raise UndefinedMeasureError(f"SVCCA with {k} components: the {side} representation has rank {rank}")
    return u[:, :k]


def mean_canonical_correlation(ux: Tensor, uy: Tensor) -> Tensor:
    """The mean of the min(k_x, k_y) canonical correlations of two sides given orthonormal bases
    of their spans: the singular values of U_x^T U_y (the cosines of the principal angles). uy
    may be a batch (..., n, k)."""
    return torch.linalg.svdvals(ux.mT @ uy).clamp(max=1).mean(-1)


def svcca(x: Tensor, y: Tensor, variance: float | None = 0.99, components: int | None = None) -> Tensor:
    return mean_canonical_correlation(svcca_basis(x, variance, components, "first"),
                                      svcca_basis(y, variance, components, "second"))


# --- mutual k-nearest neighbours (Huh et al. 2024) ---

def nearest_neighbours(x: Tensor, k: int = 10, metric: str = "cosine", side: str = "first") -> Tensor:
    """Each row's k nearest other rows (n, k), by cosine similarity (rows scaled to unit norm) or
    Euclidean distance; a row is never its own neighbour. Of rows equally near at the k-th place
    the first ones are taken. Memory 8 n * ROW_BLOCK bytes at a time."""
    n = x.shape[0]
    if not 1 <= k < n:
        raise UndefinedMeasureError(f"mutual kNN with k={k} needs more than k cities, got {n}")
    rows = x.to(torch.float64)
    if metric == "cosine":
        norms = torch.linalg.vector_norm(rows, dim=1, keepdim=True)
        if (norms == 0).any():
            raise UndefinedMeasureError(f"cosine similarity is undefined: the {side} representation has a zero row")
        rows = rows / norms
    squared = (rows * rows).sum(1)
    found = []
    for start in range(0, n, ROW_BLOCK):
        block = slice(start, min(start + ROW_BLOCK, n))
        nearness = rows[block] @ rows.T
        if metric != "cosine":  # -||x_i - x_j||^2, up to the row's own term
            nearness = 2 * nearness - squared[None, :]
        nearness[torch.arange(block.stop - start), torch.arange(start, block.stop)] = -math.inf
        found.append(_top(nearness, k))
    return torch.cat(found)


def _top(nearness: Tensor, k: int) -> Tensor:
    """The k largest of each row, the first columns of those tied at the k-th place."""
    values, top = torch.topk(nearness, k + 1, dim=1)
    tied = values[:, k - 1] == values[:, k]
    if tied.any():  # the rare row with a tie at the boundary: a stable order decides
        top[tied] = torch.sort(nearness[tied], dim=1, descending=True, stable=True).indices[:, :k + 1]
    return top[:, :k]


def mutual_knn_alignment(nx: Tensor, ny: Tensor) -> Tensor:
    """The mean over cities of the share of a city's k nearest neighbours that both sides have:
    mean_i |N_x(i) & N_y(i)| / k. ny may be a batch (..., n, k)."""
    shared = (nx[..., :, :, None] == ny[..., :, None, :]).any(-1).sum(-1)
    return shared.to(torch.float64).mean(-1) / nx.shape[-1]


def permuted_neighbours(neighbours: Tensor, perms: Tensor) -> Tensor:
    """The neighbours of the rows re-paired by perms ((n,) or (B, n)): row i of the permuted side
    is row P[i], and its neighbour j there is P^-1(j)."""
    inverse = torch.argsort(perms, dim=-1)
    moved = neighbours[perms]  # (..., n, k) in the old labels
    return torch.gather(inverse, -1, moved.flatten(-2)).view_as(moved)


def mutual_knn(x: Tensor, y: Tensor, k: int = 10, metric: str = "cosine") -> Tensor:
    return mutual_knn_alignment(nearest_neighbours(x, k, metric, "first"), nearest_neighbours(y, k, metric, "second"))


# --- RSA (representational similarity analysis) ---

class RankedRDM(NamedTuple):
    """One side of RSA: the ranks of its RDM's upper triangle (row by row), centred and scaled to
    unit norm, and its number of cities."""

    ranks: Tensor
    n: int


def dissimilarities(x: Tensor, rdm: str = "correlation", side: str = "first") -> Tensor:
    """The upper triangle (i < j, row by row) of the representational dissimilarity matrix:
    1 - the Pearson correlation of rows i and j (rsatoolbox's "correlation"), or the squared
    Euclidean distance (rsatoolbox's "euclidean" up to a factor, which no rank sees)."""
    rows = x.to(torch.float64)
    n = rows.shape[0]
    if rdm == "correlation":
        rows = rows - rows.mean(1, keepdim=True)
        norms = torch.linalg.vector_norm(rows, dim=1, keepdim=True)
        if (norms == 0).any():
            raise UndefinedMeasureError(f"RSA's correlation distance is undefined: the {side} representation has a "
                                        "row constant across features")
        rows = rows / norms
    squared = (rows * rows).sum(1)
    upper = []
    for start in range(0, n, ROW_BLOCK):
        stop = min(start + ROW_BLOCK, n)
        block = rows[start:stop] @ rows.T
        block = 1 - block if rdm == "correlation" else squared[start:stop, None] + squared[None, :] - 2 * block
        upper += [block[i, start + i + 1:] for i in range(stop - start)]  # row by row: faster than a mask
    return torch.cat(upper)


def average_ranks(values: Tensor) -> Tensor:
    """The ranks of values (1-based), ties given their mean rank (scipy's rankdata, "average")."""
    ordered, order = torch.sort(values)
    starts = torch.ones_like(ordered, dtype=torch.bool)
    starts[1:] = ordered[1:] != ordered[:-1]
    rank = torch.arange(1, len(values) + 1, dtype=torch.float64, device=values.device)
    if not starts.all():  # tied values: each run of them takes its mean rank
        first = torch.nonzero(starts).flatten()
        counts = torch.diff(first, append=torch.tensor([len(values)], device=values.device))
        rank = (first.to(torch.float64) + (counts + 1) / 2)[torch.cumsum(starts, 0) - 1]
    return torch.empty_like(rank).index_copy_(0, order, rank)


def rsa_prepared(x: Tensor, rdm: str = "correlation", side: str = "first") -> RankedRDM:
    """One side of RSA: its dissimilarities ranked, centred and scaled to unit norm, so that the
    Spearman correlation of two sides is the dot product of theirs."""
    ranks = average_ranks(dissimilarities(x, rdm, side))
    ranks -= ranks.mean()
    norm = torch.linalg.vector_norm(ranks)
    if norm == 0:
        raise UndefinedMeasureError(f"RSA is undefined: the {side} representation's dissimilarities are all equal")
    return RankedRDM(ranks / norm, x.shape[0])


def spearman_of_ranked(a: RankedRDM, b: RankedRDM) -> Tensor:
    """The Spearman correlation of two RDMs' upper triangles: the Pearson correlation of their
    ranks. b.ranks may be a batch (B, m)."""
    return b.ranks @ a.ranks


def permuted_rdm(ranked: RankedRDM, perms: Tensor) -> RankedRDM:
    """The ranked RDM of the cities re-paired by perms ((n,) or (B, n)): entry (i, j) of the
    permuted side is entry (P[i], P[j]), i.e. (min, max) of those, of the side's upper triangle,
    at position low (2n - 1 - low) / 2 + high - low - 1 there."""
    n = ranked.n
    i, j = _upper_pairs(n, str(perms.device))
    perms = perms.to(torch.int32)
    a, b = perms[..., i], perms[..., j]
    low, high = torch.minimum(a, b), torch.maximum(a, b)
    return RankedRDM(ranked.ranks[low * (2 * n - 1 - low) // 2 + high - low - 1], n)


@functools.lru_cache(maxsize=1)
def _upper_pairs(n: int, device: str) -> tuple[Tensor, Tensor]:
    """The (i, j), i < j, of an upper triangle, row by row, as int32 (a permutation test's every
    permutation uses them)."""
    i, j = torch.triu_indices(n, n, 1, device=device).to(torch.int32)
    return i, j


def rsa(x: Tensor, y: Tensor, rdm: str = "correlation") -> Tensor:
    return spearman_of_ranked(rsa_prepared(x, rdm, "first"), rsa_prepared(y, rdm, "second"))
