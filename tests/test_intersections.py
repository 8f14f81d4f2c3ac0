"""geom.deform.intersect: self-intersections of triangle meshes.

The reference here is written independently of the module: exact rational arithmetic
(``fractions.Fraction``), O(F^2) over all pairs, and a set-based definition. Two closed triangles
``T1``, ``T2`` whose common corners (same coordinates) are ``S`` intersect when ``T1 & T2`` is not
contained in ``conv(S)`` (the shared edge, the shared vertex, or nothing). ``T1 & T2`` is convex, so
that holds exactly when one of its extreme points lies outside ``conv(S)``; every extreme point is
an end of ``e & T`` for an edge ``e`` of one triangle and the other triangle ``T``, and each such
``e & T`` is computed exactly as an interval of the edge's parameter (crossing point, or clipping
by the three half-planes for an edge in the plane). Faces of zero area are skipped; the same face
twice counts.
"""

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest

import geom
from geom.deform.intersect import _candidates, pairs_within_groups, self_intersection_fraction, self_intersections

# ----------------------------------------------------------------- the exact reference


def _sub(p, q):
    return (p[0] - q[0], p[1] - q[1], p[2] - q[2])


def _cross(p, q):
    return (p[1] * q[2] - p[2] * q[1], p[2] * q[0] - p[0] * q[2], p[0] * q[1] - p[1] * q[0])


def _dot(p, q):
    return p[0] * q[0] + p[1] * q[1] + p[2] * q[2]


def _at(p, q, t):
    return tuple(p[k] + t * (q[k] - p[k]) for k in range(3))


def _edge_in_triangle(p, q, tri):
    """``{t in [0, 1] : p + t (q - p) in tri}`` as ``(t0, t1)``, or None when empty (exact)."""
    a, b, c = tri
    n = _cross(_sub(b, a), _sub(c, a))
    dp, dq = _dot(n, _sub(p, a)), _dot(n, _sub(q, a))

    def side(u, v, x):  # >= 0 on the triangle's side of its edge uv
        return _dot(_cross(_sub(v, u), _sub(x, u)), n)

    if dp == 0 and dq == 0:  # in the plane: clip [0, 1] by the three half-planes
        t0, t1 = Fraction(0), Fraction(1)
        for u, v in ((a, b), (b, c), (c, a)):
            g0, g1 = side(u, v, p), side(u, v, q)  # g(t) = g0 + t (g1 - g0) >= 0
            if g0 == g1:
                if g0 < 0:
                    return None
                continue
            root = g0 / (g0 - g1)
            if g1 > g0:
                t0 = max(t0, root)
            else:
                t1 = min(t1, root)
        return (t0, t1) if t0 <= t1 else None
    if (dp > 0 and dq > 0) or (dp < 0 and dq < 0):
        return None
    t = dp / (dp - dq)
    x = _at(p, q, t)
    return (t, t) if all(side(u, v, x) >= 0 for u, v in ((a, b), (b, c), (c, a))) else None


def _in_hull(x, shared):
    if not shared:
        return False
    if len(shared) == 1:
        return x == shared[0]
    s0, s1 = shared
    d, r = _sub(s1, s0), _sub(x, s0)
    return _cross(d, r) == (0, 0, 0) and 0 <= _dot(d, r) <= _dot(d, d)


def _reference_pair(t1, t2) -> bool:
    shared = [p for p in t1 if p in t2]
    if len(shared) == 3:
        return True
    for one, other in ((t1, t2), (t2, t1)):
        for k in range(3):
            p, q = one[k], one[(k + 1) % 3]
            hit = _edge_in_triangle(p, q, other)
            if hit is not None and any(not _in_hull(_at(p, q, t), shared) for t in hit):
                return True
    return False


