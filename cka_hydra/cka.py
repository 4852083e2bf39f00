"""The similarity measures as pure tensor functions: centered kernel alignment (Kornblith et
al. 2019), principal components, and Procrustes disparity.

Conventions: rows are examples (cities), columns are features; inputs may carry
leading batch dimensions, (..., n, d), and then give one value per batch item.
Every estimator centres the features before any product and computes in `dtype`
(float64 unless asked otherwise) on the input's device, so large per-feature
offsets never cancel catastrophically.

    CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))

with K, L the examples' Gram matrices under a kernel. The biased estimator uses
HSIC(K, L) = <H K H, H L H> (H the centring matrix, the 1/(n-1)^2 factor cancels);
the debiased one uses the unbiased HSIC of Song et al. (2012), as in Kornblith et al.
and Nguyen et al. (2021). Debiased CKA needs n >= 4 and can be slightly negative.
"""

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

# An RBF kernel counts as the identity when its off-diagonal entries weigh less than this
# fraction of its diagonal (squared Frobenius norms): CKA is then 1 to about this much, whatever
# the data (a bandwidth far below the typical distance between examples).
IDENTITY_KERNEL = 1e-6
# A representation counts as constant when centring removes all but this fraction of
# its norm: far below float32 resolution (1e-7), far above float64 rounding (1e-16).
_CONSTANT_RTOL = 1e-12
DEFAULT_BLOCK_SIZE = 256  # fastest of 128-1024 at n = 4500-5000 on a 2-core CPU
DEFAULT_CACHE_BYTES = 2**30  # a kernel up to 1 GiB (n <= 11585 in float64) is built once

KernelBlocks = Callable[[slice], Tensor]  # rows -> the kernel matrix's rows K[rows, :]


class UndefinedMeasureError(ValueError):
    """The measure has no value for this input (0/0). `index` is the offending batch item, or None."""

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


def centred(x: Tensor, dtype: torch.dtype = torch.float64, side: str = "first", measure: str = "CKA") -> Tensor:
    """X - 1 mean(X) in dtype: each feature's mean over the examples subtracted. Raises
    UndefinedMeasureError (naming the side and the measure) for a constant representation."""
    xc = x.to(dtype, copy=True)  # centred in place: one copy of each side in memory, not two
    norm = torch.linalg.matrix_norm(xc)
    xc -= xc.mean(dim=-2, keepdim=True)
    constant = torch.linalg.matrix_norm(xc) <= _CONSTANT_RTOL * norm
    if constant.any():
        index = None if constant.dim() == 0 else int(constant.flatten().nonzero()[0])
        raise UndefinedMeasureError(f"{measure} is undefined: the {side} representation is constant across examples",
                                    index)
    return xc


