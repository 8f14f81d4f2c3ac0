"""geom.deform.metrics: closed forms, an exact assignment by enumeration, invariance, errors."""

import itertools
import math

import numpy as np
import pytest

import geom
from geom.deform.metrics import (chamfer, exact_w2, hausdorff, mesh_metrics, normal_agreement, normal_smoothness,
                                 sliced_w2, surface_samples)
from test_intersections import icosphere, rotation


@pytest.fixture(scope="module")
def sphere():
    return icosphere(4)  # 5120 faces, vertices on the unit sphere


def inradius(v, f):
    """The smallest distance from the origin to a face's plane: every surface point is at least that far."""
    n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    return float(np.min(np.abs((n * v[f[:, 0]]).sum(1)) / np.linalg.norm(n, axis=1)))


# ----------------------------------------------------------------- closed forms


@pytest.mark.parametrize("r1, r2", [(1.0, 2.0), (0.5, 1.5), (2.0, 3.0)])
def test_concentric_spheres(sphere, r1, r2):
    """Concentric spheres: Chamfer ``2 (r2 - r1)^2`` and Hausdorff ``r2 - r1``, within what the
    polyhedra and the samples allow. Lower bounds: every point of the inner mesh is at radius <= r1 and
    of the outer one >= rho r2 (rho the inradius). Upper bounds: the same draws on both meshes, so
    each sample has its radial counterpart on the other mesh, ``(r2 - r1) |x|`` away."""
    v, f = sphere
    rho = inradius(v, f)
    unit, _ = surface_samples((v, f), 4096, seed=3)
    radius = np.linalg.norm(unit, axis=1)
    low = r2 * rho - r1
    a, b = (r1 * v, f), (r2 * v, f)
    c = chamfer(a, b, seed=3)
    assert 2 * low**2 <= c <= 2 * (r2 - r1) ** 2 * np.mean(radius**2) * (1 + 1e-12)
    assert c == pytest.approx(2 * (r2 - r1) ** 2, rel=5e-3)
    h = hausdorff(a, b, seed=3)
    assert low <= h <= (r2 - r1) * radius.max() * (1 + 1e-12)
    assert normal_agreement(a, b, seed=3) > math.cos(0.1)  # nearly radial normals at nearest points


def test_a_mesh_against_itself(sphere):
    v, f = sphere
    m = (v * [1.0, 2.0, 0.5], f)
    assert chamfer(m, m) == 0.0 and hausdorff(m, m) == 0.0 and exact_w2(m, m, n_samples=256) == 0.0
    assert sliced_w2(m, m) == pytest.approx(0.0, abs=1e-12)
    assert normal_agreement(m, m) == pytest.approx(1.0, abs=1e-12)


def test_a_translated_copy():
    v, f = icosphere(2)
    t = np.array([0.3, -0.4, 1.2])
    assert exact_w2((v, f), (v + t, f), n_samples=128) == pytest.approx(np.linalg.norm(t), rel=1e-12)


def flat_grid(n, rng):
    x, y = np.meshgrid(np.linspace(0, 1, n + 1), np.linspace(0, 2, n + 1), indexing="ij")
    v = np.stack([x.ravel(), y.ravel(), np.zeros(x.size)], 1)
    i = lambda a, b: a * (n + 1) + b
    a, b = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    f = np.concatenate([np.stack([i(a, b), i(a + 1, b), i(a + 1, b + 1)], -1).reshape(-1, 3),
                        np.stack([i(a, b), i(a + 1, b + 1), i(a, b + 1)], -1).reshape(-1, 3)])
    flip = rng.random(len(f)) < 0.5  # the winding does not matter
    f[flip] = f[flip][:, ::-1]
    return v, f


def test_normal_agreement_ignores_the_winding():
    v, f = flat_grid(4, np.random.default_rng(0))  # windings mixed: normals up and down
    assert normal_agreement((v, f), (v + [0.1, 0.2, 0.3], f[:, ::-1])) == pytest.approx(1.0, abs=1e-12)
    tilted = v * [1, 1, 0] + [0, 0, 1] * v[:, :1]  # at 45 degrees
    assert normal_agreement((v, f), (tilted, f)) == pytest.approx(math.sqrt(0.5), abs=1e-12)


def test_flat_grid_is_smooth():
    v, f = flat_grid(6, np.random.default_rng(0))
    assert normal_smoothness(v, f) == pytest.approx(0.0, abs=1e-12)
    tilted = v @ rotation(np.random.default_rng(1)).T
    assert normal_smoothness(tilted, f) == pytest.approx(0.0, abs=1e-12)


CUBE_V = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], float)
CUBE_F = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                   [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])


def test_cube_and_tetrahedron_smoothness():
    """Cube: 12 edges at right dihedral angles (1 - cos 90 deg = 1) and 6 diagonals in flat squares
    (0): 12 / 18. Regular tetrahedron: outward normals at cos = -1/3 on its 6 edges: 4 / 3."""
    assert normal_smoothness(CUBE_V, CUBE_F) == pytest.approx(2 / 3, rel=1e-12)
    tet = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], float)
    assert normal_smoothness(tet, [[0, 1, 2], [0, 3, 1], [0, 2, 3], [1, 3, 2]]) == pytest.approx(4 / 3, rel=1e-12)