def reference(vertices, faces):
    """Exact ``(mask (F,), set of pairs)`` by brute force over all pairs of non-degenerate faces."""
    tris = [tuple(tuple(Fraction(float(c)) for c in vertices[k]) for k in face) for face in faces]
    good = [_cross(_sub(t[1], t[0]), _sub(t[2], t[0])) != (0, 0, 0) for t in tris]
    lo = [tuple(min(p[k] for p in t) for k in range(3)) for t in tris]
    hi = [tuple(max(p[k] for p in t) for k in range(3)) for t in tris]
    pairs = set()
    for i, j in itertools.combinations(range(len(tris)), 2):
        if not (good[i] and good[j]) or any(lo[i][k] > hi[j][k] or lo[j][k] > hi[i][k] for k in range(3)):
            continue
        if _reference_pair(tris[i], tris[j]):
            pairs.add((i, j))
    mask = np.zeros(len(faces), bool)
    for i, j in pairs:
        mask[i] = mask[j] = True
    return mask, pairs


def as_set(result):
    return {tuple(p) for p in result.pairs.tolist()}


# ----------------------------------------------------------------- meshes


def soup(rng, n_vertices, n_faces, lattice=None):
    """Random triangles on a few shared vertices: integer lattice points (many exact contacts,
    coplanar and collinear cases) or Gaussian points."""
    if lattice:
        v = rng.integers(0, lattice + 1, (n_vertices, 3)).astype(np.float64)
    else:
        v = rng.standard_normal((n_vertices, 3))
    f = np.array([rng.choice(n_vertices, 3, replace=False) for _ in range(n_faces)])
    return v, f


def icosphere(subdivisions=2):
    t = (1 + 5**0.5) / 2
    v = [[-1, t, 0], [1, t, 0], [-1, -t, 0], [1, -t, 0], [0, -1, t], [0, 1, t], [0, -1, -t], [0, 1, -t],
         [t, 0, -1], [t, 0, 1], [-t, 0, -1], [-t, 0, 1]]
    f = [[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4], [11, 10, 2],
         [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8], [3, 8, 9], [4, 9, 5], [2, 4, 11],
         [6, 2, 10], [8, 6, 7], [9, 8, 1]]
    v = [np.array(p, float) / np.linalg.norm(p) for p in v]
    for _ in range(subdivisions):
        mid, out = {}, []

        def m(a, b):
            key = (min(a, b), max(a, b))
            if key not in mid:
                p = v[a] + v[b]
                v.append(p / np.linalg.norm(p))
                mid[key] = len(v) - 1
            return mid[key]

        for a, b, c in f:
            ab, bc, ca = m(a, b), m(b, c), m(c, a)
            out += [[a, ab, ca], [b, bc, ab], [c, ca, bc], [ab, bc, ca]]
        f = out
    return np.array(v), np.array(f)


def rotation(rng):
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def check(v, f):
    """The module against the reference; returns the module's result."""
    result = self_intersections(v, f)
    mask, pairs = reference(v, f)
    assert as_set(result) == pairs
    np.testing.assert_array_equal(result.mask, mask)
    return result


# ----------------------------------------------------------------- agreement with the reference


@pytest.mark.parametrize("seed", range(30))
def test_lattice_soups_match_the_exact_reference(seed):
    rng = np.random.default_rng(seed)
    v, f = soup(rng, int(rng.integers(6, 12)), int(rng.integers(8, 16)), lattice=int(rng.integers(1, 4)))
    check(v, f)


@pytest.mark.parametrize("seed", range(20))
def test_gaussian_soups_match_the_exact_reference(seed):
    rng = np.random.default_rng(1000 + seed)
    v, f = soup(rng, int(rng.integers(6, 14)), int(rng.integers(8, 20)))
    check(v, f)


@pytest.mark.parametrize("seed", range(3))
def test_many_small_lattice_triangles_match_the_exact_reference(seed):
    """Small triangles spread over a larger lattice: the grid has many cells (the soups above fit in
    few); corners at the same lattice points are shared (welded)."""
    rng = np.random.default_rng(3000 + seed)
    corner = rng.integers(0, 7, (160, 1, 3))
    v = (corner + rng.integers(-1, 2, (160, 3, 3))).reshape(-1, 3).astype(np.float64)
    r = check(v, np.arange(480).reshape(-1, 3))
    assert 0 < r.fraction < 1


