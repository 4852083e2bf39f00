"""Centered kernel alignment (Kornblith et al. 2019) as pure tensor functions.

Conventions: rows are examples (cities), columns are features. Every function
centres the features itself and accumulates in float64 whatever the input dtype,
on the input's device.
"""

import torch
from torch import Tensor

# A representation counts as constant when centring removes all but this fraction of
# its norm: far below float32 resolution (1e-7), far above float64 rounding (1e-16).
_CONSTANT_RTOL = 1e-12


class ZeroVarianceError(ValueError):
    """CKA is 0/0 when a representation is constant across examples."""


def center_columns(x: Tensor) -> Tensor:
    """X - 1 mean(X): subtract each feature's mean over the examples."""
    return x - x.mean(dim=0, keepdim=True)


def _centred_float64(x: Tensor, side: str) -> Tensor:
    x64 = x.to(torch.float64)
    xc = center_columns(x64)
    if torch.linalg.matrix_norm(xc) <= _CONSTANT_RTOL * torch.linalg.matrix_norm(x64):
        raise ZeroVarianceError(f"CKA is undefined: the {side} representation is constant across examples")
    return xc


def linear_cka(x: Tensor, y: Tensor) -> Tensor:
    """Linear CKA of two representations (n x d1, n x d2) of the same n examples.

        CKA(X, Y) = ||Y_c^T X_c||_F^2 / (||X_c^T X_c||_F ||Y_c^T Y_c||_F)

    with X_c, Y_c column-centred. This feature-space form equals
    HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)) for K = X X^T, L = Y Y^T, but costs
    O(n d^2) time and O(d^2) memory and never builds an n x n matrix. Centring the
    features before any product keeps large feature offsets from cancelling
    catastrophically. Returns a float64 scalar in [0, 1]; raises ZeroVarianceError
    when either side is constant.
    """
    if x.dim() != 2 or y.dim() != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"expected (n, d1) and (n, d2) with the same n, got {tuple(x.shape)} and {tuple(y.shape)}")
    xc = _centred_float64(x, "first")
    yc = _centred_float64(y, "second")
    cross = torch.linalg.matrix_norm(yc.T @ xc) ** 2
    return cross / (torch.linalg.matrix_norm(xc.T @ xc) * torch.linalg.matrix_norm(yc.T @ yc))
