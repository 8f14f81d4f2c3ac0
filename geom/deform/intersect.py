"""Self-intersections of a triangle mesh: which faces meet another face of the same mesh.

CPU, numpy only, float64, vectorised over faces and face pairs (no Python loop per face):

1. **Input**: ``vertices (V, 3)`` finite reals, ``faces (F, 3)`` integer indices in range. Vertices
   at exactly the same coordinates are one vertex (welded), so a triangle soup or an STL file whose
   corners are repeated has the same adjacency as its indexed mesh. The mesh is moved to its
   bounding-box centre and divided by a power of 2 near its bounding-box diagonal ``L`` (exact), so
   the decisions do not depend on where the mesh lies or on its units.
2. **Broad phase**: a uniform grid over the faces' bounding boxes (padded by the tolerance), of cell
   size the median face extent (doubled while the faces would cover more than ``max(16 F, 2^20)``
   cells). Each pair of boxes that overlap is reported once: in the cell of the lower corner of the
   boxes' overlap. The number of pairs sharing cells is counted, and checked against the available
   memory (:func:`geom._checks.check_memory`), before any pair array is built.
3. **Narrow phase**, by the number of vertices the two faces share:

   - **none**: Moller's interval test (1997): reject when a triangle lies strictly on one side of the
     other's plane; otherwise intersect the two triangles with the line common to both planes and
     test whether the two intervals overlap. Pairs within the tolerance of a common plane, or whose
     planes are within ``1e-6`` radians of parallel (the common line is ill-conditioned), take the
     edge tests instead: an edge of one triangle meets the other (below), 6 segment tests, which
     decide any pair of closed triangles.
   - **one vertex** ``a`` (``T1 = (a, b, c)``, ``T2 = (a, d, e)``): the faces meet beyond ``a`` exactly when
     the opposite edge ``bc`` meets ``T2`` or ``de`` meets ``T1`` (their intersection is convex and
     contains ``a``; any other of its extreme points lies on ``bc`` or ``de``). So a fan around a
     vertex is clean, and a face folded through a neighbour of its vertex is caught.
   - **an edge** ``ab`` (``T1 = (a, b, c)``, ``T2 = (a, b, d)``): two planes through ``ab`` meet only along
     ``ab``, so the faces meet beyond their edge exactly when they are coplanar (``c`` within the
     tolerance of ``T2``'s plane and ``d`` of ``T1``'s) with ``c`` and ``d`` on the same side of ``ab``
     (a face folded flat onto its neighbour). A flat fold the other way, or any dihedral, is clean.
   - **three** (the same face twice): counted, the two copies overlap on their whole area.

   Segment against triangle: the segment's crossing with the plane lies in the closed triangle, or,
   for a segment in the plane, an endpoint lies in the triangle or the segment meets one of its edges.

**Contact counts.** Faces that share no vertex are closed sets: touching at a point or along a
segment (a vertex on another face, two edges crossing, coplanar triangles meeting at a boundary
point) counts as an intersection, like crossing, because a mesh whose separate sheets touch is not
an embedded surface. Faces that share vertices count only when they meet beyond what they share.

**Tolerance.** ``eps = rtol * L`` (``rtol = 1e-9`` by default): signed distances to a plane, and
in-plane distances to an edge line, of at most ``eps`` count as zero. Decisions err on the side of
contact: faces that share nothing and come within about ``eps`` of each other count, a crossing
shallower than ``eps`` counts (as a touch), and a face folded onto its edge neighbour to within
``eps`` of flat counts. The predicates are float64, not exact (no adaptive arithmetic): the rounding
of a unit normal grows like the unit roundoff ``u = 1.1e-16`` times (longest edge / height) of its
face, so for slivers whose height is below about ``u / rtol`` times their longest edge (``1e-7`` by
default) the rounding can exceed ``eps``, and their contacts closer than that rounding may be decided
either way; a face whose height is below ``eps`` is degenerate (below). The input's own rounding
counts too: a mesh far from the origin for its size (offset / diagonal above about ``rtol / u``,
``1e7`` by default) has coordinates rounded by more than ``eps``, and its exact contacts are then
decided on the rounded coordinates (gaps or crossings of that size).
Away from contact (gaps and crossings much larger than ``eps``) the answer is the exact one. Small
integer lattices, full of exact contacts, coplanar and collinear pairs, agree with an exact
rational reference, also after a random rotation, translation and scaling (the tests).

**Degenerate faces** (zero area: a repeated vertex, collinear corners, or a height below ``eps``)
have no normal: they are skipped (they neither intersect nor make another face intersect), and
reported in :attr:`SelfIntersections.degenerate`.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .._checks import as_host_array, check_memory, check_real, describe

__all__ = ["SelfIntersections", "pairs_within_groups", "self_intersection_fraction", "self_intersections"]

_RAW_CHUNK = 1 << 22  # pairs sharing a cell, generated at once
_PAIR_CHUNK = 1 << 16  # candidate pairs tested at once
_RTOL = 1e-9
_PARALLEL = 1e-6  # pairs of planes closer to parallel (sine of their angle) take the edge tests, not the common line


@dataclasses.dataclass(frozen=True)
class SelfIntersections:
    """Which faces of a mesh meet another face of the same mesh.

    Attributes:
        mask: ``(F,)`` bool, faces that intersect at least one other face.
        pairs: ``(K, 2)`` int64, the intersecting face pairs ``i < j``, sorted by ``i`` then ``j``.
        degenerate: ``(F,)`` bool, zero-area faces (skipped: never in ``mask`` nor in ``pairs``).
        tolerance: the absolute tolerance ``eps`` used, in the units of the input.
        n_candidates: pairs of faces whose padded bounding boxes overlap (tested exactly).
    """

    mask: np.ndarray
    pairs: np.ndarray
    degenerate: np.ndarray
    tolerance: float
    n_candidates: int

    @property
    def fraction(self) -> float:
        """The fraction of the ``F`` faces (degenerate ones included in ``F``) that intersect another."""
        return float(self.mask.mean())


def mesh_arrays(vertices, faces) -> tuple[np.ndarray, np.ndarray]:
    """Validated ``vertices (V, 3)`` float64 and ``faces (F, 3)`` int64; TypeError / ValueError naming
    the argument, what was expected and what came."""
    v = as_host_array(vertices, "vertices", "a (V, 3) array of coordinates")
    if v.dtype.kind not in "iuf":
        raise TypeError(f"vertices: expected real coordinates (V, 3), got {describe(v)}")
    if v.ndim != 2 or v.shape[1] != 3 or v.shape[0] == 0:
        raise ValueError(f"vertices: expected shape (V, 3) with V >= 1, got {describe(v)}")
    v = v.astype(np.float64)
    bad = ~np.isfinite(v)
    if bad.any():
        row = int(np.flatnonzero(bad.any(1))[0])
        raise ValueError(f"vertices: expected finite coordinates, got {v[row].tolist()} at row {row}")
    f = as_host_array(faces, "faces", "an (F, 3) array of vertex indices")
    if f.dtype.kind not in "iu":
        raise TypeError(f"faces: expected integer vertex indices (F, 3), got {describe(f)}")
    if f.ndim != 2 or f.shape[1] != 3 or f.shape[0] == 0:
        raise ValueError(f"faces: expected shape (F, 3) with F >= 1 (triangles), got {describe(f)}")
    lo, hi = int(f.min()), int(f.max())
    if lo < 0 or hi >= len(v):
        raise ValueError(f"faces: expected vertex indices in [0, {len(v)}), got values in [{lo}, {hi}]")
    return v, f.astype(np.int64)


def pairs_within_groups(sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All pairs ``(p, q)``, ``p < q``, of positions inside consecutive groups of ``sizes`` entries.

    >>> [t.tolist() for t in pairs_within_groups(np.array([3, 1, 2]))]
    [[0, 0, 1, 4], [1, 2, 2, 5]]
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    end = np.repeat(np.cumsum(sizes), sizes)  # (E,) exclusive end of each entry's group
    return _pairs_after(np.arange(len(end)), end - np.arange(len(end)) - 1)


def _pairs_after(entries: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(e, e + 1), ..., (e, e + counts_e)`` for each entry ``e``."""
    first = np.repeat(entries, counts)
    offset = np.arange(len(first)) - np.repeat(np.cumsum(counts) - counts, counts)
    return first, first + 1 + offset


