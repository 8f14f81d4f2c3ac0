"""SW kernels on collections: the Gaussian SW kernel, kernel models (scikit-learn) and the MMD test."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .._checks import check_int, check_real
from ..sliced import make_generator
from ._base import Embedding, progress_bar
from ._embed import as_embedding
from ._pairwise import pairwise

__all__ = ["KernelModel", "MMDTestResult", "gaussian_kernel", "median_gamma", "mmd_test"]


def _sw2_embedding(X, name: str, like: Embedding | None = None, **embed_options) -> Embedding:
    emb = as_embedding(X, name, like=like, **embed_options)
    if emb.p != 2:
        raise ValueError(f"{name}: the Gaussian SW kernel is positive definite for SW_2, whose embedding distance is "
                         f"Euclidean; got an embedding for p = {emb.p:g} (embed with p=2)")
    return emb


def median_gamma(X: Embedding) -> float:
    """The median heuristic: ``1 / (2 median SW_2^2)`` over the pairs of distinct members of ``X``
    (bandwidth the median distance, ``exp(-d^2 / (2 sigma^2))``, as Gretton et al.'s MMD tests)."""
    return _median_gamma(pairwise(X, condensed=True, progress=False))


def _median_gamma(d: torch.Tensor) -> float:
    """:func:`median_gamma` from the distances ``d`` of the distinct pairs."""
    if d.numel() == 0:
        raise ValueError("gamma: 'median' needs at least 2 measures, got 1")
    m = float(d.square().median())
    if not m > 0:
        raise ValueError("gamma: 'median' found a median squared distance of 0 (most measures coincide); pass a "
                         "positive number")
    return 0.5 / m


def _gamma(gamma, X: Embedding) -> float:
    if isinstance(gamma, str):
        if gamma != "median":
            raise ValueError(f"gamma: expected a positive number or 'median', got {gamma!r}")
        return median_gamma(X)
    return check_real(gamma, "gamma", "> 0 (or 'median')", lambda v: v > 0)


def gaussian_kernel(X, Y=None, *, gamma="median", **options) -> torch.Tensor:
    """The Gaussian SW kernel ``k(a, b) = exp(-gamma SW_2(a, b)^2)``, ``(C1, C2)`` float64.

    ``SW_2`` between embeddings is a Euclidean distance, so this is a Gaussian kernel on vectors:
    positive definite for every ``gamma > 0`` (for uniform measures with ``N = K`` it is the kernel of
    the exact ``SW_2`` on the shared directions).

    Args:
        X, Y: Embeddings (for ``p = 2``) or collections, as in :func:`pairwise`.
        gamma: a positive number, or ``"median"``: ``1 / (2 median SW_2^2)`` over the pairs of ``X``
            (:func:`median_gamma`); for regression a wider kernel (a smaller ``gamma``) often does better.
        **options: of :func:`pairwise` (``block_size``, ``client``, ...) and :func:`embed`.
    """
    pair_keys = {"block_size", "client", "progress", "out"}
    embed_options = {k: v for k, v in options.items() if k not in pair_keys}
    ex = _sw2_embedding(X, "X", **embed_options)
    ey = ex if Y is None or Y is X else _sw2_embedding(Y, "Y", like=ex)
    g = _gamma(gamma, ex)
    d = pairwise(ex, None if ey is ex else ey, **{k: v for k, v in options.items() if k in pair_keys})
    return torch.exp(-g * d.square())


_ESTIMATORS = {"ridge": ("sklearn.kernel_ridge", "KernelRidge"), "svc": ("sklearn.svm", "SVC"),
               "svr": ("sklearn.svm", "SVR")}


class KernelModel:
    """Kernel ridge regression, SVM classification or SVR on measures, with the precomputed SW kernel.

    ``KernelModel("ridge", gamma="median", alpha=1e-3).fit(train, y).predict(test)``, where ``train`` and
    ``test`` are Embeddings on the same directions (or collections: ``test`` is then embedded on
    ``train``'s directions). The estimator is scikit-learn's (``KernelRidge``, ``SVC``, ``SVR``) with
    ``kernel="precomputed"``; ``pip install scikit-learn`` (in ``geom[test]``).

    Args:
        estimator: ``"ridge"``, ``"svc"`` or ``"svr"``.
        gamma: of :func:`gaussian_kernel` (``"median"`` is resolved on the training set at ``fit``).
        **estimator_options: passed to the scikit-learn estimator (``alpha``, ``C``, ...).
    """

    def __init__(self, estimator: str = "ridge", *, gamma="median", **estimator_options):
        if estimator not in _ESTIMATORS:
            raise ValueError(f"estimator: expected one of {', '.join(map(repr, _ESTIMATORS))}, got {estimator!r}")
        if "kernel" in estimator_options:
            raise TypeError("kernel: KernelModel always uses the precomputed Gaussian SW kernel")
        module, name = _ESTIMATORS[estimator]
        try:
            import importlib

            cls = getattr(importlib.import_module(module), name)
        except ImportError as exc:
            raise ImportError(f"KernelModel needs scikit-learn: pip install scikit-learn (or 'geom[test]'); "
                              f"({exc})") from None
        self.estimator = cls(kernel="precomputed", **estimator_options)
        self.gamma = gamma
        self.train_: Embedding | None = None
        self.gamma_: float | None = None

    def fit(self, X, y, **embed_options) -> "KernelModel":
        self.train_ = _sw2_embedding(X, "X", **embed_options)
        self.gamma_ = _gamma(self.gamma, self.train_)
        y = np.asarray(y)
        if y.shape[:1] != (len(self.train_),):
            raise ValueError(f"y: expected {len(self.train_)} targets (one per measure), got shape {y.shape}")
        self.estimator.fit(gaussian_kernel(self.train_, gamma=self.gamma_, progress=False).numpy(), y)
        return self

    def _kernel(self, X) -> np.ndarray:
        if self.train_ is None:
            raise ValueError("KernelModel: call fit before predict or score")
        ex = _sw2_embedding(X, "X", like=self.train_)
        return gaussian_kernel(ex, self.train_, gamma=self.gamma_, progress=False).numpy()

    def predict(self, X) -> np.ndarray:
        return self.estimator.predict(self._kernel(X))

    def score(self, X, y) -> float:
        """R^2 (ridge, svr) or accuracy (svc) on ``(X, y)``."""
        return float(self.estimator.score(self._kernel(X), np.asarray(y)))


@dataclass
class MMDTestResult:
    """Outcome of :func:`mmd_test`.

    Attributes:
        statistic: the unbiased ``MMD^2`` between the two collections under the Gaussian SW kernel.
        pvalue: ``(1 + #{permuted statistic >= statistic}) / (1 + n_permutations)``.
        n_permutations, gamma: as used.
    """

    statistic: float
    pvalue: float
    n_permutations: int
    gamma: float


def _mmd2(K: torch.Tensor, Z: torch.Tensor, n1: int, n2: int) -> torch.Tensor:
    """Unbiased ``MMD^2`` for each row of ``Z (P, C)`` (1 for members of the first group), ``(P,)``."""
    d, rows, total = K.diagonal(), K.sum(1), K.sum()
    s11 = ((Z @ K) * Z).sum(1)  # (P,) sum over pairs within group 1
    s12 = Z @ rows - s11  # (P,) between the groups
    s22 = total - s11 - 2 * s12
    d1 = Z @ d
    d2 = d.sum() - d1
    return (s11 - d1) / (n1 * (n1 - 1)) + (s22 - d2) / (n2 * (n2 - 1)) - 2 * s12 / (n1 * n2)


def mmd_test(X, Y, *, gamma="median", n_permutations: int = 1000, seed: int | None = None,
             generator: torch.Generator | None = None, progress: bool | None = None,
             **embed_options) -> MMDTestResult:
    """MMD two-sample test between two collections of measures, with a permutation p-value.

    Null hypothesis: the members of ``X`` and of ``Y`` are drawn from the same law on measures. The
    statistic is the unbiased ``MMD^2`` under the Gaussian SW kernel of the pooled collection
    (``gamma="median"``: on the pooled pairs); the p-value counts random relabellings of the pooled
    members whose statistic is at least the observed one, ``(1 + #) / (1 + n_permutations)``.

    Args:
        X, Y: Embeddings (``p = 2``, same directions) or collections, at least 2 members each.
        gamma: of :func:`gaussian_kernel`.
        n_permutations: relabellings drawn.
        seed, generator: the randomness of the directions (when ``X`` is a collection and no
            ``directions`` are given) and then of the relabellings (one of them; neither: torch's global RNG).
        progress: a tqdm bar over the chunks of relabellings.
        **embed_options: options of :func:`embed` for collections.
    """
    P = check_int(n_permutations, "n_permutations", minimum=1)
    gen = make_generator(seed, generator)
    if not isinstance(X, Embedding) and "directions" not in embed_options:
        embed_options = dict(embed_options, generator=gen)  # the directions first, then the relabellings
    ex = _sw2_embedding(X, "X", **embed_options)
    ey = _sw2_embedding(Y, "Y", like=ex)
    for name, e in (("X", ex), ("Y", ey)):
        if len(e) < 2:
            raise ValueError(f"{name}: expected a collection of at least 2 measures, got {len(e)}")
    # the pooled matrix from its three blocks (each collection keeps its own origin)
    dxy = pairwise(ex, ey, progress=False)
    D = torch.cat([torch.cat([pairwise(ex, progress=False), dxy], 1), torch.cat([dxy.T, pairwise(ey, progress=False)],
                                                                               1)])  # (C, C)
    if isinstance(gamma, str) and gamma == "median":
        g = _median_gamma(D[tuple(torch.triu_indices(len(D), len(D), 1))])
    else:
        g = _gamma(gamma, ex)
    K = torch.exp(-g * D.square())  # (C, C)
    n1, n2 = len(ex), len(ey)
    C = n1 + n2
    z = torch.zeros(1, C, dtype=torch.float64)
    z[0, :n1] = 1
    observed = float(_mmd2(K, z, n1, n2)[0])
    per = max(1, (1 << 22) // C)
    chunks = [min(per, P - s) for s in range(0, P, per)]
    bar = progress_bar(len(chunks), "test", progress)
    hits = 0
    try:
        for m in chunks:
            perm = torch.stack([torch.randperm(C, generator=gen) for _ in range(m)])  # (m, C)
            Z = (perm < n1).double()  # members placed in group 1
            hits += int((_mmd2(K, Z, n1, n2) >= observed).sum())
            bar.update(1)
    finally:
        bar.close()
    return MMDTestResult(observed, (1 + hits) / (1 + P), P, g)