def test_broad_phase_reports_every_overlapping_pair_once():
    rng = np.random.default_rng(5)
    centre = rng.uniform(0, 10, (400, 3))
    size = rng.lognormal(-1.0, 1.0, (400, 3))
    size[:3] = 8.0  # a few boxes over most of the grid
    lo, hi = centre - size, centre + size * rng.uniform(0, 1, (400, 3))
    i, j = _candidates(lo, hi)
    overlap = (lo[:, None] <= hi[None]).all(2) & (lo[None] <= hi[:, None]).all(2)
    expected = {(a, b) for a, b in zip(*np.nonzero(np.triu(overlap, 1)))}
    assert len(i) == len(expected) and set(zip(i.tolist(), j.tolist())) == expected
    point = np.zeros((30, 3))  # boxes that are one point: every pair overlaps
    i, j = _candidates(point, point)
    assert len(set(zip(i.tolist(), j.tolist()))) == len(i) == 30 * 29 // 2


def test_the_soups_exercise_every_case():
    """The random soups above meet every kind of pair (else the agreement says little)."""
    kinds = {"hit0": 0, "hit1": 0, "hit2": 0, "clean1": 0, "clean2": 0, "coplanar_hit0": 0}
    for seed in range(30):
        rng = np.random.default_rng(seed)
        v, f = soup(rng, int(rng.integers(6, 12)), int(rng.integers(8, 16)), lattice=int(rng.integers(1, 4)))
        _, pairs = reference(v, f)
        for i, j in itertools.combinations(range(len(f)), 2):
            shared = len({tuple(v[k]) for k in f[i]} & {tuple(v[k]) for k in f[j]})
            n = np.cross(v[f[i][1]] - v[f[i][0]], v[f[i][2]] - v[f[i][0]])
            coplanar = np.all(np.abs((v[f[j]] - v[f[i][0]]) @ n) == 0) and n.any()
            hit = (i, j) in pairs
            if hit and shared < 3:
                kinds[f"hit{shared}"] += 1
            if not hit and shared in (1, 2):
                kinds[f"clean{shared}"] += 1
            kinds["coplanar_hit0"] += hit and shared == 0 and coplanar
    assert all(count > 0 for count in kinds.values()), kinds


# ----------------------------------------------------------------- hand cases


def test_two_crossing_triangles():
    v = [[0, 0, 0], [2, 0, 0], [0, 2, 0], [0.5, 0.5, -1], [0.5, 0.5, 1], [3, 3, 0.5]]
    r = check(np.array(v, float), np.array([[0, 1, 2], [3, 4, 5]]))
    assert r.mask.tolist() == [True, True] and r.pairs.tolist() == [[0, 1]]


def test_separate_faces_touching_count_as_contact():
    """Faces that share no vertex and touch (a corner on the other's interior, or two coplanar
    triangles meeting at a boundary point) count: decided and documented as contact."""
    corner_on_face = np.array([[0, 0, 0], [2, 0, 0], [0, 2, 0], [0.5, 0.5, 0], [0.5, 0.5, 1], [1, 2, 1]], float)
    assert check(corner_on_face, np.array([[0, 1, 2], [3, 4, 5]])).fraction == 1.0
    edge_point = np.array([[0, 0, 0], [2, 0, 0], [0, 2, 0], [1, 1, 0], [2, 2, 0], [3, 1, 0]], float)
    assert check(edge_point, np.array([[0, 1, 2], [3, 4, 5]])).fraction == 1.0  # coplanar, a corner on an edge
    edge_part = np.array([[0, 0, 0], [2, 0, 0], [0, 2, 0], [1, 0, 0], [3, 0, 0], [2, -1, 0]], float)
    assert check(edge_part, np.array([[0, 1, 2], [3, 4, 5]])).fraction == 1.0  # coplanar, along a piece of edge
    welded = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 0, 0], [2, 0, 0], [2, 1, 0]], float)
    assert check(welded, np.array([[0, 1, 2], [3, 4, 5]])).fraction == 0.0  # a corner at the same coordinates: shared


