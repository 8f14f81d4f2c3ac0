"""Compiled row kernels (numba): the passes around numpy's sort that numpy cannot do in one.

* :func:`argsort_float32`: the order of float32 rows (numpy sorts values fast but has no fast argsort);
* :func:`pair_rows`: uniform 1-D transport of sorted rows (cost, largest gap, gradients written at each
  atom's place) read straight from the packed keys of :func:`sorted_keys`, which are never unpacked;
* :func:`merge_rows`: weighted 1-D transport by one merge walk of the two cumulative-weight sequences
  (cost, largest gap, gradients in the values at each atom's place and in the sorted weights), read
  from the same sorted keys, where numpy needed a third sort;
* :func:`energy_rows`: the 1-D energy distances of sorted pooled rows and their position gradients,
  ties included.

:func:`argsort_float32` orders float32 rows with their indices by one float64 sort. A float32 converts
to float64 exactly with 29 low mantissa bits at zero; the column index goes in the low
:data:`INDEX_BITS` of them (mirrored for negative values, whose magnitude grows with those bits),
which keeps each key strictly between the float64 images of the float32 neighbours of its value.
One float64 sort then yields both, ties broken by index, and rounding back to float32 removes the
index (it stays below half a float32 ulp). Packing and unpacking are one compiled pass each (in
numpy they were nine passes: 96 ms against 83 ms for 64 rows of 1e5 values; the float64 sort
itself is about 70 ms of that). A least-significant-digit radix sort (three passes of 11 bits) was
measured too: 87 ms, its scatters leave the 512 KiB L2 at these sizes.

The kernels are module functions of :mod:`geom._ot1d._jit`, imported with numba on first use. numba
compiles each on first use and caches the machine code in geom's cache folder
(``<cache>/numba``; :mod:`geom._cache`), unless the user set ``NUMBA_CACHE_DIR`` or imported numba
first; ``make setup`` warms it (:func:`warm`), so parallel test workers never compile at once.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time

import numpy as np

__all__ = ["INDEX_BITS", "argsort_float32", "energy_rows", "merge_rows", "pair_rows", "sorted_keys", "unsort_rows",
           "warm"]

INDEX_BITS = 28
"""Low mantissa bits of a float64 key that carry the index (rows up to 2^28 values)."""

_KERNELS = None
_LOCK = threading.Lock()


def _compiled():
    global _KERNELS
    if _KERNELS is not None:
        return _KERNELS
    with _LOCK:  # the sort pool's threads may arrive together
        if _KERNELS is not None:
            return _KERNELS
        own = None  # geom's numba folder, where geom chose it
        if not os.environ.get("NUMBA_CACHE_DIR") and "numba" not in sys.modules:
            from .._cache import cache_dir

            own = cache_dir() / "numba"
            os.environ["NUMBA_CACHE_DIR"] = str(own)
        try:
            from . import _jit
        except ImportError as exc:  # pragma: no cover - a core dependency
            if exc.name != "numba":
                raise
            raise ImportError("geom needs numba for its sort kernels: pip install numba") from exc
        if _jit.MASK != (1 << INDEX_BITS) - 1:  # pragma: no cover - guards an edit of one of the two
            raise ImportError(f"geom._ot1d._jit.MASK is {_jit.MASK:#x}, not the {INDEX_BITS} index bits of kernels")
        _KERNELS = {name: getattr(_jit, name) for name in ("pack_keys", "unpack_keys", "pair_rows", "merge_rows",
                                                             "unsort_rows", "energy_rows")}
        if own is not None:
            _prune(_jit, own)
        return _KERNELS


def _prune(jit, own) -> None:
    """Remove, from geom's own numba folder ``own``, the cache files no current kernel can use: numba
    names them ``<module>.<function>-<first line>.<python>[.<k>].nbi/.nbc`` and never removes one, so
    every edit of :mod:`geom._ot1d._jit` and every release left a few MB behind. Stale are the files of
    functions at other first lines, those of the closures of earlier versions (``kernels._build.locals.*``,
    about 15 MB), and those older than ``_jit.py`` itself: numba drops a whole index when the source
    changes, and the overloads it held stay behind (22 merge variants had left 41 files). The current
    files, other folders and anything that is not numba's stay; a file that cannot be removed is left."""
    dispatchers = [f for f in vars(jit).values() if hasattr(f, "py_func") and hasattr(f, "stats")]
    folder = getattr(getattr(dispatchers[0], "_cache", None), "_cache_path", None) if dispatchers else None
    if folder is None or os.path.dirname(os.path.abspath(folder)) != os.path.abspath(own):
        return  # numba's layout changed, or its folder is not under geom's
    current = tuple(f"{jit.__name__.rsplit('.', 1)[-1]}.{f.py_func.__qualname__}-{f.py_func.__code__.co_firstlineno}."
                    for f in dispatchers)
    try:
        names = os.listdir(folder)
        source = os.stat(jit.__file__).st_mtime
    except OSError:
        return
    if source > time.time():  # a source dated in the future (a skewed clock) would make every file look old
        source = -math.inf
    for name in names:
        if not name.endswith((".nbi", ".nbc")) or not name.startswith(("kernels.", "_jit.")):
            continue
        path = os.path.join(folder, name)
        try:
            if name.startswith("kernels.") or not name.startswith(current) or os.stat(path).st_mtime < source:
                os.remove(path)
        except OSError:  # another process removed it first, or the folder is read-only
            pass


