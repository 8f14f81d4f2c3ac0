"""Amortized projection models: a network that predicts, from two point clouds, the direction to slice them by.

Paper: K. Nguyen, D. Nguyen, N. Ho, *Self-Attention Amortized Distributional Projection Optimization for
Sliced Wasserstein Point-Cloud Reconstruction*, ICML 2023. Instead of climbing the max direction (max-SW)
or the vMF location (v-DSW) anew for every pair of clouds, one network ``f_psi(X, Y) in S^(d-1)`` is
trained, jointly with the main model, to predict it (the scheme that uses these models and the training
contract are in ``geom_plugins.amortized``).

Every model here has the paper's symmetric form::

    f(X, Y) = (g(X) + g(Y)) / |g(X) + g(Y)|,     g(X) = sum_i a_i h_i(X) in R^d

a pooled summary ``g`` of each cloud (the measure ``sum_i a_i delta_{x_i}``, weights ``a`` included), the
two summaries added: so ``f(X, Y) == f(Y, X)`` exactly (float addition commutes) and ``f`` is invariant
to permuting the points of either cloud (up to the rounding of the sums). Points of zero weight (batch
padding) change nothing. The variants differ in ``h``:

* ``"linear"``: ``h_i = W x_i + c``, so ``g(X) = W mean_a(X) + c``: a linear map of the mean (the
  paper's linear model mixes the points by their index, which is not permutation invariant; pooling
  first is its invariant counterpart);
* ``"attention"``: single-head self-attention, ``h_i = sum_j softmax_j(q_i . k_j / sqrt(h) + log a_j) v_j``
  with ``q, k = W_q x, W_k x`` (``h`` features) and ``v = W_v x + c`` (``d`` features): ``O(N^2 h)`` time;
* ``"efficient"``: the linear-complexity attention of Shen et al. (*Efficient Attention*, WACV 2021)
  the paper adopts, ``h_i = softmax(q_i) (sum_j softmax_j(k_j + log a_j) v_j^T)`` (softmax of the queries
  over their features, of the keys over the points), so that ``g(X) = (sum_i a_i softmax(q_i))^T C`` with the
  ``(h, d)`` context ``C``: ``O(N h d)`` time and memory.

Parameters are initialised from a seeded generator (``seed``), so a model is reproducible without
torch's global RNG. Inputs are ``(B, N, d)`` clouds with ``(B, N)`` weights; outputs ``(B, d)`` unit rows.
"""

from __future__ import annotations

import abc
import math

import torch
from torch import nn

from .._checks import check_int, check_positive_int, describe

__all__ = ["VARIANTS", "AmortizedModel", "AttentionAmortizer", "EfficientAttentionAmortizer", "LinearAmortizer",
           "amortized_model"]


def _linear(n_in: int, n_out: int, generator: torch.Generator, bias: bool = True) -> nn.Linear:
    """``nn.Linear`` with PyTorch's default law, ``U(-1/sqrt(n_in), 1/sqrt(n_in))``, drawn from ``generator``."""
    layer = nn.Linear(n_in, n_out, bias=bias, device="meta").to_empty(device="cpu")  # no draw from the global RNG
    bound = 1.0 / math.sqrt(n_in)
    with torch.no_grad():
        for param in layer.parameters():
            param.uniform_(-bound, bound, generator=generator)
    return layer


class AmortizedModel(nn.Module, abc.ABC):
    """Base class: ``forward(x, y, a, b) -> (B, d)`` unit rows ``(g(X) + g(Y)) / |g(X) + g(Y)|``.

    Subclasses implement :meth:`pool`, the summary ``g`` of one cloud.

    Args:
        dim: ``d``, the dimension of the points.
        hidden: ``h``, the features of the queries and keys (attention variants).
        seed: the seed of the initial parameters.
    """

    variant = ""

    def __init__(self, dim: int, *, hidden: int = 16, seed: int = 0):
        super().__init__()
        self.dim = check_positive_int(dim, "dim")
        self.hidden = check_positive_int(hidden, "hidden")
        self.seed = check_int(seed, "seed")

    @abc.abstractmethod
    def pool(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """``(B, N, d)`` points, ``(B, N)`` weights summing to 1 -> ``(B, d)`` summary ``g(X)`` (each variant's own)."""

    def forward(self, x: torch.Tensor, y: torch.Tensor, a: torch.Tensor | None = None,
                b: torch.Tensor | None = None) -> torch.Tensor:
        """``x (B, N, d)``, ``y (B, M, d)``, weights ``a (B, N)``, ``b (B, M)`` (default uniform) -> ``(B, d)``."""
        a = self._check(x, a, "x", "a")
        b = self._check(y, b, "y", "b")
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"x, y: expected the same batch size, got {x.shape[0]} and {y.shape[0]}")
        g = self.pool(x, a) + self.pool(y, b)  # (B, d): symmetric, exactly
        return g / g.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(g.dtype).tiny)

    def _check(self, x, w, name: str, w_name: str) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim != 3 or x.shape[-1] != self.dim or x.shape[1] < 1:
            raise ValueError(f"{name}: expected a (B, N, {self.dim}) tensor of points with N >= 1, got "
                             f"{describe(x)}")
        if w is None:
            return x.new_full(x.shape[:2], 1.0 / x.shape[1])
        if not isinstance(w, torch.Tensor) or tuple(w.shape) != tuple(x.shape[:2]):
            raise ValueError(f"{w_name}: expected weights of shape {tuple(x.shape[:2])}, got {describe(w)}")
        return w.to(x.dtype)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, hidden={self.hidden}, seed={self.seed}"


