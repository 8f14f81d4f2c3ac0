"""The Dask side of :mod:`geom.collection`: shards embedded and blocks computed on the workers.

Dask (``dask.distributed``) is an existing distributed engine: it places tasks, moves data, retries a
task whose worker died and recomputes what that worker held. geom only says what a task is. Every
input a task needs is itself a task (its data in the task graph the scheduler holds), never data
scattered to one worker, so a worker killed mid-run loses nothing the scheduler cannot rebuild.
Imported only when a ``client=`` is given: ``import geom`` works without Dask. Dask moves tasks
and results between processes with pickle, so a client must only be pointed at a scheduler and
workers one trusts; what geom reads from disk is never unpickled.
"""

from __future__ import annotations

import contextlib
import os
import uuid
import warnings

import numpy as np
import torch

__all__ = ["embed_files", "embed_shards", "get_client", "local_client", "pairwise_blocks"]

EXTRA = "pip install 'geom[dask]'"


def _distributed():
    try:
        import distributed  # noqa: PLC0415
    except ImportError as exc:
        raise ImportError(f"client: running on Dask needs dask.distributed: {EXTRA} ({exc})") from None
    return distributed


@contextlib.contextmanager
def get_client(client):
    """A ``dask.distributed.Client`` from ``client``: a Client (used as is) or a scheduler address
    (connected here, closed on exit)."""
    distributed = _distributed()
    if isinstance(client, distributed.Client):
        yield client
        return
    if isinstance(client, (str, os.PathLike)):
        own = distributed.Client(str(client), set_as_default=False)
        try:
            yield own
        finally:
            own.close()
        return
    raise TypeError(f"client: expected a dask.distributed.Client or a scheduler address, got {type(client).__name__}")


def local_client(n_workers: int):
    """A Client of a new ``LocalCluster`` of ``n_workers`` processes with one thread each (close both
    with ``client.close(); client.cluster.close()``)."""
    distributed = _distributed()
    cluster = distributed.LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                       dashboard_address=":0")
    return distributed.Client(cluster, set_as_default=False)


def _token() -> str:
    """A fresh key prefix per call: tasks of one call share it, no two calls do (no stale results)."""
    return uuid.uuid4().hex


# ---------------------------------------------------------------------------------------------- tasks


def _hold(array):
    """A task that returns its input: data the scheduler can hand out again after a worker dies."""
    return array


def _embed_task(support, weights, uniform, kind, directions, K, p, centre):
    from ..registry import get_representation
    from ._base import embed_chunk, one_thread

    with one_thread():
        v, e = embed_chunk(torch.from_numpy(support), torch.from_numpy(weights), uniform, get_representation(kind),
                           torch.from_numpy(directions), K, p, None if centre is None else torch.from_numpy(centre))
    return v.numpy(), e.numpy()


def _read_task(paths):
    from ._base import as_collection

    mu = as_collection(list(paths), "measures")
    return mu.support.numpy(), mu.weights.numpy(), mu.uniform, mu.kind


def _embed_read_task(shard, directions, K, p, centre):
    support, weights, uniform, kind = shard
    if centre is not None:
        centre = centre.astype(support.dtype)
    return _embed_task(support, weights, uniform, kind, directions, K, p, centre)


def _shape(shard):
    """``(N, kind, event shape, the items' weighted means (b, D) float64)`` of a shard read by
    :func:`_read_task`."""
    from ._base import item_means

    means = item_means(torch.from_numpy(shard[0]), torch.from_numpy(shard[1]))
    return int(shard[1].shape[1]), shard[3], tuple(shard[0].shape[2:]), means


def _block_task(a, b, shift, scale, p, offsets_a, offsets_b):
    from ._base import block_values, one_thread, rows_of

    shift = torch.from_numpy(shift)
    oa = None if offsets_a is None else torch.from_numpy(offsets_a)
    ob = None if offsets_b is None else torch.from_numpy(offsets_b)
    with one_thread():
        return block_values(rows_of(torch.from_numpy(a), shift, scale, oa), rows_of(torch.from_numpy(b), shift, scale,
                                                                                      ob), p).numpy()


# ---------------------------------------------------------------------------------------------- drivers


