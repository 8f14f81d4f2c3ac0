"""Quantile embeddings of a collection of measures on shared directions (see :mod:`geom.collection`)."""

from __future__ import annotations

import os

import numpy as np
import torch

from .._checks import check_memory, check_p
from ._base import (Embedding, as_collection, chunks_of, collection_centre, embed_chunk, item_means, n_quantiles_of,
                    progress_bar, shared_directions)

__all__ = ["as_embedding", "embed"]


# ---------------------------------------------------------------------------------------------- embedding


def embed(measures, *, n_projections: int = 64, n_quantiles: int | None = None, p: float = 2, scheme="mc",
          directions=None, seed: int | None = None, generator: torch.Generator | None = None,
          client=None, progress: bool | None = None) -> Embedding:
    """Quantile embeddings of a collection on shared directions.

    With shared directions ``theta_1..L``, each measure's quantile functions on the fixed midpoint
    grid ``(k - 1/2) / K`` form a vector, and ``SW_p^p`` between two members is the mean over the
    directions and the grid of ``|Q_a - Q_b|^p``: for ``p = 2`` a squared Euclidean distance, so a
    whole matrix is a matrix product (:func:`geom.collection.pairwise`).

    * Uniform weights with ``N = K`` points: exact, the same value as
      ``geom.sliced_wasserstein(a, b, directions=emb.directions)`` (up to rounding).
    * Otherwise (weights, other ``N``, zero-weight padding): the midpoint rule; ``emb.error`` bounds
      the difference for each pair (``|SW - SW_emb| <= error[a] + error[b]``).
    * The value is the plain mean over the directions (what scheme ``"mc"`` gives on them): the
      scheme only draws the directions (``"qmc"`` spreads them evenly); schemes that learn their
      directions from a pair of measures are refused.
    * Kinds that slice onto the circle (``"sphere"``) are refused: there ``W_p`` is a minimum over
      rotations of the quantile functions, not a distance between them; use
      ``pairwise(..., mode="exact")``.

    Args:
        measures: a batched Measure or a list of Measures / ``(N, D)`` arrays / file paths of one kind
            and dimension (any ``N``); with a Dask ``client``, file paths are read on the workers.
        n_projections: ``L`` directions drawn by ``scheme`` (ignored when ``directions`` is given).
        n_quantiles: ``K`` levels; default: the largest ``N`` of the collection (exact for uniform
            collections of one size).
        p: the order of ``SW_p`` the vectors are scaled for.
        scheme, directions, seed, generator: as in :func:`geom.sliced_wasserstein`.
        client: a ``dask.distributed.Client`` or a scheduler address: shards are embedded on the
            workers (``pip install 'geom[dask]'``); the result is the same, bit for bit.
        progress: a tqdm bar on stderr (default: for more than 10 chunks).

    Returns:
        An :class:`Embedding` (vectors in the measures' dtype, on the CPU).

    >>> import geom.collection as gc, torch
    >>> x = torch.tensor([[[0.0], [1.0]], [[3.0], [4.0]]])
    >>> emb = gc.embed(x, directions=[[1.0]])
    >>> round(gc.pairwise(emb)[0, 1].item(), 12)
    3.0
    """
    p = check_p(p)
    if client is not None and _all_paths(measures):
        from ._dask import embed_files

        return embed_files(measures, client, n_projections=n_projections, n_quantiles=n_quantiles, p=p,
                           scheme=scheme, directions=directions, seed=seed, generator=generator, progress=progress)
    mu = as_collection(measures)
    if mu.device.type != "cpu":
        mu = mu.to("cpu")
    rep, dirs = shared_directions(mu, n_projections=n_projections, scheme=scheme, directions=directions, seed=seed,
                                   generator=generator, p=p)
    K = n_quantiles_of(n_quantiles, mu.n_points)
    C, N, L = mu.batch_size, mu.n_points, dirs.shape[0]
    item = mu.support.element_size()
    check_memory(C * L * K * item, "n_quantiles", f"the embeddings of {C} measures on {L} directions x {K} levels")
    chunks = chunks_of(C, L * (N + K) * 40)
    centre = None
    if rep.linear:  # one common origin: float32 far from 0 keeps its digits
        means = np.concatenate([item_means(mu.support[sl], mu.weights[sl]) for sl in chunks])
        centre = collection_centre(means, mu.dtype)
    origin = None if centre is None else dirs.double() @ centre.double()  # (L,)
    if client is not None:
        from ._dask import embed_shards

        return embed_shards(mu, rep, dirs, K, p, chunks, client, progress, centre, origin)
    bar = progress_bar(len(chunks), "embed", progress)
    vectors = torch.empty(C, L * K, dtype=mu.dtype)  # filled chunk by chunk: no second copy
    error = torch.empty(C, dtype=torch.float64)
    try:
        for sl in chunks:  # each chunk's sorts run on geom's sort pool
            vectors[sl], error[sl] = embed_chunk(mu.support[sl], mu.weights[sl], mu.uniform, rep, dirs, K, p, centre)
            bar.update(1)
    finally:
        bar.close()
    return Embedding(vectors, error, dirs, K, p, mu.kind, origin)


def _all_paths(measures) -> bool:
    return isinstance(measures, (list, tuple)) and bool(measures) and all(
        isinstance(m, (str, os.PathLike)) for m in measures)


def as_embedding(X, name: str, like: Embedding | None = None, **embed_options) -> Embedding:
    """``X`` if it is an Embedding (checked against ``like``), else the embedding of the collection
    ``X`` (on ``like``'s directions, levels and order when given)."""
    if isinstance(X, Embedding):
        if embed_options:
            raise TypeError(f"{name}: is an Embedding already; {', '.join(sorted(embed_options))} apply to "
                            "collections only")
        if like is not None and X is not like:
            _check_compatible(like, X, name)
        return X
    if like is not None:
        clash = sorted(set(embed_options) & {"directions", "n_quantiles", "p", "n_projections", "scheme", "seed",
                                             "generator"})
        if clash:
            raise TypeError(f"{name}: embedded with the settings of the first collection; {', '.join(clash)} "
                            f"cannot be given again")
        embed_options = dict(embed_options, directions=like.directions, n_quantiles=like.n_quantiles, p=like.p)
    try:
        out = embed(X, **embed_options)
    except (TypeError, ValueError) as exc:
        text = str(exc)
        raise type(exc)(text.replace("measures:", f"{name}:", 1) if text.startswith("measures:") else text) from None
    if like is not None and out.kind != like.kind:
        raise ValueError(f"{name}: expected measures of kind {like.kind!r} like the first collection, got {out.kind!r}")
    return out


def _check_compatible(a: Embedding, b: Embedding, name: str) -> None:
    if a.kind != b.kind:
        raise ValueError(f"{name}: expected embeddings of kind {a.kind!r} like the first collection, got {b.kind!r}")
    same = (a.directions.shape == b.directions.shape and bool(torch.equal(a.directions, b.directions.to(
        a.directions.dtype))) and a.n_quantiles == b.n_quantiles and a.p == b.p)
    if not same:
        raise ValueError(f"{name}: expected an embedding on the same directions, levels and p as the first "
                         f"(L={a.n_projections}, K={a.n_quantiles}, p={a.p:g}), got L={b.n_projections}, "
                         f"K={b.n_quantiles}, p={b.p:g} or other directions")
    if a.vectors.dtype != b.vectors.dtype:
        raise ValueError(f"{name}: expected dtype {a.vectors.dtype} like the first collection, got {b.vectors.dtype}")


