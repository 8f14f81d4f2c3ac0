"""The pieces of :mod:`geom.collection` that run wherever the work runs (here or on a Dask worker):
threads, collections, the :class:`Embedding`, one chunk of embeddings, one block of distances."""

from __future__ import annotations

import contextlib
import os
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

import numpy as np
import torch

from .._checks import check_positive_int, describe
from .._ot1d import sort_rows
from ..measures import Measure, collate, measure
from ..sliced import prepare_slices

__all__ = ["REFINE", "Embedding", "as_collection", "block_values", "chunks_of", "collection_centre", "embed_chunk",
           "item_means", "n_quantiles_of", "one_thread", "progress_bar", "rows_of", "shared_directions", "sq_norms",
           "stream"]

CHUNK_BYTES = 1 << 26  # working memory of one chunk of measures being embedded (~64 MiB)
REFINE = 1e-6  # d^2 <= REFINE * (|a|^2 + |b|^2): the Gram identity lost digits, the entry is recomputed


# ---------------------------------------------------------------------------------------------- threads


@contextlib.contextmanager
def one_thread():
    """torch (MKL) on one thread in the calling thread while the block runs.

    A product of two blocks gives the same bits on one thread whatever the machine's load, in
    whichever process or thread it runs: the single-process path and the Dask workers then agree
    bit for bit. Parallelism comes from running several blocks at once (:func:`stream`).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def stream(fn, jobs, threads: int | None = None):
    """``(k, fn(jobs[k]))`` for every job as each finishes, each call on one torch thread
    (:func:`one_thread`), on up to ``threads`` threads (default: torch's thread count)."""
    jobs = list(jobs)
    n = max(1, min(len(jobs), threads or torch.get_num_threads()))

    def run(job):
        with one_thread():
            return fn(job)

    if n == 1:
        for k, job in enumerate(jobs):
            yield k, run(job)
        return
    before = torch.get_num_threads()
    pool = ThreadPoolExecutor(n, thread_name_prefix="geom-collection")
    try:
        futures = {pool.submit(run, job): k for k, job in enumerate(jobs)}
        for future in as_completed(futures):
            yield futures[future], future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        torch.set_num_threads(before)


# ---------------------------------------------------------------------------------------------- collections


def as_collection(measures, name: str = "measures") -> Measure:
    """A collection -> one batched, detached :class:`geom.Measure` (items padded with zero weight).

    ``measures``: a batched Measure, a ``(B, N, D)`` array or tensor, or a non-empty list or tuple of
    Measures, ``(N, D)`` arrays or tensors, or file paths (read by :func:`geom.measure` with its
    defaults), all of one kind and one dimension.
    """
    if isinstance(measures, (torch.Tensor, np.ndarray)):  # (B, N, D): a batch of clouds
        try:
            measures = measure(measures)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{name}: {str(exc).removeprefix('obj: ')}") from None
    if isinstance(measures, Measure):
        return measures.detach()
    if isinstance(measures, (str, os.PathLike)) or not isinstance(measures, (list, tuple)):
        raise TypeError(f"{name}: expected a batched geom.Measure or a list of measures, arrays or file paths, "
                        f"got {describe(measures)}")
    if not measures:
        raise ValueError(f"{name}: expected a non-empty collection, got an empty {type(measures).__name__}")
    items = []
    for i, item in enumerate(measures):
        try:
            items.append(measure(str(item) if isinstance(item, os.PathLike) else item))
        except (TypeError, ValueError, OSError) as exc:
            raise type(exc)(f"{name}: item {i}: {exc}") from None
    first = items[0]
    for i, m in enumerate(items):
        if m.kind != first.kind:
            raise ValueError(f"{name}: expected measures of one kind, got kind {first.kind!r} at position 0 and "
                             f"{m.kind!r} at position {i}")
        if tuple(m.support.shape[2:]) != tuple(first.support.shape[2:]):
            raise ValueError(f"{name}: expected measures of one dimension, got support rows of shape "
                             f"{tuple(first.support.shape[2:])} at position 0 and {tuple(m.support.shape[2:])} at "
                             f"position {i}")
    return collate(items).detach()


@dataclass
class Embedding:
    """Quantile embeddings of a collection: ``SW_p`` between two members is an l^p distance of rows.

    Attributes:
        vectors: ``(C, L * K)`` rows in the measures' dtype; row ``c`` holds the quantiles
            ``F^-1_{theta_l # (mu_c - centre)}((k - 1/2) / K)`` for ``l = 1..L`` (major) and
            ``k = 1..K``: projections of atoms moved by the collection's centre (its mean point, for
            linear kinds; float32 far from the origin keeps its digits, as in the per-pair estimator),
            no rounding of their own. Within one embedding the centre cancels:
            ``SW_p(mu_a, mu_b) ~= scale * ||vectors[a] - vectors[b]||_p`` (the midpoint rule of
            ``mean_l int_0^1 |F^-1_a - F^-1_b|^p``); between two embeddings on the same directions
            (each its own centre) compare :meth:`rows`, which add ``origin[l] = theta_l . centre``
            back per direction, in float64 (as :func:`pairwise` and :func:`knn` do).
        error: ``(C,)`` float64: ``||Q_c - Q^_c||_p``, the L^p distance (over the directions and the
            levels) between member ``c``'s quantile functions and their step versions on the grid.
            By Minkowski's inequality ``|SW_p(a, b) - ||vectors[a] - vectors[b]||_p| <= error[a] +
            error[b]``, exactly; 0 for uniform weights with ``N = K`` (the embedding is exact). For
            discrete measures (step quantile functions) it decreases like ``K^(-1/p)``.
        directions: ``(L, *shape)`` the shared directions, in the representation's direction space.
        n_quantiles: ``K``; p: the order; kind: the measures' kind.
        origin: ``(L,)`` float64 projected centre (None: zeros; kinds whose projections are not
            linear are not moved).
    """

    vectors: torch.Tensor
    error: torch.Tensor
    directions: torch.Tensor
    n_quantiles: int
    p: float
    kind: str
    origin: torch.Tensor | None = None

    def offsets(self) -> torch.Tensor | None:
        """``(L K,)`` float64: ``origin`` repeated over the levels (None where there is no origin)."""
        return None if self.origin is None else self.origin.repeat_interleave(self.n_quantiles)

    def rows(self, index=slice(None)) -> torch.Tensor:
        """Float64 rows whose l^p distances times :attr:`scale` are ``SW_p``: ``vectors[index] + offsets``."""
        return rows_of(self.vectors[index], torch.zeros((), dtype=torch.float64), 1.0, self.offsets())

    def __len__(self) -> int:
        return self.vectors.shape[0]

    @property
    def n_projections(self) -> int:
        return self.directions.shape[0]

    @property
    def scale(self) -> float:
        """``(L K)^(-1/p)``: ``SW_p = scale * ||vectors[a] - vectors[b]||_p`` (the means over the
        directions and the levels)."""
        return (self.n_projections * self.n_quantiles) ** (-1.0 / self.p)

    def __getitem__(self, index) -> "Embedding":
        """The embeddings of some members (a slice or indices), same directions."""
        if isinstance(index, int):
            index = slice(index % len(self), index % len(self) + 1)
        return Embedding(self.vectors[index], self.error[index], self.directions, self.n_quantiles, self.p, self.kind,
                         self.origin)

    def __repr__(self) -> str:
        return (f"Embedding({len(self)} measures of kind {self.kind!r}, L={self.n_projections}, "
                f"K={self.n_quantiles}, p={self.p:g}, dtype={self.vectors.dtype})")


def shared_directions(mu: Measure, *, n_projections, scheme, directions, seed, generator, p):
    """The representation and ``(L, *shape)`` directions shared by the collection, drawn by the scheme
    through the one estimator's preparation (schemes that learn from data are refused)."""
    s = prepare_slices(mu[0], None, p=p, n_projections=n_projections, scheme=scheme, directions=directions,
                       seed=seed, generator=generator,
                       uniform_only="the quantile embedding (directions shared by the whole collection)")
    if s.representation.domain != "line":
        raise ValueError(
            f"measures: kind {mu.kind!r} slices onto the {s.representation.domain}, where W_p between two slices "
            "is not a distance between quantile functions (on the circle it is a minimum over rotations of "
            "them), so there is no quantile embedding; compute the matrix with "
            "geom.collection.pairwise(..., mode='exact'), one sliced_wasserstein per pair")
    return s.representation, s.directions.detach()


def embed_chunk(support: torch.Tensor, weights: torch.Tensor, uniform: bool, rep, directions: torch.Tensor,
                K: int, p: float, centre: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(b, N, *event)`` support and ``(b, N)`` weights -> ``(b, L K)`` quantiles (projections of the
    atoms moved by ``centre``, linear kinds only, in the data's dtype) and ``(b,)`` float64 errors
    (see :class:`Embedding`)."""
    b, N = weights.shape
    L = directions.shape[0]
    with one_thread():  # the same bits here and on a Dask worker
        if rep.linear:
            x = torch.einsum("bnd,ld->bln", support if centre is None else support - centre, directions)  # (b, L, N)
        else:
            x = rep.project(support, directions)  # (b, L, N)
    if uniform and N == K:  # the k-th smallest atom is the quantile at (k - 1/2) / N: exact
        q = sort_rows(x, False)[0]  # (b, L, K), numpy's sort on geom's sort pool
        return q.reshape(b, L * K), torch.zeros(b, dtype=torch.float64)
    x, order = sort_rows(x, True)  # (b, L, N)
    w = weights[:, None, :].expand(b, L, N).gather(-1, order).double()  # (b, L, N)
    cdf = w.cumsum(-1)
    cdf = cdf / cdf[..., -1:]  # (b, L, N) right ends of the atoms' level intervals, the last exactly 1
    levels = (torch.arange(K, dtype=torch.float64) + 0.5) / K  # (K,) midpoints
    idx = torch.searchsorted(cdf, levels.expand(b, L, K).contiguous()).clamp_(max=N - 1)  # F^-1(s) = min{x: F >= s}
    q = x.gather(-1, idx)  # (b, L, K)
    # error: L^p distance between the quantile function (steps at cdf) and its steps at the grid cells
    edges = torch.arange(1, K + 1, dtype=torch.float64).div_(K).expand(b, L, K)
    t = torch.cat([cdf, edges], -1).sort(-1).values  # (b, L, N + K) breakpoints of both step functions
    dt = torch.diff(t, dim=-1, prepend=t.new_zeros(b, L, 1))  # mass of each piece
    mid = t - dt / 2
    exact = x.gather(-1, torch.searchsorted(cdf, mid).clamp_(max=N - 1)).double()
    step = q.gather(-1, (mid * K).long().clamp_(max=K - 1)).double()
    err_p = (dt * (exact - step).abs().pow(p)).sum(-1).mean(-1)  # (b,) mean over directions
    if not bool(torch.isfinite(err_p).all()):
        raise ValueError("measures: the quadrature error of the embedding is not finite in float64 (coordinates or p "
                         "too large); rescale the measures or use a smaller p")
    return q.reshape(b, L * K), err_p.pow(1.0 / p)


def chunks_of(n_items: int, per_item: int) -> list[slice]:
    rows = max(1, CHUNK_BYTES // max(per_item, 1))
    return [slice(s, min(s + rows, n_items)) for s in range(0, n_items, rows)]


def n_quantiles_of(n_quantiles, n_points: int) -> int:
    return n_points if n_quantiles is None else check_positive_int(n_quantiles, "n_quantiles")


class _NoBar:
    def update(self, n=1):
        pass

    def close(self):
        pass


def progress_bar(total: int, what: str, progress: bool | None):
    """A tqdm bar on stderr over ``total`` steps (default: shown from 10 steps on)."""
    if progress is None:
        progress = total >= 10
    if not progress:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=f"geom collection {what}", unit="block" if what != "embed" else "chunk",
                file=sys.stderr)


def block_values(a: torch.Tensor, b: torch.Tensor, p: float, na: torch.Tensor | None = None,
                 nb: torch.Tensor | None = None) -> torch.Tensor:
    """``(r, D)``, ``(c, D)`` float64 rows of :func:`rows_of` (moved by the collection's mean row and scaled, see
    :class:`Rows`) -> ``(r, c)`` float64 ``||a - b||_p`` (``SW_p``).

    For ``p = 2`` by the Gram identity ``|a|^2 + |b|^2 - 2 a.b`` (``na``, ``nb``: the squared norms,
    computed here when not given), then every entry where that identity cancels (``d^2 <= 1e-6
    (|a|^2 + |b|^2)``: near-duplicates, the diagonal) recomputed as a sum of squared differences,
    so each entry keeps about 10 significant digits (identical rows give exactly 0). Other ``p``:
    direct differences (``torch.cdist``). Deterministic for given inputs on one thread.
    """
    if p != 2:
        return torch.cdist(a[None], b[None], p=p)[0]
    na = sq_norms(a) if na is None else na  # (r,)
    nb = sq_norms(b) if nb is None else nb  # (c,)
    scale = na[:, None] + nb[None]  # (r, c)
    d2 = scale - 2 * (a @ b.T)
    redo = (d2 <= REFINE * scale).nonzero()  # (n, 2)
    for s in range(0, redo.shape[0], 256):
        i, j = redo[s:s + 256].unbind(1)
        d2[i, j] = (a[i] - b[j]).square().sum(1)
    return d2.clamp_min_(0).sqrt_()


def sq_norms(rows: torch.Tensor) -> torch.Tensor:
    """``(r,)`` squared norms of ``(r, D)`` rows (one fused reduction: no ``(r, D)`` temporary)."""
    return torch.linalg.vector_norm(rows, dim=1).square_()


def rows_of(vectors: torch.Tensor, shift: torch.Tensor, scale: float, offsets: torch.Tensor | None) -> torch.Tensor:
    """``(vectors + offsets - shift) * scale`` in float64: the rows whose l^p distances are ``SW_p``
    (what :class:`Rows` gives for a block, and a Dask worker's conversion of its block; ``offsets``:
    :meth:`Embedding.offsets`). Elementwise, so the same bits wherever it runs."""
    rows = vectors.to(torch.float64, copy=True)
    if offsets is not None:
        rows += offsets
    return rows.sub_(shift).mul_(scale)


def item_means(support: torch.Tensor, weights: torch.Tensor) -> np.ndarray:
    """``(b, D)`` float64 weighted means of the items (zero-weight padding adds exact zeros: the same
    values however the items are batched or padded)."""
    x = support.reshape(*weights.shape, -1).double()
    return (weights.double()[..., None] * x).sum(1).numpy()


def collection_centre(means: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    """``(D,)`` the mean of the items' means ``(C, D)`` (float64, one fixed summation), cast to the
    data's dtype: a convex combination of atoms, near the data, and it cannot overflow."""
    return torch.from_numpy(np.sum(means, axis=0) / len(means)).to(dtype)