@pytest.mark.parametrize("alpha", [0.0, math.pi / 3, math.pi / 2, 2.5])
def test_hinge_smoothness(alpha):
    """Two faces on an edge with normals at angle ``alpha``: ``1 - cos(alpha)``, whatever the winding."""
    v = np.array([[0, 0, 0], [1, 0, 0], [0.5, 1, 0], [0.5, -math.cos(alpha), math.sin(alpha)]])
    for faces in ([[0, 1, 2], [1, 0, 3]], [[0, 1, 2], [0, 1, 3]]):
        assert normal_smoothness(v, faces) == pytest.approx(1 - math.cos(alpha), abs=1e-12)


def loop_smoothness(v, f):
    """PyTorch3D's definition written with loops: every pair of faces on an edge (by vertex indices)."""
    around = {}
    for face in f:
        for k in range(3):
            u, w, p = face[k], face[(k + 1) % 3], face[(k + 2) % 3]
            around.setdefault((min(u, w), max(u, w)), []).append(p)
    terms = []
    for (u, w), opposite in around.items():
        for p, q in itertools.combinations(opposite, 2):
            n0 = np.cross(v[w] - v[u], v[p] - v[u])
            n1 = -np.cross(v[w] - v[u], v[q] - v[u])
            d = np.linalg.norm(n0) * np.linalg.norm(n1)
            terms.append(1 - (n0 @ n1 / d if d > 0 else 0.0))
    return float(np.mean(terms)) if terms else 0.0


@pytest.mark.parametrize("seed", range(5))
def test_smoothness_matches_a_loop_over_edges(seed):
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((8, 3))
    f = np.array([rng.choice(8, 3, replace=False) for _ in range(30)])  # edges of 3 and more faces too
    f[0] = [0, 0, 1]  # a zero-area face
    assert normal_smoothness(v, f) == pytest.approx(loop_smoothness(v, f), rel=1e-12)


def test_no_edge_pairs():
    assert normal_smoothness([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, 2]]) == 0.0


# ----------------------------------------------------------------- W2


@pytest.mark.parametrize("seed", range(4))
def test_exact_w2_by_enumeration(seed):
    """``n <= 6`` samples: the optimal assignment over all ``n!`` permutations."""
    rng = np.random.default_rng(seed)
    a = (rng.standard_normal((5, 3)), [[0, 1, 2], [1, 3, 4], [0, 2, 4]])
    b = (rng.standard_normal((4, 3)) + 0.5, [[0, 1, 2], [0, 2, 3]])
    n = 5 + seed % 2
    x, _ = surface_samples(a, n, seed=seed)
    y, _ = surface_samples(b, n, seed=seed)
    cost = ((x[:, None] - y[None]) ** 2).sum(-1)
    best = min(cost[np.arange(n), list(p)].mean() for p in itertools.permutations(range(n)))
    assert exact_w2(a, b, n_samples=n, seed=seed) == pytest.approx(math.sqrt(best), rel=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_sliced_below_exact(seed):
    """Each slice's ``W_2`` is at most ``W_2`` (project the optimal coupling), so is their mean."""
    rng = np.random.default_rng(seed)
    v, f = icosphere(2)
    b = (v @ np.diag(rng.uniform(0.5, 2, 3)) + rng.normal(0, 0.3, 3), f)
    assert sliced_w2((v, f), b, n_samples=300, seed=seed) <= exact_w2((v, f), b, n_samples=300, seed=seed) * (1 + 1e-12)


# ----------------------------------------------------------------- mesh_metrics


VALUES = ["chamfer", "hausdorff", "normal_agreement", "sliced_w2", "exact_w2", "normal_smoothness",
          "self_intersection_fraction"]
POWER = {"chamfer": 2, "hausdorff": 1, "sliced_w2": 1, "exact_w2": 1}  # powers of length; the rest have none
FAST = dict(n_samples=1024, exact_samples=200, n_projections=128)


@pytest.fixture(scope="module")
def pair():
    """A deformed sphere (bumps, one vertex pushed through) and an ellipsoid target."""
    v, f = icosphere(3)
    bumps = v * (1 + 0.1 * np.sin(5 * v[:, :1]) * np.cos(3 * v[:, 1:2]))
    bumps[0] *= -1.5  # through the opposite side
    return (bumps, f), (v * [2.0, 1.0, 0.7] + [3.0, -1.0, 0.5], f)


def test_mesh_metrics_records_the_normalization(pair):
    mesh, target = pair
    r = mesh_metrics(mesh, target, **FAST)
    lo, hi = target[0].min(0), target[0].max(0)
    assert r["scale"] == pytest.approx(1 / np.linalg.norm(hi - lo)) and r["offset"] == pytest.approx(0.5 * (lo + hi))
    assert r["normalization"] == "target bounding-box diagonal -> 1, centre -> origin"
    assert {k: r[k] for k in ("n_samples", "seed", "n_projections", "exact_samples")} == {"seed": 0, **FAST}
    assert r["chamfer"] == pytest.approx(chamfer(mesh, target, n_samples=1024) * r["scale"] ** 2, rel=1e-9)
    assert r["hausdorff"] == pytest.approx(hausdorff(mesh, target, n_samples=1024) * r["scale"], rel=1e-9)
    assert r["self_intersection_fraction"] > 0 and 0 < r["normal_agreement"] < 1
    assert r["normal_smoothness"] == pytest.approx(normal_smoothness(*mesh), rel=1e-9)
    assert all(math.isfinite(r[k]) and r[k] >= 0 for k in VALUES)
    lopsided = target[0].copy()
    lopsided[0] = [9.0, 0.0, 0.0]  # the box's centre is far from the vertices' mean
    r = mesh_metrics(mesh, (lopsided, target[1]), **FAST)
    lo, hi = lopsided.min(0), lopsided.max(0)
    assert r["offset"] == pytest.approx(0.5 * (lo + hi), rel=1e-12) and r["scale"] == pytest.approx(1 / np.linalg.norm(hi - lo))


@pytest.mark.parametrize("seed", range(3))
def test_mesh_metrics_under_a_common_rigid_motion(pair, seed):
    """A translation changes nothing; a rotation only the scale (the box turns), and the sliced
    estimate within its error (other projections under the same seeded directions)."""
    rng = np.random.default_rng(seed)
    (v, f), (vt, ft) = pair
    base = mesh_metrics((v, f), (vt, ft), seed=seed, **FAST)
    t = rng.uniform(-50, 50, 3)
    moved = mesh_metrics((v + t, f), (vt + t, ft), seed=seed, **FAST)
    for k in VALUES:
        assert moved[k] == pytest.approx(base[k], rel=1e-8, abs=1e-12), k
    R = rotation(rng)
    turned = mesh_metrics((v @ R.T + t, f), (vt @ R.T + t, ft), seed=seed, **FAST)
    ratio = turned["scale"] / base["scale"]
    assert ratio != pytest.approx(1.0, abs=1e-6)  # the box did change
    for k in VALUES:
        if k != "sliced_w2":
            assert turned[k] / ratio ** POWER.get(k, 0) == pytest.approx(base[k], rel=1e-8, abs=1e-12), k
    spread = math.hypot(turned["sliced_w2_stderr"] / ratio, base["sliced_w2_stderr"])
    assert abs(turned["sliced_w2"] / ratio - base["sliced_w2"]) <= 4 * spread
    quarter = np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])  # keeps the box's diagonal: the scale
    same = mesh_metrics((v @ quarter.T, f), (vt @ quarter.T, ft), seed=seed, **FAST)
    assert same["scale"] == pytest.approx(base["scale"], rel=1e-12)
    for k in VALUES:
        if k != "sliced_w2":
            assert same[k] == pytest.approx(base[k], rel=1e-8, abs=1e-12), k


