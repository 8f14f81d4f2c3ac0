"""Pairwise SW matrices and exact kNN from quantile embeddings, in blocks (see :mod:`geom.collection`)."""

from __future__ import annotations

import collections
import hashlib
import json
import math
import pathlib
import threading
import warnings

import numpy as np
import torch

from .._checks import GeomWarning, check_bool, check_int, check_memory, check_positive_int
from .._files import TEMP_PREFIX, atomic_path, write_text
from ..sliced import prepare_slices, sliced_wasserstein
from ._base import Embedding, as_collection, block_values, progress_bar, rows_of, sq_norms, stream
from ._embed import as_embedding

__all__ = ["BlockStore", "Rows", "knn", "pairwise"]

BLOCK_BYTES = 1 << 26  # float64 bytes of one block of rows while its products run (~64 MiB per side)
MAX_BLOCK = 512  # rows of a block at most
CACHE_BYTES = 1 << 28  # converted float64 blocks kept for reuse (~256 MiB)
MANIFEST = "manifest.json"
FORMAT = "geom-collection-blocks"
MAX_JSON = 1 << 20


# ---------------------------------------------------------------------------------------------- one block


class Rows:
    """The float64 rows of an embedding moved by ``shift`` (the collections' mean row), block by block,
    with their squared norms.

    Converted blocks are kept in a small cache shared by the threads (:data:`CACHE_BYTES`, least
    recently used out), and a block another thread is converting is waited for, not converted
    twice: with the jobs in :func:`_schedule`'s order each block is mostly converted once per panel,
    while memory stays bounded whatever the collection's size. The conversion is elementwise: the
    same bits as a Dask worker converting its block (:func:`rows_of`).
    """

    def __init__(self, emb: Embedding, shift: torch.Tensor, bounds: list[tuple[int, int]]):
        self.emb, self.shift, self.bounds = emb, shift, bounds
        self._offsets = emb.offsets()
        self._cache: collections.OrderedDict[int, torch.Tensor] = collections.OrderedDict()
        self._norms: dict[int, torch.Tensor] = {}
        self._lock = threading.Lock()
        self._pending: dict[int, threading.Event] = {}

    def __call__(self, I: int) -> torch.Tensor:
        while True:
            with self._lock:
                if I in self._cache:
                    self._cache.move_to_end(I)
                    return self._cache[I]
                wait = self._pending.get(I)
                if wait is None:
                    self._pending[I] = threading.Event()
                    break
            wait.wait()  # another thread converts it; then it is in the cache (or evicted: convert)
        try:
            r0, r1 = self.bounds[I]
            rows = rows_of(self.emb.vectors[r0:r1], self.shift, self.emb.scale, self._offsets)
            with self._lock:
                self._cache[I] = rows
                while len(self._cache) > 1 and sum(t.numel() * 8 for t in self._cache.values()) > CACHE_BYTES:
                    self._cache.popitem(last=False)
        finally:
            with self._lock:
                self._pending.pop(I).set()
        return rows

    def norms(self, I: int, rows: torch.Tensor) -> torch.Tensor:
        if I not in self._norms:  # two threads may both compute it: the same values
            self._norms[I] = sq_norms(rows)
        return self._norms[I]


def _schedule(n_rows: int, n_cols: int, symmetric: bool, panel: int) -> list[tuple[int, int]]:
    """The blocks ``(I, J)`` to compute (``J >= I`` when symmetric), ordered by panels of ``panel``
    block rows and, within a panel, column by column: the threads (one per row of the panel) work on
    one column block at a time, converted once for all of them."""
    keys = []
    for I0 in range(0, n_rows, panel):
        rows = range(I0, min(I0 + panel, n_rows))
        for J in range(I0 if symmetric else 0, n_cols):
            keys += [(I, J) for I in rows if not symmetric or J >= I]
    return keys


def _block(rx: Rows, ry: Rows, key: tuple[int, int], p: float) -> torch.Tensor:
    """Block ``key = (I, J)``: rows ``I`` of ``rx`` against rows ``J`` of ``ry`` (norms cached)."""
    a, b = rx(key[0]), ry(key[1])
    if p != 2:
        return block_values(a, b, p)
    return block_values(a, b, p, rx.norms(key[0], a), ry.norms(key[1], b))