class LinearAmortizer(AmortizedModel):
    """``g(X) = W mean_a(X) + c``: a linear map of the weighted mean (``d^2 + d`` parameters)."""

    variant = "linear"

    def __init__(self, dim: int, *, hidden: int = 16, seed: int = 0):
        super().__init__(dim, hidden=hidden, seed=seed)
        self.value = _linear(self.dim, self.dim, torch.Generator().manual_seed(self.seed))

    def pool(self, x, a):
        return self.value(torch.bmm(a[:, None, :], x)[:, 0])  # (B, d)


class _Attention(AmortizedModel):
    """Queries and keys ``(h)`` and values ``(d)`` of the points: the parameters of both attention variants."""

    def __init__(self, dim: int, *, hidden: int = 16, seed: int = 0):
        super().__init__(dim, hidden=hidden, seed=seed)
        g = torch.Generator().manual_seed(self.seed)
        self.query = _linear(self.dim, self.hidden, g)
        self.key = _linear(self.dim, self.hidden, g)
        self.value = _linear(self.dim, self.dim, g)


class AttentionAmortizer(_Attention):
    """Single-head self-attention over the points of each cloud, pooled by the weights: ``O(N^2)``."""

    variant = "attention"

    def pool(self, x, a):
        q, k, v = self.query(x), self.key(x), self.value(x)  # (B, N, h), (B, N, h), (B, N, d)
        logits = torch.bmm(q, k.transpose(1, 2)) / math.sqrt(self.hidden) + a.log()[:, None, :]  # (B, N, N)
        attention = torch.softmax(logits, dim=-1)  # rows: the weighted softmax over the keys
        return torch.bmm(torch.bmm(a[:, None, :], attention), v)[:, 0]  # (B, d): sum_i a_i h_i


class EfficientAttentionAmortizer(_Attention):
    """Efficient attention (softmax of queries over features, of keys over points): ``O(N h d)``."""

    variant = "efficient"

    def pool(self, x, a):
        q = torch.softmax(self.query(x), dim=-1)  # (B, N, h)
        keys = torch.matmul(self.key.weight, x.transpose(1, 2)) + self.key.bias[:, None]  # (B, h, N)
        k = torch.softmax(keys + a.log()[:, None, :], dim=-1)  # (B, h, N): weighted, over the points
        context = torch.bmm(k, self.value(x))  # (B, h, d)
        return torch.bmm(torch.bmm(a[:, None, :], q), context)[:, 0]  # (B, d)


VARIANTS: dict[str, type[AmortizedModel]] = {
    "attention": AttentionAmortizer,
    "efficient": EfficientAttentionAmortizer,
    "linear": LinearAmortizer,
}
"""Variant name -> model class."""


def amortized_model(variant: str, dim: int, *, hidden: int = 16, seed: int = 0) -> AmortizedModel:
    """The amortized model ``variant`` (``"linear"``, ``"attention"`` or ``"efficient"``) for points in R^dim.

    >>> import torch
    >>> f = amortized_model("efficient", 3)
    >>> x, y = torch.randn(2, 10, 3), torch.randn(2, 7, 3)
    >>> torch.equal(f(x, y), f(y, x)), tuple(f(x, y).shape)
    (True, (2, 3))
    """
    if not isinstance(variant, str) or variant not in VARIANTS:
        raise ValueError(f"variant: expected one of {', '.join(map(repr, sorted(VARIANTS)))}, got {variant!r}")
    return VARIANTS[variant](dim, hidden=hidden, seed=seed)