def test_faces_sharing_a_vertex_only_touch():
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [-1, 0, 0.3], [0, -1, 0.7]], float)
    assert check(v, np.array([[0, 1, 2], [0, 3, 4]])).fraction == 0.0


def test_faces_sharing_a_vertex_and_crossing_count():
    """A face folded through another around their common vertex: the opposite edge pierces it."""
    v = np.array([[0, 0, 0], [2, 0, 0], [0, 2, 0], [1, 0.2, -1], [0.2, 1, 1]], float)
    r = check(v, np.array([[0, 1, 2], [0, 3, 4]]))
    assert r.pairs.tolist() == [[0, 1]]
    flat_inside = np.array([[0, 0, 0], [2, 0, 0], [0, 2, 0], [0.5, 0.2, 0], [0.2, 0.5, 0]], float)
    assert check(flat_inside, np.array([[0, 1, 2], [0, 3, 4]])).fraction == 1.0  # coplanar, nested at the vertex
    flat_fan = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [-1, 0, 0], [0, -1, 0]], float)
    assert check(flat_fan, np.array([[0, 1, 2], [0, 3, 4]])).fraction == 0.0  # coplanar, apart


@pytest.mark.parametrize("d, expected", [([0.5, -1, 0], 0.0),  # flat fold: the other side of the edge
                                         ([0.5, -1, 0.8], 0.0),  # a dihedral
                                         ([0.5, 0.2, 0.8], 0.0),  # a sharp dihedral
                                         ([0.3, 0.5, 0], 1.0),  # folded flat onto its neighbour
                                         ([2, 3, 0], 1.0)])  # folded flat, larger than its neighbour
def test_faces_sharing_an_edge(d, expected):
    v = np.array([[0, 0, 0], [1, 0, 0], [0.5, 1, 0], d], float)
    assert check(v, np.array([[0, 1, 2], [1, 0, 3]])).fraction == expected


def test_coplanar_triangles():
    v = np.array([[0, 0, 0], [2, 0, 0], [0, 2, 0], [1, 1, 0], [-1, 1, 0], [1, -1, 0],
                  [3, 3, 0], [4, 3, 0], [3, 4, 0]], float)
    assert check(v, np.array([[0, 1, 2], [3, 4, 5]])).fraction == 1.0  # overlapping, no shared vertex
    assert check(v, np.array([[0, 1, 2], [6, 7, 8]])).fraction == 0.0  # disjoint
    collinear = np.array([[0, 0, 0], [1, 0, 0], [0, 3, 0], [2, 0, 0], [3, 0, 0], [-1, -1, 0]], float)
    r = check(collinear, np.array([[0, 1, 2], [3, 4, 5]]))  # edges on one line, apart; the boxes overlap
    assert r.fraction == 0.0 and r.n_candidates == 1
    inside = np.array([[0, 0, 0], [4, 0, 0], [0, 4, 0], [1, 1, 0], [2, 1, 0], [1, 2, 0]], float)
    assert check(inside, np.array([[0, 1, 2], [3, 4, 5]])).fraction == 1.0  # nested, no edge crossing


def test_duplicate_and_degenerate_faces():
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [2, 0, 0], [0.5, 0.5, -1], [0.5, 0.5, 1]], float)
    r = self_intersections(v, np.array([[0, 1, 2], [2, 0, 1]]))  # the same face twice
    assert r.pairs.tolist() == [[0, 1]]
    # zero area: collinear corners (crossing face 0) and a repeated index; skipped, no error
    r = self_intersections(v, np.array([[0, 1, 2], [4, 5, 5], [0, 1, 3]]))
    assert r.degenerate.tolist() == [False, True, True] and r.fraction == 0.0
    r = self_intersections([[0, 0, 0], [1, 1, 1], [2, 2, 2]], [[0, 1, 2]])
    assert r.degenerate.tolist() == [True] and r.pairs.shape == (0, 2)