def _check_pair(x: Tensor, y: Tensor, debiased: bool) -> None:
    if x.dim() < 2 or x.shape[:-1] != y.shape[:-1]:
        raise ValueError(
            f"expected (..., n, d1) and (..., n, d2) with the same n, got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    if debiased and x.shape[-2] < 4:
        raise ValueError(f"debiased CKA needs at least 4 examples, got {x.shape[-2]}")


def cka_ratio(cross: Tensor, self_x: Tensor, self_y: Tensor) -> Tensor:
    """CKA from its three terms: HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)). Raises
    UndefinedMeasureError when a self-term is not positive."""
    bad = (self_x <= 0) | (self_y <= 0)
    if bad.any():
        index = None if bad.dim() == 0 else int(bad.flatten().nonzero()[0])
        raise UndefinedMeasureError("CKA is undefined: a representation's estimated self-similarity is not positive",
                                    index)
    return cross / torch.sqrt(self_x * self_y)


def _unbiased_hsic(xty: Tensor, rows_x: Tensor, rows_y: Tensor, sq_x: Tensor, sq_y: Tensor, n: int) -> Tensor:
    """(n-1)(n-2) HSIC_u(K, L) for linear kernels of centred X, Y (Kornblith et al.'s helper):

        ||Y^T X||_F^2 - n/(n-2) sum_i K_ii L_ii + ||X||_F^2 ||Y||_F^2 / ((n-1)(n-2))

    with rows_x = diag(K), sq_x = trace(K) = ||X||_F^2.
    """
    return xty - n / (n - 2) * (rows_x * rows_y).sum(-1) + sq_x * sq_y / ((n - 1) * (n - 2))


def linear_hsic(xc: Tensor, yc: Tensor, debiased: bool = False) -> Tensor:
    """HSIC of linear kernels of centred X, Y, up to a factor that cancels in CKA:

        ||Y_c^T X_c||_F^2 = <X_c X_c^T, Y_c Y_c^T>

    in feature space, O(n d1 d2) time, never n x n; `debiased`: (n-1)(n-2) HSIC_u (_unbiased_hsic).
    linear_hsic(xc, xc) is X's self-term, ||X_c^T X_c||_F^2."""
    value = torch.linalg.matrix_norm(yc.mT @ xc) ** 2
    if not debiased:
        return value
    rows_x, rows_y = (xc * xc).sum(-1), (yc * yc).sum(-1)
    return _unbiased_hsic(value, rows_x, rows_y, rows_x.sum(-1), rows_y.sum(-1), xc.shape[-2])


def linear_cka(x: Tensor, y: Tensor, debiased: bool = False, dtype: torch.dtype = torch.float64) -> Tensor:
    """Linear CKA of two representations (..., n, d1) and (..., n, d2) of the same n examples.

        CKA(X, Y) = ||Y_c^T X_c||_F^2 / (||X_c^T X_c||_F ||Y_c^T Y_c||_F)

    with X_c, Y_c column-centred: the Gram-route value for K = X X^T, L = Y Y^T,
    computed in feature space in O(n d^2) time and O(d^2) memory, never n x n.
    `debiased` replaces each squared norm by the unbiased HSIC, still from features.
    Raises UndefinedMeasureError when either side is constant.
    """
    _check_pair(x, y, debiased)
    xc, yc = centred(x, dtype, "first"), centred(y, dtype, "second")
    return cka_ratio(linear_hsic(xc, yc, debiased), linear_hsic(xc, xc, debiased), linear_hsic(yc, yc, debiased))


def squared_distances(xc: Tensor, rows: slice) -> Tensor:
    """||x_i - x_j||^2 for i in rows and every j, from centred features (clamped at 0)."""
    sq = (xc * xc).sum(-1)
    block = sq[rows, None] + sq[None, :] - 2 * xc[rows] @ xc.T
    return block.clamp_(min=0)


def median_squared_distance(xc: Tensor, block_size: int = DEFAULT_BLOCK_SIZE) -> Tensor:
    """The median of all n^2 squared pairwise distances, diagonal included, as numpy's median
    takes it (the mean of the two middle values when n^2 is even)."""
    return _median_of_all(_upper_distances(xc, block_size), xc.shape[0])


def _upper_distances(xc: Tensor, block_size: int) -> Tensor:
    """The n(n-1)/2 squared distances of the upper triangle. The n^2 values are n zeros and each
    of these twice, so only these are held: 4 n^2 bytes in float64."""
    n = xc.shape[0]
    upper = torch.empty(n * (n - 1) // 2, dtype=xc.dtype, device=xc.device)
    filled = 0
    for start in range(0, n, block_size):
        filled = _fill_upper(upper, filled, squared_distances(xc, slice(start, min(start + block_size, n))), start)
    return upper


def _fill_upper(upper: Tensor, filled: int, block: Tensor, start: int) -> int:
    """Copy the upper-triangle part of the row block K[start:start + len(block), :] after upper's
    first `filled` items; returns how many it holds then."""
    for i in range(block.shape[0]):
        row = block[i, start + i + 1:]
        upper[filled:filled + len(row)] = row
        filled += len(row)
    return filled


def _median_of_all(upper: Tensor, n: int) -> Tensor:
    """The median of the n^2 distances (n zeros, and each of upper twice); three times upper's
    memory while an order statistic is selected (a copy, and on a GPU torch's index array)."""
    def sorted_item(position: int) -> Tensor:  # the item at a 0-based position of all n^2, sorted
        if position < n:
            return torch.zeros((), dtype=upper.dtype, device=upper.device)
        return _order_statistic(upper, (position - n) // 2)

    middle = n * n // 2
    if n % 2:
        return sorted_item(middle)
    return (sorted_item(middle - 1) + sorted_item(middle)) / 2


def _order_statistic(values: Tensor, k: int) -> Tensor:
    """The k-th smallest of values (0-based): numpy's introselect on the CPU (faster there than
    torch.kthvalue), torch's on a GPU."""
    if values.device.type == "cpu":
        return torch.tensor(np.partition(values.numpy(), k)[k], dtype=values.dtype)
    return torch.kthvalue(values, k + 1).values


def linear_kernel(xc: Tensor) -> KernelBlocks:
    """K = X X^T, row block by row block."""
    return lambda rows: xc[rows] @ xc.T


def rbf_kernel(xc: Tensor, sigma_frac: float, block_size: int = DEFAULT_BLOCK_SIZE) -> KernelBlocks:
    """K_ij = exp(-||x_i - x_j||^2 / (2 sigma^2)), row block by row block.

    Kornblith et al.'s bandwidth: sigma^2 = sigma_frac^2 * median of the n^2 squared
    distances (diagonal included; numpy's median, see median_squared_distance).
    """
    scale = _rbf_scale(_upper_distances(xc, block_size), xc.shape[0], sigma_frac)
    return lambda rows: squared_distances(xc, rows).mul_(scale).exp_()


def rbf_gram(xc: Tensor, sigma_frac: float) -> Tensor:
    """The whole RBF kernel matrix (n, n) of rbf_kernel, its distances computed once: 8 n^2 bytes
    in float64, and 4 n^2 more while its bandwidth is found."""
    n = xc.shape[0]
    gram = squared_distances(xc, slice(0, n))
    upper = torch.empty(n * (n - 1) // 2, dtype=xc.dtype, device=xc.device)
    _fill_upper(upper, 0, gram, 0)
    return gram.mul_(_rbf_scale(upper, n, sigma_frac)).exp_()


def _rbf_scale(upper: Tensor, n: int, sigma_frac: float) -> float:
    """-1 / (2 sigma^2) for the distances of an upper triangle (see rbf_kernel); refuses a bandwidth
    of 0 and one at which the kernel is numerically the identity."""
    median = _median_of_all(upper, n)
    if median <= 0:
        raise UndefinedMeasureError("RBF bandwidth is undefined: the median squared distance between examples is 0")
    scale = -1 / (2 * sigma_frac**2 * median)
    # ||K - I||_F^2 / ||I||_F^2: how far the kernel is from the identity, at which CKA is 1 whatever the data
    off_diagonal = float(2 * torch.exp(upper * (2 * scale)).sum() / n)
    if off_diagonal < IDENTITY_KERNEL:
        raise UndefinedMeasureError(
            f"the RBF kernel is numerically the identity at sigma_frac={sigma_frac}: its off-diagonal entries weigh "
            f"{off_diagonal:.1e} of its diagonal (squared), so CKA would be 1 whatever the data; choose a larger "
            "cka.sigma_frac")
    return float(scale)


def gram_cka(
    k: KernelBlocks, l: KernelBlocks, n: int, debiased: bool = False, block_size: int = DEFAULT_BLOCK_SIZE,
    cache_bytes: int = DEFAULT_CACHE_BYTES,
) -> Tensor:
    """CKA from two kernels given row block by row block: <K_c, L_c> / (||K_c||_F ||L_c||_F),
    each centred as centred_blocks says. Memory O(block_size * n) for kernels larger than
    cache_bytes (computed again in the second pass), else one kernel each."""
    cross = self_k = self_l = 0
    for kc, lc in zip(centred_blocks(k, n, debiased, block_size, cache_bytes),
                      centred_blocks(l, n, debiased, block_size, cache_bytes)):
        cross = cross + (kc * lc).sum()
        self_k = self_k + (kc * kc).sum()
        self_l = self_l + (lc * lc).sum()
    return cka_ratio(cross, self_k, self_l)


def centred_gram(k: Tensor, debiased: bool = False, block_size: int = DEFAULT_BLOCK_SIZE) -> Tensor:
    """A whole kernel matrix (n, n) centred in place (centred_blocks, over views of it): a prepared
    instance's self-term is then ||K_c||_F^2 and a comparison's cross term <K_c, L_c>."""
    for _ in centred_blocks(lambda rows: k[rows], k.shape[0], debiased, block_size, cache_bytes=2**62):
        pass  # each block is a view of k, centred in place as it is yielded
    return k


def gram_hsic(kc: Tensor, lc: Tensor) -> Tensor:
    """<K_c, L_c>, the HSIC of two centred kernel matrices (n, n) up to a factor that cancels in
    CKA: one pass, no temporary of their size. lc may be a batch (..., n, n)."""
    return lc.reshape(*lc.shape[:-2], -1) @ kc.reshape(-1)


def centred_blocks(k: KernelBlocks, n: int, debiased: bool, block_size: int, cache_bytes: int) -> Iterator[Tensor]:
    """The centred kernel's row blocks, in order.

    Centring, as Kornblith et al.'s center_gram: biased, K_c = H K H = K - r 1^T - 1 r^T + mean(r)
    with r the row means; debiased (unbiased HSIC), K~ = K with a zero diagonal,
    m = colsum(K~) / (n-2) - sum(colsum(K~)) / (2 (n-1)(n-2)), K_c = K~ - m 1^T - 1 m^T with
    a zero diagonal.

    Two passes: one for the centring vectors, one for the blocks. A kernel that fits in
    cache_bytes is kept between them; a larger one is computed again, so that memory stays
    O(block_size * n).
    """
    blocks = [slice(start, min(start + block_size, n)) for start in range(0, n, block_size)]
    sums, kept = [], []
    for rows in blocks:
        block = _block(k, rows, debiased)
        sums.append(block.sum(-1))
        if block.element_size() * n * n <= cache_bytes:
            kept.append(block)
    total = torch.cat(sums)
    if debiased:
        m = total / (n - 2)
        a, c = m - m.sum() / (2 * (n - 1)), torch.zeros((), dtype=total.dtype, device=total.device)
    else:
        a = total / n
        c = a.mean()
    for i, rows in enumerate(blocks):
        if kept:  # centred in place, and let go of: the caller holds what it keeps
            kc, kept[i] = kept[i], None
        else:
            kc = _block(k, rows, debiased)
        kc.sub_(a[rows, None]).sub_(a[None, :]).add_(c)
        if debiased:
            _diagonal(kc, rows).zero_()
        yield kc


def _block(kernel: KernelBlocks, rows: slice, zero_diagonal: bool) -> Tensor:
    block = kernel(rows)
    if zero_diagonal:
        _diagonal(block, rows).zero_()
    return block


def _diagonal(block: Tensor, rows: slice) -> Tensor:
    """The entries (i, i) of a row block K[rows, :], as a view."""
    return block[:, rows.start:rows.stop].diagonal()


def rbf_cka(
    x: Tensor, y: Tensor, sigma_frac: float = 0.4, debiased: bool = False, dtype: torch.dtype = torch.float64,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> Tensor:
    """CKA with RBF kernels (bandwidth: see rbf_kernel), Gram matrices built in row blocks.

    O(n^2 d) time. Raises ValueError for sigma_frac <= 0. Memory: each kernel is kept whole up to 1 GiB (n <= 11585 in float64),
    else built twice in blocks of O(block_size * n); plus 12 n^2 bytes (float64) while the
    median distance is found: 4.8 GB at n = 20000.
    """
    _check_pair(x, y, debiased)
    if not sigma_frac > 0:
        raise ValueError(f"sigma_frac must be positive, got {sigma_frac}")
    if x.dim() > 2:
        n, d1, d2 = x.shape[-2], x.shape[-1], y.shape[-1]
        values = _per_item(lambda xi, yi: rbf_cka(xi, yi, sigma_frac, debiased, dtype, block_size),
                          x.reshape(-1, n, d1), y.reshape(-1, n, d2))
        return values.reshape(x.shape[:-2])
    xc, yc = centred(x, dtype, "first"), centred(y, dtype, "second")
    k, l = rbf_kernel(xc, sigma_frac, block_size), rbf_kernel(yc, sigma_frac, block_size)
    return gram_cka(k, l, x.shape[0], debiased, block_size)


def _per_item(
    estimator: Callable[[Tensor, Tensor], Tensor], xs: Sequence[Tensor], ys: Sequence[Tensor]
) -> Tensor:
    """estimator on each pair (xs[i], ys[i]) in turn; an UndefinedMeasureError carries the index i."""
    values = []
    for index, (x, y) in enumerate(zip(xs, ys)):
        try:
            values.append(estimator(x, y))
        except UndefinedMeasureError as err:
            raise UndefinedMeasureError(str(err), index) from None
    return torch.stack(values)


def principal_components(x: Tensor, k: int, fit_rows: Tensor | None = None) -> Tensor:
    """The first k principal component scores of every row of x (n, d), the PCA fitted on the
    rows fit_rows (all rows by default) and applied to all:

        Z = (X - 1 mu^T) V_k

    mu the mean of the fit rows, V_k the eigenvectors of the fit rows' scatter matrix
    (X_f - 1 mu^T)^T (X_f - 1 mu^T) with the k largest eigenvalues, each signed so that its
    largest-magnitude entry is positive (scikit-learn's convention). Exact, in float64: an
    eigendecomposition of the d x d matrix, O(n d^2 + d^3), never randomized.
    Raises ValueError when k is not in 1..min(fit rows, d).
    """
    rows = x if fit_rows is None else x[fit_rows]
    if not 1 <= k <= min(rows.shape[0], x.shape[1]):
        raise ValueError(f"{k} principal components need at least {k} fitted rows and {k} features, "
                         f"got {rows.shape[0]} rows of {x.shape[1]} features")
    rows = rows.to(torch.float64)
    mean = rows.mean(dim=0)
    centred = rows - mean
    _, vectors = torch.linalg.eigh(centred.T @ centred)  # eigenvalues ascending
    top = vectors[:, -k:].flip(-1)
    largest = top.abs().argmax(dim=0)
    top = top * torch.sign(top[largest, torch.arange(k, device=top.device)])
    return (x.to(torch.float64) - mean) @ top


def procrustes_disparity(x: Tensor, y: Tensor, dtype: torch.dtype = torch.float64) -> Tensor:
    """Procrustes disparity of (..., n, d1) and (..., n, d2), as scipy.spatial.procrustes computes it:
    both sides column-centred and scaled to unit Frobenius norm, Y rotated (or reflected) and
    scaled onto X as well as can be, and the residual sum of squares left:

        d(X, Y) = min_{R orthogonal, s} ||X_s - s Y_s R||_F^2 = 1 - ||X_s^T Y_s||_*^2

    (||.||_* the nuclear norm, the sum of singular values). 0 for the same shape, at most 1;
    symmetric. A narrower side counts as padded with zero columns, where scipy needs d1 = d2.
    Raises UndefinedMeasureError when either side is constant.
    """
    _check_pair(x, y, debiased=False)
    return procrustes_of_scaled(procrustes_scaled(x, dtype, "first"), procrustes_scaled(y, dtype, "second"))


def procrustes_scaled(x: Tensor, dtype: torch.dtype = torch.float64, side: str = "first") -> Tensor:
    """X_s of procrustes_disparity: column-centred and scaled to unit Frobenius norm."""
    xs = centred(x, dtype, side, "Procrustes")
    xs /= torch.linalg.matrix_norm(xs)[..., None, None]
    return xs


def procrustes_of_scaled(xs: Tensor, ys: Tensor) -> Tensor:
    """1 - ||X_s^T Y_s||_*^2 (at least 0) of two scaled sides (procrustes_scaled); ys may be a batch."""
    return (1 - torch.linalg.matrix_norm(xs.mT @ ys, ord="nuc") ** 2).clamp(min=0)


def bootstrap_interval(
    estimator: Callable[[Tensor, Tensor], Tensor], x: Tensor, y: Tensor, n_resamples: int, confidence: float,
    generator: torch.Generator,
) -> tuple[float, float]:
    """Percentile bootstrap interval of estimator(X, Y), resampling examples (the same rows on
    both sides) with replacement. The estimator must accept a leading batch dimension."""
    n = x.shape[0]
    chunk = max(1, 2**25 // (n * (x.shape[1] + y.shape[1])))  # ~256 MB of float64 resamples at a time
    values = []
    for start in range(0, n_resamples, chunk):
        count = min(chunk, n_resamples - start)
        rows = torch.randint(n, (count, n), generator=generator, device=generator.device).to(x.device)
        values.append(estimator(x[rows], y[rows]).to(torch.float64))
    alpha = (1 - confidence) / 2
    low, high = torch.quantile(torch.cat(values), torch.tensor([alpha, 1 - alpha], dtype=torch.float64,
                                                               device=values[0].device))
    return float(low), float(high)