def argsort_float32(a: np.ndarray, perm: np.ndarray, keys: np.ndarray, write_values: bool = True) -> None:
    """The order of each float32 row of ``a (R, n)`` into ``perm`` (int64), ties by index, through the
    float64 work array ``keys`` (C-contiguous, ``a``'s shape); with ``write_values`` the rows of ``a``
    are sorted in place. Rows of at most ``2^INDEX_BITS`` values."""
    _compiled()["unpack_keys"](sorted_keys(a, keys), perm, a, write_values)


def sorted_keys(a: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """float32 rows ``a (R, n)`` -> ``keys`` (float64, C-contiguous, ``a``'s shape) filled with packed
    value-index keys and sorted by row: the values in order, ties by index, each carrying its index
    (rows of at most ``2^INDEX_BITS`` values). Returns ``keys``."""
    _compiled()["pack_keys"](a, keys)
    keys.sort(axis=-1)
    return keys


def pair_rows(*args) -> None:
    """The compiled uniform pairing of sorted rows (``geom._ot1d._jit.pair_rows``: its arguments)."""
    _compiled()["pair_rows"](*args)


def unsort_rows(values: np.ndarray, perm: np.ndarray, out: np.ndarray) -> None:
    """``out[r, perm[r, i]] = values[r, i]`` for ``(R, n)`` rows (``perm`` int64, each row a permutation)."""
    _compiled()["unsort_rows"](values, perm, out)


def merge_rows(*args) -> None:
    """The compiled merge of weighted 1-D measures (``geom._ot1d._jit.merge_rows``: its arguments)."""
    _compiled()["merge_rows"](*args)


def energy_rows(*args) -> None:
    """The compiled 1-D energies of sorted pooled rows (``geom._ot1d._jit.energy_rows``)."""
    _compiled()["energy_rows"](*args)


def warm() -> int:
    """Compile (or load from the cache) every kernel for the types geom passes; returns their number."""
    for dtype in (np.float32, np.float64):
        x = np.linspace(-1.0, 1.0, 8, dtype=dtype)[None]
        px = np.empty(x.shape, np.int64)
        if dtype == np.float32:
            argsort_float32(x, px, np.empty(x.shape))
        else:
            px[:] = np.arange(8)
        if dtype == np.float32:  # packed keys (with a gradient), or values (without)
            keys = sorted_keys(x, np.empty(x.shape))
            sides = [(keys, keys.view(np.int64), None), (x, None, None)]
        else:  # values, with their order or without
            sides = [(x, None, px), (x, None, None)]
        for xs, xb, xp in sides:  # every combination the pairing gets
            for ys, yb, yp in sides:
                gx, gy = (None if b is None and q is None else np.empty(x.shape, dtype)
                          for b, q in ((xb, xp), (yb, yp)))
                pair_rows(xs, ys, xb, yb, xp, yp, dtype == np.float32, 2.0, np.ones(1), np.empty(1, dtype),
                          np.empty(1), gx, gy)
        w = np.full(8, 1 / 8)
        cost, gap, gw, lx = (np.empty(1, dtype), np.empty(1), np.empty(x.shape), np.empty(9))
        g = np.empty(x.shape, dtype)  # support gradients in the data's dtype, at the atoms' places
        single = dtype == np.float32
        ordered = [(x, None, px)]  # values with orders (float64 data, or weight gradients wanted)
        if single:  # packed keys
            keys = sorted_keys(x, np.empty(x.shape))
            ordered.append((keys, keys.view(np.int64), None))
        for rows, bits, perm in ordered:  # a side: ordered, with its weights and with or without a gradient
            sides = [(rows, bits, perm, w, g), (rows, bits, perm, w, None)]
            if bits is not None or not single:  # or its values alone: equal weights, no gradient of any kind
                sides.append((x, None, None, None, None))
            for xs, xb, xp, a, gx in sides:  # every combination the merge gets
                for ys, yb, yp, b, gy in sides:
                    need_w = perm is not None and a is not None and b is not None
                    merge_rows(xs, ys, xb, yb, xp, yp, a, b, single, 2.0, np.ones(1), need_w, cost, gap, gx, gy, gw,
                               gw, lx, lx)
        unsort_rows(gw, px, np.empty(x.shape, dtype))  # float64 weight gradients into the data's dtype
        for use_const in (False, True):
            energy_rows(x, px, w, 4, 0.25, 0.25, use_const, True, np.empty(1), np.empty(x.shape))
    return len(_compiled())