def _cells(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grid cell ranges ``[a, b]`` (``(F, 3)`` each, inclusive) of boxes ``[lo, hi]`` and the grid shape."""
    F = len(lo)
    origin, span = lo.min(0), hi.max(0) - lo.min(0)
    extent = (hi - lo).max(1)
    h = float(np.median(extent))
    if not h > 0:
        h = float(span.max()) or 1.0
    cap = max(16 * F, 1 << 20)
    while True:
        shape = np.floor(span / h).astype(np.int64) + 1
        if math.prod(int(s) for s in shape) < 1 << 62:
            a = np.clip(np.floor((lo - origin) / h).astype(np.int64), 0, shape - 1)
            b = np.clip(np.floor((hi - origin) / h).astype(np.int64), 0, shape - 1)
            if float((b - a + 1).prod(1, dtype=np.float64).sum()) <= cap:
                return a, b, shape
        h *= 2


def _candidates(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``i < j`` (``(P,)`` each, indices into the boxes) whose boxes ``[lo, hi]`` overlap, each once."""
    a, b, shape = _cells(lo, hi)
    width = b - a + 1  # (F, 3)
    counts = width.prod(1)
    E = int(counts.sum())
    check_memory(E * 128, "faces", f"{E} (cell, face) entries of the broad-phase grid")
    face = np.repeat(np.arange(len(lo)), counts)
    r = np.arange(E) - np.repeat(np.cumsum(counts) - counts, counts)  # rank of the cell within its face's range
    w = width[face]
    iz, t = r % w[:, 2], r // w[:, 2]
    iy, ix = t % w[:, 1], t // w[:, 1]
    cell = ((a[face, 0] + ix) * shape[1] + a[face, 1] + iy) * shape[2] + a[face, 2] + iz
    order = np.argsort(cell, kind="stable")
    cell, face = cell[order], face[order]
    new = np.r_[True, cell[1:] != cell[:-1]]
    end = np.repeat(np.r_[np.flatnonzero(new)[1:], E], np.diff(np.r_[np.flatnonzero(new), E]))
    after = end - np.arange(E) - 1  # (E,) partners of each entry later in its cell
    total = int(after.sum())
    check_memory(total * 16.0, "faces", f"{total} pairs of faces sharing broad-phase grid cells")
    cum = np.cumsum(after)
    out_i, out_j = [], []
    e0 = 0
    while e0 < E:
        done = cum[e0 - 1] if e0 else 0
        e1 = max(e0 + 1, int(np.searchsorted(cum, done + _RAW_CHUNK, side="right")))
        p, q = _pairs_after(np.arange(e0, e1), after[e0:e1])
        fi, fj = face[p], face[q]
        corner = np.maximum(a[fi], a[fj])  # cell of the lower corner of the boxes' overlap
        keep = (lo[fi] <= hi[fj]).all(1) & (lo[fj] <= hi[fi]).all(1) & (
            (corner[:, 0] * shape[1] + corner[:, 1]) * shape[2] + corner[:, 2] == cell[p])
        fi, fj = fi[keep], fj[keep]
        out_i.append(np.minimum(fi, fj))
        out_j.append(np.maximum(fi, fj))
        e0 = e1
    return np.concatenate(out_i), np.concatenate(out_j)


# ----------------------------------------------------------------- predicates (rows of pairs)


def _dot(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.einsum("...k,...k->...", x, y)


def _unit_normals(T: np.ndarray) -> np.ndarray:
    """``(n, 3)`` unit normals of triangles ``(n, 3, 3)`` (non-degenerate), right-hand rule."""
    n = np.cross(T[:, 1] - T[:, 0], T[:, 2] - T[:, 0])
    return n / np.linalg.norm(n, axis=1, keepdims=True)


def _snap(d: np.ndarray, eps: float) -> np.ndarray:
    return np.where(np.abs(d) <= eps, 0.0, d)


def _line_side(x, u, v, n, eps):
    """Signed in-plane distance (plane of unit normal ``n``) of ``x`` from the line ``uv``, snapped."""
    e = v - u
    return _snap(_dot(np.cross(e, x - u), n) / np.linalg.norm(e, axis=-1), eps)


def _inside(x, T, n, eps):
    """``x`` (in the plane of ``T``, or projected on it along ``n``) lies in the closed triangle."""
    return ((_line_side(x, T[:, 0], T[:, 1], n, eps) >= 0) & (_line_side(x, T[:, 1], T[:, 2], n, eps) >= 0)
            & (_line_side(x, T[:, 2], T[:, 0], n, eps) >= 0))


def _apart(s, t):
    """Two snapped signed values strictly on the same side of 0."""
    return ((s > 0) & (t > 0)) | ((s < 0) & (t < 0))


def _segments_meet(p, q, u, v, n, eps):
    """Closed segments ``pq`` and ``uv``, both in the plane of unit normal ``n``, meet."""
    sp, sq = _line_side(p, u, v, n, eps), _line_side(q, u, v, n, eps)
    su, sv = _line_side(u, p, q, n, eps), _line_side(v, p, q, n, eps)
    collinear = (sp == 0) & (sq == 0)
    e = v - u
    length = np.linalg.norm(e, axis=-1)
    tp, tq = _dot(p - u, e) / length, _dot(q - u, e) / length  # positions along uv, which spans [0, length]
    overlap = np.maximum(np.minimum(tp, tq), 0.0) <= np.minimum(np.maximum(tp, tq), length) + eps
    return np.where(collinear, overlap, ~_apart(sp, sq) & ~_apart(su, sv))


def _segment_meets_triangle(p, q, T, n, eps):
    """Closed segments ``pq`` ``(m, 3)`` meet closed triangles ``T`` ``(m, 3, 3)`` of unit normals ``n``."""
    dp, dq = _snap(_dot(p - T[:, 0], n), eps), _snap(_dot(q - T[:, 0], n), eps)
    out = np.zeros(len(p), bool)
    flat = (dp == 0) & (dq == 0)
    cross = ~flat & ~_apart(dp, dq)
    if cross.any():
        a, b = dp[cross], dq[cross]
        x = p[cross] + (q[cross] - p[cross]) * (a / (a - b))[:, None]  # a - b != 0: not both zero, not alike
        out[cross] = _inside(x, T[cross], n[cross], eps)
    if flat.any():
        pf, qf, Tf, nf = p[flat], q[flat], T[flat], n[flat]
        hit = _inside(pf, Tf, nf, eps) | _inside(qf, Tf, nf, eps)
        for k in range(3):
            hit |= _segments_meet(pf, qf, Tf[:, k], Tf[:, (k + 1) % 3], nf, eps)
        out[flat] = hit
    return out


def _edges_meet(A, nA, B, nB, eps):
    """Some edge of ``A`` meets ``B`` or some edge of ``B`` meets ``A`` (closed triangles)."""
    hit = np.zeros(len(A), bool)
    for k in range(3):
        hit |= _segment_meets_triangle(A[:, k], A[:, (k + 1) % 3], B, nB, eps)
        hit |= _segment_meets_triangle(B[:, k], B[:, (k + 1) % 3], A, nA, eps)
    return hit


def _interval(T, d, D):
    """The interval ``[lo, hi]`` along the unit direction ``D`` of ``T``'s meeting with the plane from
    which its vertices lie at snapped signed distances ``d`` ``(m, 3)`` (not all of one sign)."""
    t = _dot(T, D[:, None, :])  # (m, 3)
    lo = np.where(d == 0, t, np.inf).min(1)
    hi = np.where(d == 0, t, -np.inf).max(1)
    for i, j in ((0, 1), (1, 2), (2, 0)):
        cross = d[:, i] * d[:, j] < 0
        ratio = d[:, i] / np.where(cross, d[:, i] - d[:, j], 1.0)
        x = t[:, i] + (t[:, j] - t[:, i]) * ratio
        lo, hi = np.where(cross, np.minimum(lo, x), lo), np.where(cross, np.maximum(hi, x), hi)
    return lo, hi


def _disjoint_pairs(A, nA, B, nB, eps):
    """Closed triangles that share no vertex meet (Moller's interval test, coplanar: edge tests)."""
    dB = _snap(_dot(B - A[:, None, 0], nA[:, None]), eps)  # (m, 3) B's vertices from A's plane
    dA = _snap(_dot(A - B[:, None, 0], nB[:, None]), eps)
    out = np.zeros(len(A), bool)
    live = ~((dB > 0).all(1) | (dB < 0).all(1) | (dA > 0).all(1) | (dA < 0).all(1))
    D = np.cross(nA, nB)  # (m, 3) along the line common to both planes
    norm = np.linalg.norm(D, axis=1)
    flat = live & ((dB == 0).all(1) | (dA == 0).all(1) | (norm < _PARALLEL))  # the edge tests hold for any pair
    general = live & ~flat
    if general.any():
        g = general
        D = D[g] / norm[g, None]
        lo1, hi1 = _interval(A[g], dA[g], D)
        lo2, hi2 = _interval(B[g], dB[g], D)
        out[g] = np.maximum(lo1, lo2) <= np.minimum(hi1, hi2) + eps
    if flat.any():
        out[flat] = _edges_meet(A[flat], nA[flat], B[flat], nB[flat], eps)
    return out


def _rolled(T, first):
    """Triangles ``(m, 3, 3)`` with vertex ``first`` ``(m,)`` first, orientation kept."""
    idx = (first[:, None] + np.arange(3)) % 3
    return np.take_along_axis(T, idx[:, :, None], 1)


def _pairs_meet(P, f, i, j, eps):
    """For candidate pairs ``(i, j)`` of non-degenerate faces, whether they intersect (see the module)."""
    A, B = P[f[i]], P[f[j]]  # (m, 3, 3)
    nA, nB = _unit_normals(A), _unit_normals(B)
    eq = f[i][:, :, None] == f[j][:, None, :]  # (m, 3, 3)
    inA, inB = eq.any(2), eq.any(1)  # (m, 3) vertex shared with the other face
    shared = inA.sum(1)
    out = shared == 3
    s = shared == 0
    out[s] = _disjoint_pairs(A[s], nA[s], B[s], nB[s], eps)
    s = shared == 1
    if s.any():  # the edge opposite the shared vertex against the other face, both ways
        A1, B1 = _rolled(A[s], inA[s].argmax(1)), _rolled(B[s], inB[s].argmax(1))
        out[s] = (_segment_meets_triangle(A1[:, 1], A1[:, 2], B1, nB[s], eps)
                  | _segment_meets_triangle(B1[:, 1], B1[:, 2], A1, nA[s], eps))
    s = shared == 2
    if s.any():  # coplanar, the free vertices on the same side of the shared edge
        A2, B2 = _rolled(A[s], (inA[s].argmin(1) + 1) % 3), _rolled(B[s], (inB[s].argmin(1) + 1) % 3)
        a, b, c, d = A2[:, 0], A2[:, 1], A2[:, 2], B2[:, 2]  # A2 = (a, b, c), B2 = (a, b, d) or (b, a, d)
        flat = (np.abs(_dot(d - a, nA[s])) <= eps) & (np.abs(_dot(c - B2[:, 0], nB[s])) <= eps)
        out[s] = flat & (_line_side(d, a, b, nA[s], eps) > 0)  # c is on the positive side of ab in A's plane
    return out


def self_intersections(vertices, faces, *, rtol: float = _RTOL) -> SelfIntersections:
    """Which faces of a triangle mesh intersect another face of the same mesh.

    Faces that share a vertex or an edge and only touch there do not count; faces that share one and
    also meet elsewhere (a fold through a neighbour) do, and so do faces that share nothing and touch
    or cross. See :mod:`geom.deform.intersect` for the algorithm, the tolerance and its limits.

    Args:
        vertices: ``(V, 3)`` finite real coordinates (array, tensor or nested list).
        faces: ``(F, 3)`` integer vertex indices in ``[0, V)``, ``F >= 1``.
        rtol: tolerance relative to the bounding-box diagonal ``L``: ``eps = rtol * L``, in ``(0, 1e-3]``.

    Returns:
        A :class:`SelfIntersections`: ``mask (F,)``, ``pairs (K, 2)``, ``degenerate (F,)``, the
        tolerance used and the number of candidate pairs; ``.fraction`` the fraction of faces in ``mask``.

    Raises:
        TypeError, ValueError: naming ``vertices``, ``faces`` or ``rtol``; ValueError naming ``faces``
            where the broad phase would need more memory than is available.

    >>> v = [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0.2, 0.2, -1], [0.2, 0.2, 1], [2, 2, 0]]
    >>> r = self_intersections(v, [[0, 1, 2], [3, 4, 5]])  # the second face pierces the first
    >>> r.mask.tolist(), r.pairs.tolist()
    ([True, True], [[0, 1]])
    """
    rtol = check_real(rtol, "rtol", "in (0, 1e-3]", lambda x: 0 < x <= 1e-3)
    v, f = mesh_arrays(vertices, faces)
    F = len(f)
    v, weld = np.unique(v + 0.0, axis=0, return_inverse=True)  # + 0.0: -0.0 and 0.0 are one vertex
    f = weld.reshape(-1)[f]
    top = float(np.abs(v).max())
    unit = math.ldexp(1.0, math.frexp(top)[1]) if top > 0 else 1.0  # a power of 2: exact
    P = v / unit
    P = P - 0.5 * (P.min(0) + P.max(0))
    diagonal = float(np.linalg.norm(P.max(0) - P.min(0)))
    eps = rtol * diagonal
    T = P[f]  # (F, 3, 3)
    e = np.stack([T[:, 1] - T[:, 0], T[:, 2] - T[:, 1], T[:, 0] - T[:, 2]], 1)  # (F, 3, 3)
    longest = np.linalg.norm(e, axis=2).max(1)
    twice_area = np.linalg.norm(np.cross(e[:, 0], -e[:, 2]), axis=1)
    degenerate = (f[:, 0] == f[:, 1]) | (f[:, 1] == f[:, 2]) | (f[:, 2] == f[:, 0]) | ~(twice_area > eps * longest)
    good = np.flatnonzero(~degenerate)
    mask = np.zeros(F, bool)
    pairs = np.zeros((0, 2), np.int64)
    n_candidates = 0
    if len(good) > 1:
        Tg = T[good]
        i, j = _candidates(Tg.min(1) - eps, Tg.max(1) + eps)
        n_candidates = len(i)
        i, j = good[i], good[j]
        hits = [np.zeros(0, bool)]
        for s in range(0, len(i), _PAIR_CHUNK):
            hits.append(_pairs_meet(P, f, i[s:s + _PAIR_CHUNK], j[s:s + _PAIR_CHUNK], eps))
        hit = np.concatenate(hits)
        pairs = np.stack([i[hit], j[hit]], 1)
        pairs = pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]
        mask[pairs.ravel()] = True
    return SelfIntersections(mask=mask, pairs=pairs, degenerate=degenerate, tolerance=eps * unit,
                             n_candidates=n_candidates)


def self_intersection_fraction(vertices, faces, *, rtol: float = _RTOL) -> float:
    """The fraction of the ``F`` faces that intersect another face of the same mesh (see
    :func:`self_intersections`, whose arguments these are), in ``[0, 1]``.

    >>> self_intersection_fraction([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]], [[0, 1, 2], [1, 3, 2]])
    0.0
    """
    return self_intersections(vertices, faces, rtol=rtol).fraction
