"""The numba kernels behind :mod:`geom._ot1d.kernels` (documented there), imported with numba on first use.

They are module functions, not closures. numba keys its cache on a hash of a function's closure, and a
closure over another compiled function hashes differently in every process: such kernels (the pairing,
the merge and the energy, which call the helpers ``entry``, ``levels`` and ``weight``) were compiled
again by every process, about 1 s at its first call, and added one more entry to the cache each time.
"""

from __future__ import annotations

import numba
import numpy as np

MASK = (1 << 28) - 1
"""The low bits of a packed key that carry the index (:data:`geom._ot1d.kernels.INDEX_BITS`, which checks
it on load). A literal here: numba compiles a global in as a constant, and its cache sees only this file."""


def _njit(function):
    try:
        return numba.njit(nogil=True, cache=True, boundscheck=False)(function)
    except RuntimeError:  # no folder to cache in (numba's own fallbacks included): compile per process
        return numba.njit(nogil=True, boundscheck=False)(function)


@_njit
def pack_keys(a, keys):
    """float32 rows ``a (R, n)`` -> float64 ``keys`` with each column index in the low bits (mirrored
    for negative values), one pass."""
    R, n = a.shape
    bits = keys.view(np.int64)
    for r in range(R):
        for i in range(n):
            keys[r, i] = a[r, i] + 0.0  # exact; -0.0 becomes 0.0, its equal
            b = bits[r, i]
            bits[r, i] = b | (((b >> 63) & MASK) ^ i)


@_njit
def unpack_keys(keys, perm, a, write_values):
    """Sorted ``keys`` -> the permutation ``perm`` and, with ``write_values``, the sorted float32
    values into ``a`` (rounded to nearest: the index bits vanish), one pass."""
    R, n = keys.shape
    bits = keys.view(np.int64)
    for r in range(R):
        for i in range(n):
            b = bits[r, i]
            perm[r, i] = (b & MASK) ^ ((b >> 63) & MASK)
            if write_values:
                a[r, i] = np.float32(keys[r, i])


@_njit
def entry(rows, bits, perms, r, i):
    """Value (as float64) and column index of place ``i`` of sorted row ``r``: unpacked from a float64
    key of :func:`sorted_keys` where ``bits`` (the keys' int64 view) is given (rounded to float32: the
    index bits vanish), else read from ``rows`` and ``perms`` (-1 where that is None). The None
    arguments are types to numba: each combination compiles without these branches."""
    if bits is not None:
        b = bits[r, i]
        return np.float64(np.float32(rows[r, i])), (b & MASK) ^ ((b >> 63) & MASK)
    if perms is None:
        return np.float64(rows[r, i]), np.int64(-1)
    return np.float64(rows[r, i]), perms[r, i]


@_njit
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
        unit = 1.0 / (n * sc)  # a product per value, not a quotient: the division took 40% of this pass
        quotient = not unit < np.inf  # a subnormal scale (float64 data): divide
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
            g = slope / (n * sc) if quotient else slope * unit
            if gx is not None:
                gx[r, ix] = g
            if gy is not None:
                gy[r, iy] = -g
        cost[r] = total / n
        gap[r] = largest


@_njit
def unsort_rows(values, perm, out):
    """``out[r, perm[r, i]] = values[r, i]``: rows in sorted order back to the order of their atoms."""
    R, n = values.shape
    for r in range(R):
        for i in range(n):
            out[r, perm[r, i]] = values[r, i]


@_njit
def levels(w, rows, bits, perms, r, out):
    """``out`` = the cumulative sums of the weights ``w`` of sorted row ``r``'s atoms (read as by
    :func:`entry`) divided by their total (the last is exactly 1); returns the total. ``w`` None: equal
    weights, the levels ``(i + 1) / n`` (the atoms' order is then not read, and a side without a
    gradient needs none)."""
    n = out.shape[0]
    if w is None:
        for i in range(n):
            out[i] = (i + 1) / n
        return 1.0
    s = 0.0
    for i in range(n):
        s += w[entry(rows, bits, perms, r, i)[1]]
        out[i] = s
    inv = 1.0 / s  # a product per level, not a quotient (the weights of a measure sum to about 1)
    for i in range(n - 1):
        out[i] = min(out[i] * inv, 1.0)  # at most 1: a level past the last weight's rounding stays ordered
    out[n - 1] = 1.0
    return s


@_njit
def level_gradient(g, levels, total):
    """``g`` = d cost / d level -> d cost / d w_k = (sum_{i >= k} g_i - sum_i g_i level_i) / total, in place."""
    at_levels = 0.0
    for k in range(g.shape[0]):
        at_levels += g[k] * levels[k]
    suffix = 0.0
    for k in range(g.shape[0] - 1, -1, -1):
        suffix += g[k]
        g[k] = (suffix - at_levels) / total


@_njit
def merge_rows(xs, ys, xbits, ybits, px, py, a, b, single, p, scale, need_w, cost, gap, gx, gy, gwx, gwy, lx, ly):
    """Weighted 1-D transport, row by row, by one merge of the two cumulative-weight sequences.

    ``xs (R, N)``, ``ys (R, M)``: sorted rows, as :func:`pair_rows` takes them (float64 keys of
    :func:`sorted_keys` with their int64 views ``xbits`` / ``ybits``, or values with their orders
    ``px`` / ``py``, or values alone for a side with equal weights and no gradient); ``a (N,)``, ``b (M,)``
    float64 weights (None: equal weights); ``single``: the data are float32;
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
        inv = 1.0 / sc  # products, not quotients: two divisions per piece took 11% of the walk
        quotient = not inv < np.inf  # a subnormal scale (float64 data): divide
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
            d = d / sc if quotient else d * inv
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
            g = dt * slope / sc if quotient else dt * slope * inv
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


@_njit
def weight(j, w, n_first, const_a, const_b, use_const):
    """The signed weight of atom ``j``: branch-free for constant weights (which measure an atom of
    a sorted row comes from is random)."""
    if use_const:
        first = np.float64(j < n_first)
        return first * const_a - (1.0 - first) * const_b
    return w[j]


@_njit
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