def test_mesh_metrics_real_mesh(meshes_dir):
    bunny = geom.io.read_mesh(meshes_dir / "bunny_small.off")
    r = mesh_metrics(bunny, str(meshes_dir / "bunny_small.off"), **FAST)
    assert r["chamfer"] == 0.0 and r["hausdorff"] == 0.0 and r["exact_w2"] == 0.0
    assert r["normal_agreement"] == pytest.approx(1.0) and r["self_intersection_fraction"] == 0.0


# ----------------------------------------------------------------- errors


TRI = ([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, 2]])


@pytest.mark.parametrize("call, error, words", [
    (lambda: chamfer(object(), TRI), TypeError, ["a:", "(vertices, faces)"]),
    (lambda: hausdorff(TRI, ([[0, 0, 0]], [[0, 0, 1]])), ValueError, ["b:", "faces", "[0, 1)"]),
    (lambda: mesh_metrics(([[0, 0, math.inf]] * 3, [[0, 1, 2]]), TRI), ValueError, ["mesh:", "vertices", "finite"]),
    (lambda: mesh_metrics(TRI, ([[1, 1, 1]] * 3, [[0, 1, 2]])), ValueError, ["target:", "positive size"]),
    (lambda: mesh_metrics(TRI, TRI, n_samples=0), ValueError, ["n_samples"]),
    (lambda: mesh_metrics(TRI, TRI, exact_samples="8"), TypeError, ["exact_samples"]),
    (lambda: sliced_w2(TRI, TRI, seed=-1), ValueError, ["seed"]),
    (lambda: normal_smoothness([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, 2.5]]), TypeError, ["faces", "integer"]),
    (lambda: surface_samples("no/such/file.off", 8), FileNotFoundError, ["mesh:", "file.off"]),
])
def test_errors_name_the_argument(call, error, words):
    with pytest.raises(error) as info:
        call()
    assert all(w in str(info.value) for w in words), str(info.value)


def test_exact_w2_checks_memory(monkeypatch):
    monkeypatch.setattr(geom._checks, "available_memory", lambda: 10_000)
    with pytest.raises(ValueError, match="n_samples: this needs about .* cost matrix"):
        exact_w2(TRI, TRI, n_samples=1000)
