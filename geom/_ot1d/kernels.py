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

numba compiles each kernel on first use and caches the machine code in geom's cache folder
(``<cache>/numba``; :mod:`geom._cache`), unless the user set ``NUMBA_CACHE_DIR`` or imported numba
first; ``make setup`` warms it (:func:`warm`), so parallel test workers never compile at once.
"""

from __future__ import annotations

import os
import sys
import threading

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
        if not os.environ.get("NUMBA_CACHE_DIR") and "numba" not in sys.modules:
            from .._cache import cache_dir

            os.environ["NUMBA_CACHE_DIR"] = str(cache_dir() / "numba")
        try:
            import numba
        except ImportError as exc:  # pragma: no cover - a core dependency
            raise ImportError("geom needs numba for its sort kernels: pip install numba") from exc
        _KERNELS = _build(numba)
        return _KERNELS


def _build(numba):
    def njit(function):
        try:
            return numba.njit(nogil=True, cache=True, boundscheck=False)(function)
        except RuntimeError:  # no folder to cache in (numba's own fallbacks included): compile per process
            return numba.njit(nogil=True, boundscheck=False)(function)

    mask = (1 << INDEX_BITS) - 1

    @njit
    def pack_keys(a, keys):
        """float32 rows ``a (R, n)`` -> float64 ``keys`` with each column index in the low bits (mirrored
        for negative values), one pass."""
        R, n = a.shape
        bits = keys.view(np.int64)
        for r in range(R):
            for i in range(n):
                keys[r, i] = a[r, i] + 0.0  # exact; -0.0 becomes 0.0, its equal
                b = bits[r, i]
                bits[r, i] = b | (((b >> 63) & mask) ^ i)

    @njit
    def unpack_keys(keys, perm, a, write_values):
        """Sorted ``keys`` -> the permutation ``perm`` and, with ``write_values``, the sorted float32
        values into ``a`` (rounded to nearest: the index bits vanish), one pass."""
        R, n = keys.shape
        bits = keys.view(np.int64)
        for r in range(R):
            for i in range(n):
                b = bits[r, i]
                perm[r, i] = (b & mask) ^ ((b >> 63) & mask)
                if write_values:
                    a[r, i] = np.float32(keys[r, i])

    @njit
    def entry(rows, bits, perms, r, i):
        """Value (as float64) and column index of place ``i`` of sorted row ``r``: unpacked from a float64
        key of :func:`sorted_keys` where ``bits`` (the keys' int64 view) is given (rounded to float32: the
        index bits vanish), else read from ``rows`` and ``perms`` (-1 where that is None). The None
        arguments are types to numba: each combination compiles without these branches."""
        if bits is not None:
            b = bits[r, i]
            return np.float64(np.float32(rows[r, i])), (b & mask) ^ ((b >> 63) & mask)
        if perms is None:
            return np.float64(rows[r, i]), np.int64(-1)
        return np.float64(rows[r, i]), perms[r, i]

    @njit
    def pair_rows(xs, ys, xbits, ybits, px, py, single, p, scale, cost, gap, gx, gy):
        """Uniform 1-D transport of sorted rows of one length ``n``, k-th atom to k-th atom, in one pass.

        ``xs``, ``ys`` ``(R, n)``: sorted values, or float64 keys of :func:`sorted_keys` (values and
        orders in one) whose int64 views are ``xbits`` / ``ybits`` (None for values); ``px``, ``py``
        the orders of value rows whose gradient is wanted, else None; ``single``: the data are float32.
        ``scale (R,)`` divides each row's gaps. Writes ``cost (R,)`` ``mean |d / scale|^p`` summed in
        float64 (``d`` the gap in the data's dtype, a float32 difference rounded from its exact float64
        one: past the dtype's range it is inf), ``gap (R,)`` the largest ``|d|`` and, where ``gx`` /
        ``gy`` are ``(R, n)`` arrays rather than None, the gradients of the cost in the unsorted
        values, ``+-p |d / scale|^(p - 1) sign(d) / (n scale)`` at each atom's place."""
        R, n = xs.shape
        for r in range(R):
            sc = scale[r]
            total = 0.0
            largest = 0.0
            for i in range(n):
                xv, ix = entry(xs, xbits, px, r, i)
                yv, iy = entry(ys, ybits, py, r, i)
                d = xv - yv
                if single:
                    d = np.float64(np.float32(d))
                largest = max(largest, abs(d))
                if sc != 1.0:
                    d /= sc
                if p == 2.0:
                    total += d * d
                    slope = 2.0 * d
                elif p == 1.0:
                    total += abs(d)
                    slope = np.sign(d)
                else:
                    lower = abs(d) ** (p - 1.0)  # one power: |d|^p = |d|^(p - 1) |d|
                    total += lower * abs(d)
                    slope = p * lower * np.sign(d)
                g = slope / (n * sc)
                if gx is not None:
                    gx[r, ix] = g
                if gy is not None:
                    gy[r, iy] = -g
            cost[r] = total / n
            gap[r] = largest

    @njit
    def unsort_rows(values, perm, out):
        """``out[r, perm[r, i]] = values[r, i]``: rows in sorted order back to the order of their atoms."""
        R, n = values.shape
        for r in range(R):
            for i in range(n):
                out[r, perm[r, i]] = values[r, i]

    @njit
    def levels(w, rows, bits, perms, r, out):
        """``out`` = the cumulative sums of the weights ``w`` of sorted row ``r``'s atoms (read as by
        :func:`entry`) divided by their total (the last is exactly 1); returns the total."""
        s = 0.0
        for i in range(out.shape[0]):
            s += w[entry(rows, bits, perms, r, i)[1]]
            out[i] = s
        for i in range(out.shape[0]):
            out[i] /= s
        return s

    @njit
    def level_gradient(g, levels, total):
        """``g`` = d cost / d level -> d cost / d w_k = (sum_{i >= k} g_i - sum_i g_i level_i) / total, in place."""
        at_levels = 0.0
        for k in range(g.shape[0]):
            at_levels += g[k] * levels[k]
        suffix = 0.0
        for k in range(g.shape[0] - 1, -1, -1):
            suffix += g[k]
            g[k] = (suffix - at_levels) / total

    @njit
    def merge_rows(xs, ys, xbits, ybits, px, py, a, b, single, p, scale, need_w, cost, gap, gx, gy, gwx, gwy, lx, ly):
        """Weighted 1-D transport, row by row, by one merge of the two cumulative-weight sequences.

        ``xs (R, N)``, ``ys (R, M)``: sorted rows, as :func:`pair_rows` takes them (float64 keys of
        :func:`sorted_keys` with their int64 views ``xbits`` / ``ybits``, or values with their orders
        ``px`` / ``py``); ``a (N,)``, ``b (M,)`` float64 weights; ``single``: the data are float32;
        ``scale (R,)`` divides each row's gaps. Writes ``cost (R,)`` ``sum dt |d / scale|^p`` over the
        ``N + M`` pieces (``dt`` the mass of a piece, ``d`` the gap between the atoms holding it, in
        the data's dtype; x breakpoints first on ties), ``gap (R,)`` the largest ``|d|`` of a piece
        with mass, ``gx``, ``gy`` the gradients of the cost in the values at each atom's place (None:
        not wanted, a variant compiled without them) and, with ``need_w`` (orders given), ``gwx``,
        ``gwy`` those in the sorted weights. ``lx (N + 1,)``, ``ly (M + 1,)`` are work arrays for the
        levels and a sentinel each.

        An atom's pieces are consecutive, so its gradient is summed in a register and stored at its
        place at every piece (the last store holds the sum): no read-modify-write, no unsort pass."""
        R, N = xs.shape
        M = ys.shape[1]
        for r in range(R):
            total_x = levels(a, xs, xbits, px, r, lx[:N])
            total_y = levels(b, ys, ybits, py, r, ly[:M])
            if need_w:
                gwx[r] = 0.0
                gwy[r] = 0.0
            lx[N] = 2.0  # sentinels above every level: the walk needs no test for an exhausted side
            ly[M] = 2.0
            sc = scale[r]
            i = 0
            j = 0
            prev = 0.0
            total = 0.0
            largest = 0.0
            acc_x = 0.0
            acc_y = 0.0
            last_ck = 0.0
            last_side = -1
            last_at = 0
            for _ in range(N + M):  # written without data-dependent branches: which side comes next is random
                xi = lx[i]
                yj = ly[j]
                take_x = xi <= yj  # x breakpoints first on ties
                t = min(xi, yj)
                ia = min(i, N - 1)
                ja = min(j, M - 1)
                dt = t - prev
                prev = t
                xv, ix = entry(xs, xbits, px, r, ia)
                yv, iy = entry(ys, ybits, py, r, ja)
                # in the data's dtype: a gap past its range is inf
                d = np.float64(np.float32(xv) - np.float32(yv)) if single else xv - yv
                has_mass = dt > 0.0
                largest = max(largest, abs(d) if has_mass else 0.0)
                d = d if has_mass or sc == 1.0 else 0.0  # no mass, no cost; its gap may exceed the scale
                d /= sc
                if p == 2.0:
                    ck = d * d
                    slope = 2.0 * d
                elif p == 1.0:
                    ck = abs(d)
                    slope = np.sign(d)
                else:
                    lower = abs(d) ** (p - 1.0)  # one power: |d|^p = |d|^(p - 1) |d|
                    ck = lower * abs(d)
                    slope = p * lower * np.sign(d)
                total += dt * ck
                g = dt * slope / sc
                sum_x = acc_x + g
                sum_y = acc_y - g
                if gx is not None:
                    gx[r, ix] = sum_x
                if gy is not None:
                    gy[r, iy] = sum_y
                # a new atom starts after a breakpoint of its side, except after the last (the pieces
                # that follow it have no mass and stay with the last atom)
                acc_x = 0.0 if take_x and i < N - 1 else sum_x
                acc_y = 0.0 if not take_x and j < M - 1 else sum_y
                if need_w:  # moving a level moves mass between the piece ending there and the next
                    if last_side == 0:
                        gwx[r, last_at] += last_ck - ck
                    elif last_side == 1:
                        gwy[r, last_at] += last_ck - ck
                    last_ck, last_side, last_at = ck, 0 if take_x else 1, i if take_x else j
                step = np.int64(take_x)
                i += step
                j += 1 - step
            cost[r] = total
            gap[r] = largest
            if need_w:
                level_gradient(gwx[r], lx[:N], total_x)
                level_gradient(gwy[r], ly[:M], total_y)

    @njit
    def weight(j, w, n_first, const_a, const_b, use_const):
        """The signed weight of atom ``j``: branch-free for constant weights (which measure an atom of
        a sorted row comes from is random)."""
        if use_const:
            first = np.float64(j < n_first)
            return first * const_a - (1.0 - first) * const_b
        return w[j]

    @njit
    def energy_rows(s, perm, w, n_first, const_a, const_b, use_const, need_g, energy, g):
        """1-D energy distances of sorted pooled rows ``s (R, K)`` (order ``perm``, signed weights
        ``w (K,)``, or ``const_a`` for atoms below ``n_first`` and ``-const_b`` above when
        ``use_const``): ``energy (R,)`` = ``2 sum_k W_k^2 (s_(k+1) - s_k)``, ``W`` the running sums. With
        ``need_g``, the gradient in the positions goes to ``g (R, K)`` in point order:
        ``-2 w_k (weight strictly below - weight strictly above)``, where a tie group counts on neither
        side of its members."""
        R, K = s.shape
        for r in range(R):
            run = 0.0
            total = 0.0
            for k in range(K - 1):
                run += weight(perm[r, k], w, n_first, const_a, const_b, use_const)
                total += run * run * (np.float64(s[r, k + 1]) - np.float64(s[r, k]))
            end = run + weight(perm[r, K - 1], w, n_first, const_a, const_b, use_const)
            energy[r] = 2.0 * total
            if not need_g:
                continue
            run = 0.0
            k = 0
            while k < K:
                last = k
                while last + 1 < K and s[r, last + 1] == s[r, k]:
                    last += 1
                below = run
                for q in range(k, last + 1):
                    run += weight(perm[r, q], w, n_first, const_a, const_b, use_const)
                side = below - (end - run)
                for q in range(k, last + 1):
                    j = perm[r, q]
                    g[r, j] = -2.0 * weight(j, w, n_first, const_a, const_b, use_const) * side
                k = last + 1

    return {"pack_keys": pack_keys, "unpack_keys": unpack_keys, "pair_rows": pair_rows, "merge_rows": merge_rows,
            "unsort_rows": unsort_rows, "energy_rows": energy_rows}


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
    """The compiled uniform pairing of sorted rows (see ``_build``'s ``pair_rows`` for its arguments)."""
    _compiled()["pair_rows"](*args)


def unsort_rows(values: np.ndarray, perm: np.ndarray, out: np.ndarray) -> None:
    """``out[r, perm[r, i]] = values[r, i]`` for ``(R, n)`` rows (``perm`` int64, each row a permutation)."""
    _compiled()["unsort_rows"](values, perm, out)


def merge_rows(*args) -> None:
    """The compiled merge of weighted 1-D measures (see ``_build``'s ``merge_rows`` for its arguments)."""
    _compiled()["merge_rows"](*args)


def energy_rows(*args) -> None:
    """The compiled 1-D energies of sorted pooled rows (see ``_build``'s ``energy_rows``)."""
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
        merges = [(x, px, None)]  # values with orders (float64 data, or weight gradients wanted)
        if single:  # packed keys
            keys = sorted_keys(x, np.empty(x.shape))
            merges.append((keys, None, keys.view(np.int64)))
        for xs, xp, xb in merges:
            for gx, gy in ((g, g), (g, None), (None, g), (None, None)):  # which sides' gradients
                merge_rows(xs, xs, xb, xb, xp, xp, w, w, single, 2.0, np.ones(1), xp is not None, cost, gap, gx, gy,
                           gw, gw, lx, lx)
        unsort_rows(gw, px, np.empty(x.shape, dtype))  # float64 weight gradients into the data's dtype
        for use_const in (False, True):
            energy_rows(x, px, w, 4, 0.25, 0.25, use_const, True, np.empty(1), np.empty(x.shape))
    return len(_compiled())