def _blocks(ex, ey, rx, ry, symmetric, shift, keys, bi, bj, client):
    """``(key, block)`` for each of ``keys``, in the order they finish: on the Dask workers of ``client``,
    else on this process's threads."""
    if client is not None:
        from ._dask import pairwise_blocks

        return pairwise_blocks(ex, ey, symmetric, shift, keys, bi, bj, client)
    return ((keys[k], v) for k, v in stream(lambda key: _block(rx, ry, key, ex.p), keys))


def _check_finite(values: torch.Tensor, emb: Embedding) -> None:
    if not bool(torch.isfinite(values).all()):
        raise ValueError(f"X: SW_{emb.p:g} between embeddings is not finite in float64 (coordinates too large for "
                         f"{emb.vectors.dtype}); rescale the measures")


def _block_rows(D: int, block_size) -> int:
    if block_size is not None:
        return check_positive_int(block_size, "block_size")
    return max(1, min(MAX_BLOCK, BLOCK_BYTES // (8 * D)))


def _bounds(n: int, rows: int) -> list[tuple[int, int]]:
    return [(s, min(s + rows, n)) for s in range(0, n, rows)]


def _shift(*embs: Embedding) -> torch.Tensor:
    """The mean row of the collections (float64, their origins added back), summed in chunks of rows
    of fixed size: bounded memory, and the same bits every time."""
    total, count = 0, 0
    for e in embs:
        step = max(1, BLOCK_BYTES // (8 * e.vectors.shape[1]))
        for r0 in range(0, len(e), step):
            total = total + e.vectors[r0:r0 + step].double().sum(0)
        if e.origin is not None:
            total = total + len(e) * e.offsets()
        count += len(e)
    return total / count


# ---------------------------------------------------------------------------------------------- block store


class BlockStore:
    """A folder of finished blocks: ``manifest.json`` and one ``block-I-J.npy`` per block.

    Every file is written to a temporary file and renamed; blocks are read back with
    ``allow_pickle=False`` and checked for their shape and dtype (a bad one is computed again). A
    folder that holds another computation's manifest, or files but no manifest, is refused.
    """

    def __init__(self, folder, manifest: dict):
        self.folder = pathlib.Path(folder).expanduser()
        if self.folder.exists() and not self.folder.is_dir():
            raise NotADirectoryError(f"out: '{folder}' exists and is not a directory")
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / MANIFEST
        present = [q.name for q in self.folder.iterdir() if not q.name.startswith(TEMP_PREFIX)]
        if path.exists():
            if path.stat().st_size > MAX_JSON:
                raise ValueError(f"out: '{path}' is {path.stat().st_size} bytes, not a manifest of geom.collection")
            try:
                old = json.loads(path.read_text(encoding="utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError) as exc:
                raise ValueError(f"out: '{path}' is not a readable JSON manifest ({exc}); choose another folder or "
                                 "remove it") from None
            if old != manifest:
                raise ValueError(f"out: '{folder}' holds the blocks of another computation (its {MANIFEST} differs: "
                                 f"other data, directions or settings); choose another folder or remove it")
        elif present:
            raise FileExistsError(f"out: '{folder}' is not empty and holds no {MANIFEST} of geom.collection; "
                                  "choose an empty or new folder")
        else:
            write_text(path, json.dumps(manifest, indent=1))

    def name(self, key) -> pathlib.Path:
        return self.folder / f"block-{key[0]:06d}-{key[1]:06d}.npy"

    def load(self, key, shape) -> np.ndarray | None:
        path = self.name(key)
        if not path.exists():
            return None
        try:
            values = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            warnings.warn(f"out: block file '{path}' is unreadable ({exc}); computing it again", GeomWarning,
                          stacklevel=3)
            return None
        if values.shape != tuple(shape) or values.dtype != np.float64 or not np.isfinite(values).all():
            warnings.warn(f"out: block file '{path}' holds shape {values.shape} {values.dtype}, expected {tuple(shape)} "
                          "finite float64; computing it again", GeomWarning, stacklevel=3)
            return None
        return values

    def save(self, key, values: np.ndarray) -> None:
        with atomic_path(self.name(key)) as tmp:
            np.save(tmp, values, allow_pickle=False)


def _fingerprint(*embs: Embedding) -> str:
    h = hashlib.blake2b(digest_size=16)
    for e in embs:
        h.update(repr((tuple(e.vectors.shape), str(e.vectors.dtype), e.p, e.n_quantiles, e.kind)).encode())
        h.update(np.ascontiguousarray(e.vectors.numpy()).tobytes())
        h.update(np.ascontiguousarray(e.directions.double().numpy()).tobytes())
        if e.origin is not None:
            h.update(np.ascontiguousarray(e.origin.numpy()).tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------- pairwise


def pairwise(X, Y=None, *, mode: str = "embedding", condensed: bool = False, block_size: int | None = None,
             client=None, out=None, progress: bool | None = None, **embed_options) -> torch.Tensor:
    """The ``SW_p`` matrix within a collection (``Y=None``) or between two.

    Args:
        X, Y: :class:`Embedding` s (of the same directions, levels and ``p``) or collections
            (anything :func:`embed` takes; ``Y`` is then embedded on ``X``'s directions).
        mode: ``"embedding"`` (default): distances between embeddings, blockwise, by BLAS in
            float64; ``"exact"``: one :func:`geom.sliced_wasserstein` per pair on the same directions
            (batched), for checking, and for kinds without an embedding (the sphere).
        condensed: return the upper triangle without the diagonal as a vector, in the order of
            ``scipy.spatial.distance.pdist`` (symmetric case only).
        block_size: rows of a block (default: about 64 MiB of float64 per block, at most 512). In the
            symmetric case only blocks ``(I, J)`` with ``J >= I`` are computed (the diagonal blocks
            whole) and mirrored.
        client: a ``dask.distributed.Client`` or a scheduler address: blocks run on the workers
            (``pip install 'geom[dask]'``); the result is the same as without, bit for bit.
        out: a folder where finished blocks stream to disk; a run given the same folder again skips
            the blocks already there (resume after an interruption).
        progress: a tqdm bar over the blocks on stderr (default: from 10 blocks on).
        **embed_options: options of :func:`embed` when ``X`` is a collection (``n_projections``,
            ``n_quantiles``, ``p``, ``scheme``, ``directions``, ``seed``, ``generator``).

    Returns:
        ``(C1, C2)`` float64 tensor (or ``(C (C - 1) / 2,)`` condensed). In embedding mode entry
        ``(a, b)`` is within ``X.error[a] + Y.error[b]`` of the per-pair value (exact for uniform
        weights and ``N = K``).
    """
    condensed = check_bool(condensed, "condensed")
    if mode not in ("embedding", "exact"):
        raise ValueError(f"mode: expected 'embedding' or 'exact', got {mode!r}")
    symmetric = Y is None or Y is X
    if condensed and not symmetric:
        raise ValueError("condensed: the condensed form holds the upper triangle of a matrix within one collection; "
                         "got two collections (X and Y)")
    if mode == "exact":
        if client is not None or out is not None:
            raise ValueError("mode: 'exact' runs in this process (client and out are for mode='embedding')")
        return _exact(X, Y, symmetric, condensed, progress, embed_options)
    ex = as_embedding(X, "X", **embed_options)
    ey = ex if symmetric else as_embedding(Y, "Y", like=ex)
    rows = _block_rows(ex.vectors.shape[1], block_size)
    bi, bj = _bounds(len(ex), rows), _bounds(len(ey), rows)
    keys = _schedule(len(bi), len(bj), symmetric, torch.get_num_threads())
    C1, C2 = len(ex), len(ey)
    check_memory(8 * (C1 * (C1 - 1) // 2 if condensed else C1 * C2), "X", f"the {C1} x {C2} matrix")
    result = torch.zeros(C1 * (C1 - 1) // 2 if condensed else (C1, C2), dtype=torch.float64)
    store = None
    if out is not None:
        store = BlockStore(out, {"format": FORMAT, "version": 1, "shape": [C1, C2], "block_size": rows, "p": ex.p,
                                 "symmetric": symmetric, "fingerprint": _fingerprint(*([ex] if symmetric else
                                                                                      [ex, ey]))})
    shift = _shift(*([ex] if symmetric else [ex, ey]))
    rx = Rows(ex, shift, bi)
    ry = rx if symmetric else Rows(ey, shift, bj)
    todo = []
    for key in keys:
        shape = (bi[key[0]][1] - bi[key[0]][0], bj[key[1]][1] - bj[key[1]][0])
        values = None if store is None else store.load(key, shape)
        if values is None:
            todo.append(key)
        else:
            _place(result, key, torch.from_numpy(values), bi, bj, symmetric, condensed, C1)
    bar = progress_bar(len(todo), "matrix", progress)
    try:
        for key, values in _blocks(ex, ey, rx, ry, symmetric, shift, todo, bi, bj, client):
            _check_finite(values, ex)
            if symmetric and key[0] == key[1]:  # exactly symmetric, exactly 0 on the diagonal
                values = torch.triu(values, 1)
                values = values + values.T
            if store is not None:
                store.save(key, values.numpy())
            _place(result, key, values, bi, bj, symmetric, condensed, C1)
            bar.update(1)
    finally:
        bar.close()
    return result


def _place(result, key, values, bi, bj, symmetric, condensed, C) -> None:
    (r0, r1), (c0, c1) = bi[key[0]], bj[key[1]]
    if not condensed:
        result[r0:r1, c0:c1] = values
        if symmetric and key[0] != key[1]:
            result[c0:c1, r0:r1] = values.T
        return
    i = torch.arange(r0, r1)[:, None].expand(r1 - r0, c1 - c0)
    j = torch.arange(c0, c1)[None].expand(r1 - r0, c1 - c0)
    keep = i < j
    i, j = i[keep], j[keep]
    result[C * i - i * (i + 1) // 2 + (j - i - 1)] = values[keep]


def _exact(X, Y, symmetric, condensed, progress, options) -> torch.Tensor:
    """One :func:`geom.sliced_wasserstein` per pair (batched) on the shared directions."""
    for name, obj in (("X", X), ("Y", Y)):
        if isinstance(obj, Embedding):
            raise TypeError(f"{name}: mode='exact' computes from the measures, got an Embedding; pass the collection")
    unknown = sorted(set(options) - {"n_projections", "p", "scheme", "directions", "seed", "generator"})
    if unknown:
        raise TypeError(f"pairwise: unexpected option(s) {', '.join(unknown)} for mode='exact'")
    mu = as_collection(X, "X")
    nu = mu if symmetric else as_collection(Y, "Y")
    p = options.get("p", 2)
    s = prepare_slices(mu[0], nu[0], p=p, n_projections=options.get("n_projections", 64),
                       scheme=options.get("scheme", "mc"), directions=options.get("directions"),
                       seed=options.get("seed"), generator=options.get("generator"),
                       uniform_only="pairwise(mode='exact') (directions shared by every pair)")
    dirs = s.directions.detach()
    C1, C2 = len(mu), len(nu)
    if symmetric:
        i, j = torch.triu_indices(C1, C1, 1)
    else:
        i, j = (t.reshape(-1) for t in torch.meshgrid(torch.arange(C1), torch.arange(C2), indexing="ij"))
    per = max(1, (1 << 22) // ((mu.n_points + nu.n_points) * max(1, mu.dim)))
    chunks = [slice(k, k + per) for k in range(0, i.numel(), per)]
    values = torch.empty(i.numel(), dtype=torch.float64)
    bar = progress_bar(len(chunks), "matrix", progress)
    try:
        for sl in chunks:
            a, b = mu[i[sl]], nu[j[sl]]
            values[sl] = sliced_wasserstein(a, b, p=p, directions=dirs).detach().double()
            bar.update(1)
    finally:
        bar.close()
    if condensed:
        return values
    result = torch.zeros(C1, C2, dtype=torch.float64)
    result[i, j] = values
    if symmetric:
        result[j, i] = values
    return result


# ---------------------------------------------------------------------------------------------- kNN


def knn(query, database=None, k: int = 1, *, backend: str = "blas", block_size: int | None = None,
        client=None, progress: bool | None = None, **embed_options) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact ``k`` nearest neighbours in ``SW_p`` through the embeddings.

    Args:
        query: an :class:`Embedding` or a collection.
        database: an Embedding or a collection (embedded on ``query``'s directions when ``query`` is an
            Embedding, else ``query`` is embedded on the database's); None: the neighbours of each
            member of ``query`` among the others (itself left out).
        k: neighbours per query, at most the database's size (its size minus 1 when ``database=None``).
        backend: ``"blas"`` (default): blocks of :func:`pairwise`'s kernel and a running top-k, any
            ``p``; ``"keops"``: KeOps' ArgKMin on squared distances (``p = 2``), no matrix in memory;
            ``"faiss"``: an exact ``IndexFlatL2`` (``p = 2``, ``pip install faiss-cpu``), for very
            large databases. KeOps' and faiss' candidates are float32; their distances are recomputed
            in float64 and re-sorted, so all three agree except between near-ties.
        block_size, progress: as in :func:`pairwise`.
        client: as in :func:`pairwise` (``backend="blas"``): the blocks run on the Dask workers and are
            merged here; the same neighbours and distances, bit for bit.
        **embed_options: options of :func:`embed` for collections.

    Returns:
        ``(distances (Q, k) float64, indices (Q, k) int64)``, nearest first; equal distances in the
        order of the indices.
    """
    if backend not in ("blas", "keops", "faiss"):
        raise ValueError(f"backend: expected 'blas', 'keops' or 'faiss', got {backend!r}")
    within = database is None or database is query
    if within:
        eq = ed = as_embedding(query, "query", **embed_options)
    elif isinstance(query, Embedding) or not isinstance(database, Embedding):
        eq = as_embedding(query, "query", **embed_options)
        ed = as_embedding(database, "database", like=eq)
    else:
        ed = database
        eq = as_embedding(query, "query", like=ed, **embed_options)
    n = len(ed) - within
    k = check_int(k, "k", minimum=1)
    if k > n:
        raise ValueError(f"k: expected at most {n} (the database's size{' minus the query itself' if within else ''}), "
                         f"got {k}")
    if backend != "blas" and eq.p != 2:
        raise ValueError(f"backend: {backend!r} searches squared Euclidean distances (p = 2); got an embedding for "
                         f"p = {eq.p:g}: use backend='blas'")
    shift = _shift(*([ed] if within else [eq, ed]))
    if backend == "blas":
        return _knn_blas(eq, ed, k, within, shift, block_size, progress, client)
    if client is not None:
        raise ValueError(f"client: the Dask path computes blocks (backend='blas'), got backend={backend!r}")
    if backend == "keops":
        idx = _knn_keops(eq, ed, k + within, shift)
    else:
        idx = _knn_faiss(eq, ed, k + within, shift)
    return _exact_order(eq, ed, idx, k, within, shift)


def _knn_blas(eq, ed, k, within, shift, block_size, progress, client=None):
    """Blocks of distances, each merged into the running top-k of its rows as it arrives; within one
    collection only the blocks ``J >= I`` are computed, each serving the rows of ``I`` and of ``J``."""
    rows = _block_rows(eq.vectors.shape[1], block_size)
    bq, bd = _bounds(len(eq), rows), _bounds(len(ed), rows)
    rq = Rows(eq, shift, bq)
    rd = rq if within else Rows(ed, shift, bd)
    keys = _schedule(len(bq), len(bd), within, torch.get_num_threads())
    best = [(torch.empty(r1 - r0, 0, dtype=torch.float64), torch.empty(r1 - r0, 0, dtype=torch.long)) for r0, r1 in bq]

    bar = progress_bar(len(keys), "knn", progress)
    try:
        for (I, J), d in _blocks(eq, ed, rq, rd, within, shift, keys, bq, bd, client):  # merged here, in this thread, in any order: the result is the same
            _check_finite(d, eq)
            (r0, r1), (c0, c1) = bq[I], bd[J]
            if within and I == J:
                d = d.clone().fill_diagonal_(math.inf)
            best[I] = _merge(*best[I], d, torch.arange(c0, c1).expand(r1 - r0, -1), k)
            if within and I != J:
                best[J] = _merge(*best[J], d.T, torch.arange(r0, r1).expand(c1 - c0, -1), k)
            bar.update(1)
    finally:
        bar.close()
    return torch.cat([d for d, _ in best]), torch.cat([i for _, i in best])


def _merge(best_d, best_i, d, i, k):
    """The ``k`` smallest of two candidate sets, ties in index order (stable sort; kept first)."""
    cand_d, cand_i = torch.cat([best_d, d], 1), torch.cat([best_i, i], 1)
    idx_order = cand_i.argsort(dim=1, stable=True)  # index order first, so the stable sort keeps it on ties
    cand_d, cand_i = cand_d.gather(1, idx_order), cand_i.gather(1, idx_order)
    order = cand_d.argsort(dim=1, stable=True)[:, :k]
    return cand_d.gather(1, order), cand_i.gather(1, order)


def _exact_order(eq, ed, idx, k, within, shift):
    """Candidates ``(Q, k')`` -> float64 distances recomputed directly, sorted, self left out, ``k`` kept."""
    Q, kk = idx.shape
    oq, od = eq.offsets(), ed.offsets()
    d = torch.empty(Q, kk, dtype=torch.float64)
    for q in range(Q):
        d[q] = torch.linalg.vector_norm(rows_of(ed.vectors[idx[q]], shift, eq.scale, od) - rows_of(eq.vectors[q], shift,
                                                                                                 eq.scale, oq), ord=eq.p,
                                        dim=1)
    if within:
        d = torch.where(idx == torch.arange(Q)[:, None], math.inf, d)
    best_d, best_i = _merge(d[:, :0], idx[:, :0], d, idx, k)
    return best_d, best_i


def _knn_keops(eq, ed, k, shift):
    """KeOps' ArgKMin of ``|x_i - y_j|^2`` over the database (compiled once per dimension and ``k``, into
    geom's KeOps cache; its messages swallowed as :mod:`geom._keops` does, a compilation announced)."""
    import contextlib

    from .. import _keops  # sets geom's KeOps cache folder before pykeops is imported

    D = eq.vectors.shape[1]
    oq, od = eq.offsets(), ed.offsets()
    x = torch.cat([rows_of(eq.vectors[r0:r0 + 4096], shift, eq.scale, oq).float() for r0 in range(0, len(eq), 4096)])
    y = torch.cat([rows_of(ed.vectors[r0:r0 + 4096], shift, eq.scale, od).float() for r0 in range(0, len(ed), 4096)])
    try:
        with contextlib.redirect_stdout(_keops._Watch("collection ArgKMin", x)):
            from pykeops.torch import Genred  # noqa: PLC0415

            routine = Genred("SqDist(x,y)", [f"x=Vi({D})", f"y=Vj({D})"], reduction_op="ArgKMin", axis=1, opt_arg=k)
            with _keops._first_call(("collection-argkmin", D, k, torch.float32, "cpu")):
                return routine(x, y).long()
    except Exception as exc:  # an ImportError, a compiler failure: both say why
        raise RuntimeError(f"backend='keops': pykeops could not run ArgKMin of SqDist on {D}-dimensional float32 "
                           f"embeddings ({type(exc).__name__}: {exc}); use backend='blas'") from exc


def _knn_faiss(eq, ed, k, shift):
    try:
        import faiss  # noqa: PLC0415
    except ImportError as exc:
        raise ImportError("backend='faiss' needs faiss: pip install faiss-cpu") from exc
    D = eq.vectors.shape[1]
    index = faiss.IndexFlatL2(D)
    step = max(1, BLOCK_BYTES // (8 * D))  # rows converted at a time

    def shifted(emb, r0):
        return np.ascontiguousarray(rows_of(emb.vectors[r0:r0 + step], shift, eq.scale, emb.offsets()).float().numpy())

    for r0 in range(0, len(ed), step):
        index.add(shifted(ed, r0))
    idx = np.concatenate([index.search(shifted(eq, r0), k)[1] for r0 in range(0, len(eq), step)])
    if (idx < 0).any():  # pragma: no cover
        raise RuntimeError("backend='faiss': the index returned fewer neighbours than asked")
    return torch.from_numpy(idx).long()