def test_closed_icosphere_is_clean_and_a_pushed_vertex_is_not():
    v, f = icosphere(3)
    r = self_intersections(v, f)
    assert r.fraction == 0.0 and r.n_candidates > len(f)
    pushed = v.copy()
    pushed[0] = -1.5 * v[0]  # through the opposite side
    r = self_intersections(pushed, f)
    fan = np.flatnonzero((f == 0).any(1))
    far = np.flatnonzero((v[f].mean(1) @ v[0]) < -0.9)  # faces around the antipode
    assert r.fraction > 0 and r.mask[fan].all() and r.mask[far].any()
    assert ((f[r.pairs[:, 0]] == 0).any(1) | (f[r.pairs[:, 1]] == 0).any(1)).all()  # every pair has a moved face
    sub = np.unique(np.concatenate([fan, far]))  # a subset small enough for the exact reference
    _, pairs = reference(pushed, f[sub])
    assert {(int(sub[i]), int(sub[j])) for i, j in pairs} == {p for p in as_set(r) if set(p) <= set(sub)}


@pytest.mark.parametrize("seed", range(2))
def test_crumpled_sphere_matches_the_exact_reference_on_every_candidate(seed):
    """A closed mesh with noise of about an edge length: fans, folds through neighbours, crossings.
    Every pair whose boxes overlap is decided exactly (the broad phase is tested on its own below)."""
    v, f = icosphere(2)
    v = v + np.random.default_rng(seed).normal(0, 0.15, v.shape)
    r = self_intersections(v, f)
    T = v[f]
    lo, hi = T.min(1), T.max(1)
    tris = [tuple(tuple(Fraction(float(c)) for c in v[k]) for k in face) for face in f]
    overlap = np.triu((lo[:, None] <= hi[None]).all(2) & (lo[None] <= hi[:, None]).all(2), 1)
    expected = {(int(i), int(j)) for i, j in zip(*np.nonzero(overlap)) if _reference_pair(tris[i], tris[j])}
    assert as_set(r) == expected and len(expected) > 0


def test_a_soup_is_welded():
    """The same mesh with every corner repeated (as in an STL file): adjacency by coordinates."""
    v, f = icosphere(2)
    assert self_intersections(v[f].reshape(-1, 3), np.arange(3 * len(f)).reshape(-1, 3)).fraction == 0.0


def test_real_mesh(meshes_dir):
    v, f = geom.io.read_mesh(meshes_dir / "bunny_small.off")
    r = self_intersections(v, f)
    assert r.fraction == 0.0 and r.degenerate.sum() == 0
    assert r.tolerance == pytest.approx(1e-9 * np.linalg.norm(v.max(0) - v.min(0)), rel=1e-6)
    # two copies, the second moved by a tenth of the size: only pairs across the copies
    shift = 0.1 * (v.max(0) - v.min(0))
    both = self_intersections(np.concatenate([v, v + shift]), np.concatenate([f, f + len(v)]))
    assert 0 < both.fraction < 1
    assert ((both.pairs[:, 0] < len(f)) & (both.pairs[:, 1] >= len(f))).all()
    rng = np.random.default_rng(0)
    vv = np.concatenate([v, v + shift])
    ff = np.concatenate([f, f + len(v)])
    for i, j in both.pairs[rng.choice(len(both.pairs), 40, replace=False)]:  # each checked exactly
        assert _reference_pair(*[tuple(tuple(Fraction(float(c)) for c in vv[k]) for k in ff[m]) for m in (i, j)])
    # a vertex pushed through the surface
    pushed = v.astype(np.float64)
    k = int(np.argmax(pushed[:, 0]))
    pushed[k, 0] -= 1.5 * (v[:, 0].max() - v[:, 0].min())
    assert self_intersections(pushed, f).fraction > 0


# ----------------------------------------------------------------- invariances