@contextlib.contextmanager
def _quiet():
    """Dask's warning about large objects in the graph is the design here (see the module docstring)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ll]arge (object|graph)")
        yield


def embed_shards(mu, rep, dirs, K, p, chunks, client, progress, centre, origin):
    """:func:`geom.collection.embed` of a collection in memory, one task per chunk of measures."""
    from ._base import Embedding, progress_bar

    d, token = dirs.numpy(), _token()
    bar = progress_bar(len(chunks), "embed", progress)
    try:
        with _quiet(), get_client(client) as c:
            cn = None if centre is None else centre.numpy()
            futures = [c.submit(_embed_task, mu.support[sl].numpy(), mu.weights[sl].numpy(), mu.uniform, mu.kind, d,
                                K, p, cn, key=f"geom-embed-{token}-{k}", retries=3)
                       for k, sl in enumerate(chunks)]
            vectors, error = _gather_into(c, futures, [sl.start for sl in chunks], bar, len(mu), dirs.shape[0] * K,
                                          mu.dtype)
    finally:
        bar.close()
    return Embedding(vectors, error, dirs, K, p, mu.kind, origin)


def _gather_into(c, futures, starts, bar, n: int, dim: int, dtype):
    """The ``(vectors, error)`` of the chunk tasks ``futures``, chunk ``k`` holding rows from
    ``starts[k]`` on, written into one ``(n, dim)`` array as each arrives (no second copy)."""
    distributed = _distributed()
    index = {f.key: k for k, f in enumerate(futures)}
    vectors, error = torch.empty(n, dim, dtype=dtype), torch.empty(n, dtype=torch.float64)
    for future in distributed.as_completed(futures, loop=c.loop):
        v, e = future.result()
        start = starts[index[future.key]]
        vectors[start:start + len(e)] = torch.from_numpy(v)
        error[start:start + len(e)] = torch.from_numpy(e)
        bar.update(1)
    return vectors, error


def embed_files(paths, client, *, n_projections, n_quantiles, p, scheme, directions, seed, generator, progress,
                files_per_shard: int = 16):
    """:func:`geom.collection.embed` of files, each shard of files read and embedded on a worker."""
    from ..measures import measure
    from ._base import collection_centre, n_quantiles_of, shared_directions

    paths = [str(q) for q in paths]
    first = measure(paths[0])  # the kind and dimension the directions live in
    rep, dirs = shared_directions(first, n_projections=n_projections, scheme=scheme, directions=directions,
                                   seed=seed, generator=generator, p=p)
    d = dirs.to(first.dtype).numpy()
    groups = [paths[s:s + files_per_shard] for s in range(0, len(paths), files_per_shard)]
    from ._base import Embedding, progress_bar

    with _quiet(), get_client(client) as c:
        token = _token()
        shards = [c.submit(_read_task, g, key=f"geom-read-{token}-{k}", retries=3) for k, g in enumerate(groups)]
        shapes = c.gather([c.submit(_shape, s, key=f"geom-shape-{s.key}") for s in shards])
        for k, (n, kind, event, _) in enumerate(shapes):  # each shard checked itself; across shards here
            if kind != first.kind or event != tuple(first.support.shape[2:]):
                raise ValueError(f"measures: expected measures of one kind and dimension, got kind "
                                 f"{first.kind!r}, rows {tuple(first.support.shape[2:])} in '{paths[0]}' and "
                                 f"{kind!r}, rows {event} among {groups[k][0]} ...")
        K = n_quantiles_of(n_quantiles, max(s[0] for s in shapes))
        centre = None
        if rep.linear:  # the mean of the items' means, as in one process
            centre = collection_centre(np.concatenate([s[3] for s in shapes]), first.dtype)
        bar = progress_bar(len(groups), "embed", progress)
        try:
            cn = None if centre is None else centre.numpy()
            futures = [c.submit(_embed_read_task, s, d, K, p, cn, key=f"geom-embed-{s.key}-{K}-{p}", retries=3)
                       for s in shards]
            starts = [s * files_per_shard for s in range(len(groups))]
            vectors, error = _gather_into(c, futures, starts, bar, len(paths), dirs.shape[0] * K, first.dtype)
        finally:
            bar.close()
    origin = None if centre is None else dirs.double() @ centre.double()
    return Embedding(vectors, error, dirs.to(first.dtype), K, p, first.kind, origin)


def pairwise_blocks(ex, ey, symmetric, shift, todo, bi, bj, client):
    """``(key, values)`` of every block in ``todo`` as the workers finish them (a generator)."""
    distributed = _distributed()
    token = _token()
    with _quiet(), get_client(client) as c:
        s = c.submit(_hold, shift.numpy(), key=f"geom-shift-{token}")
        offsets = {}
        for which, emb in (("x", ex), ("y", ey)):
            o = emb.offsets()
            offsets[which] = None if o is None else c.submit(_hold, o.numpy(), key=f"geom-offsets-{token}-{which}")
        rows = {}

        def shard(which, I):
            emb, bounds = (ex, bi) if which == "x" else (ey, bj)
            if (which, I) not in rows:
                r0, r1 = bounds[I]
                rows[which, I] = c.submit(_hold, emb.vectors[r0:r1].numpy(), key=f"geom-rows-{token}-{which}{I}")
            return rows[which, I]

        futures = {}
        second = "x" if symmetric else "y"
        for key in todo:
            a = shard("x", key[0])
            b = a if symmetric and key[0] == key[1] else shard(second, key[1])
            f = c.submit(_block_task, a, b, s, ex.scale, ex.p, offsets["x"], offsets[second],
                         key=f"geom-block-{token}-{key[0]}-{key[1]}", retries=3)
            futures[f.key] = (key, f)
        for future in distributed.as_completed([f for _, f in futures.values()], loop=c.loop):
            key, _ = futures[future.key]
            yield key, torch.from_numpy(future.result())