@pytest.mark.parametrize("seed", range(10))
def test_invariant_under_rigid_motion_scaling_and_permutations(seed):
    rng = np.random.default_rng(2000 + seed)
    v, f = soup(rng, 10, 16, lattice=2)  # exact contacts: a rotation turns them into rounding-sized ones
    expected = check(v, f)
    # moved up to 100 sizes away (farther, the coordinates' own rounding exceeds the tolerance: documented)
    moved = (v @ rotation(rng).T + rng.uniform(-100, 100, 3)) * 10.0 ** rng.uniform(-6, 6)
    r = self_intersections(moved, f)
    np.testing.assert_array_equal(r.mask, expected.mask)
    assert as_set(r) == as_set(expected)
    perm = rng.permutation(len(f))  # faces reordered, and each face's corners rotated or reversed
    corners = [[0, 1, 2], [1, 2, 0], [2, 1, 0], [0, 2, 1]]
    g = np.stack([f[p][corners[rng.integers(4)]] for p in perm])
    r = self_intersections(moved, g)
    np.testing.assert_array_equal(r.mask, expected.mask[perm])
    assert {tuple(sorted((int(perm[i]), int(perm[j])))) for i, j in r.pairs} == as_set(expected)


def test_icosphere_clean_under_rotation():
    v, f = icosphere(3)
    rng = np.random.default_rng(7)
    for _ in range(3):
        assert self_intersection_fraction(v @ rotation(rng).T * 1e3 + 5e3, f) == 0.0


# ----------------------------------------------------------------- pieces, input and memory


def test_pairs_within_groups():
    sizes = np.array([4, 1, 0, 3])
    p, q = pairs_within_groups(sizes)
    group = np.repeat(np.arange(4), sizes)
    expected = {(a, b) for a in range(8) for b in range(a + 1, 8) if group[a] == group[b]}
    assert set(zip(p.tolist(), q.tolist())) == expected and len(p) == len(expected)


def test_torch_and_list_input():
    torch = pytest.importorskip("torch")
    v, f = icosphere(1)
    r = self_intersections(torch.tensor(v, dtype=torch.float32), torch.tensor(f))
    assert r.fraction == 0.0 and self_intersections(v.tolist(), f.tolist()).fraction == 0.0


@pytest.mark.parametrize("vertices, faces, error, words", [
    ([[0, 0], [1, 0], [0, 1]], [[0, 1, 2]], ValueError, ["vertices", "(V, 3)"]),
    ([[0, 0, 0], [1, 0, math.nan], [0, 1, 0]], [[0, 1, 2]], ValueError, ["vertices", "finite", "row 1"]),
    ([[True, False, True]] * 3, [[0, 1, 2]], TypeError, ["vertices", "real"]),
    ([["a", "b", "c"]] * 3, [[0, 1, 2]], TypeError, ["vertices", "real"]),
    ([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, 2.0]], TypeError, ["faces", "integer"]),
    ([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, 3]], ValueError, ["faces", "[0, 3)", "[0, 3]"]),
    ([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, -1, 2]], ValueError, ["faces", "[-1, 2]"]),
    ([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1]], ValueError, ["faces", "(F, 3)"]),
    ([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.zeros((0, 3), int), ValueError, ["faces", "F >= 1"]),
])
def test_errors_name_the_argument(vertices, faces, error, words):
    with pytest.raises(error) as info:
        self_intersections(vertices, faces)
    assert all(w in str(info.value) for w in words), str(info.value)


@pytest.mark.parametrize("rtol, error", [(0.0, ValueError), (0.1, ValueError), ("1e-9", TypeError)])
def test_rtol_is_checked(rtol, error):
    with pytest.raises(error, match="rtol"):
        self_intersections([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, 2]], rtol=rtol)


def test_memory_is_checked_before_the_pairs(monkeypatch):
    v, f = icosphere(2)
    monkeypatch.setattr(geom._checks, "available_memory", lambda: 1000)
    with pytest.raises(ValueError, match="faces: this needs about .* broad-phase"):
        self_intersections(v, f)
