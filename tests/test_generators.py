"""Generated datasets: determinism by (seed, index), shapes on their surfaces, bent pairs that
correspond, vMF mean resultant length, SPD and Gaussian-mixture moments, DataLoader, errors."""

import math

import numpy as np
import pytest
import torch
from scipy.special import ive

import geom
from geom_datasets import generators as G
from geom_datasets import shapes

SMALL = {
    G.Shapes: dict(n_per_class=2, n_points=64),
    G.SphereMixtures: dict(n_items=4, n_points=64),
    G.SPDEnsembles: dict(n_per_class=2),
    G.GaussianMixtures: dict(n_per_class=2, n_points=64),
}


def as_array(item):
    return item.support.numpy() if isinstance(item, geom.Measure) else np.asarray(item)


@pytest.mark.parametrize("cls", list(SMALL), ids=lambda c: c.name)
def test_items_are_deterministic_by_seed_and_index_and_differ_across_seeds(cls):
    a, b, c = cls(seed=3, **SMALL[cls]), cls(seed=3, **SMALL[cls]), cls(seed=4, **SMALL[cls])
    n = len(a)
    assert list(reversed([b[i][1] for i in reversed(range(n))])) == [a[i][1] for i in range(n)]
    last = b[n - 1]  # random access first, in another order: same item
    for i in range(n):
        np.testing.assert_array_equal(as_array(a[i][0]), as_array(b[i][0]))
    np.testing.assert_array_equal(as_array(a[-1][0]), as_array(last[0]))
    assert all(np.abs(as_array(a[i][0]) - as_array(c[i][0])).max() > 1e-3 for i in range(n))
    assert len({as_array(a[i][0]).tobytes() for i in range(n)}) == n  # items differ from each other
    with pytest.raises(IndexError, match="index"):
        a[n]
    with pytest.raises(IndexError, match="index"):
        a[-n - 1]


@pytest.mark.parametrize("cls", list(SMALL), ids=lambda c: c.name)
def test_dataloader_batches_items_and_labels(cls):
    data = cls(**SMALL[cls])
    x, y = next(iter(torch.utils.data.DataLoader(data, batch_size=len(data))))
    assert x.shape == (len(data), *data[0][0].shape) and y.tolist() == [data[i][1] for i in range(len(data))]
    assert sorted(set(y.tolist())) == list(range(len(data.classes)))


# ----------------------------------------------------------------- shapes


def knot_distance(x, params):
    from scipy.spatial import cKDTree

    t = np.linspace(0, 2 * np.pi, 200_000, endpoint=False)
    curve = shapes.torus_knot_curve(t, params["p"], params["q"], params["R"], params["r"])
    return cKDTree(curve).query(x)[0]


def surface_residual(name, x, p):
    """Relative distance of canonical-pose points x (N, 3) to the analytic surface of class name."""
    if name == "sphere":
        return np.linalg.norm(x, axis=1) / p["radius"] - 1
    if name == "ellipsoid":
        return np.sqrt(((x / np.array(p["axes"])) ** 2).sum(1)) - 1
    if name == "torus":
        return np.sqrt((np.hypot(x[:, 0], x[:, 1]) - p["R"]) ** 2 + x[:, 2] ** 2) / p["r"] - 1
    if name == "cube":
        return np.abs(x / (np.array(p["edges"]) / 2)).max(1) - 1
    if name == "capsule":
        h = p["length"] / 2
        z = np.clip(x[:, 2], -h, h)
        return np.linalg.norm(x - np.stack([0 * z, 0 * z, z], 1), axis=1) / p["radius"] - 1
    return knot_distance(x, p) / p["tube"] - 1


# polygonal surfaces lie inside the smooth ones by at most the sagitta of their edges (relative to the
# tube radius for the torus, whose grid is coarse around the major circle when r / R is small)
# (convex shapes: only inside; on the saddle part of a torus a flat face also bulges out a little)
TOLERANCE = {"sphere": 0.01, "ellipsoid": 0.015, "torus": 0.03, "cube": 1e-5, "capsule": 0.025, "torus-knot": 0.07}
OUTSIDE = {"sphere": 1e-5, "ellipsoid": 1e-5, "torus": 0.01, "cube": 1e-5, "capsule": 1e-5, "torus-knot": 0.03}


def test_shapes_lie_on_their_analytic_surfaces_in_a_random_pose():
    data = G.Shapes(n_per_class=2, n_points=300, seed=1)
    rotations = []
    for i in range(len(data)):
        points, label = data[i]
        info = data.instance(i)
        name = data.classes[label]
        assert info["label"] == label and label == i // 2
        R = info["rotation"]
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(R) > 0
        rotations.append(R)
        canonical = points.numpy().astype(np.float64) @ R  # points = canonical @ R.T
        res = surface_residual(name, canonical, info["params"])
        assert res.max() < OUTSIDE[name] and res.min() > -TOLERANCE[name], (name, res.min(), res.max())
        assert np.linalg.norm(points.numpy(), axis=1).max() < 1.3
    p = data.instance(0)["params"]
    assert 0.6 <= p["radius"] <= 1.0
    assert min(np.abs(a - b).max() for a, b in zip(rotations, rotations[1:])) > 1e-2  # rotations vary


def test_shape_parameters_stay_in_their_documented_ranges():
    data = G.Shapes(n_per_class=8, n_points=8, seed=2)
    p = [data.instance(i)["params"] for i in range(len(data))]
    by = {name: p[k * 8:(k + 1) * 8] for k, name in enumerate(data.classes)}
    assert all(0.4 <= a <= 1.0 for q in by["ellipsoid"] for a in q["axes"])
    assert all(0.6 <= q["R"] <= 0.9 and 0.2 <= q["r"] / q["R"] <= 0.45 for q in by["torus"])
    assert all(0.8 <= e <= 1.4 for q in by["cube"] for e in q["edges"])
    assert all(0.25 <= q["radius"] <= 0.45 and 0.5 <= q["length"] <= 1.2 for q in by["capsule"])
    assert all(0.08 <= q["tube"] / q["R"] <= 0.12 for q in by["torus-knot"])
    radii = [q["radius"] for q in by["sphere"]]
    assert max(radii) - min(radii) > 0.05  # random, not fixed


def test_noise_and_partial_scans():
    clean = G.Shapes(n_per_class=1, n_points=2000, seed=0)
    noisy = G.Shapes(n_per_class=1, n_points=2000, seed=0, noise=0.02)
    x0, x1 = clean[0][0].numpy(), noisy[0][0].numpy()  # the sphere: same draws plus N(0, 0.02^2 I)
    d = (x1 - x0).ravel()
    assert abs(d.std() - 0.02) < 5 * 0.02 / math.sqrt(2 * len(d)) and abs(d.mean()) < 5 * 0.02 / math.sqrt(len(d))
    partial = G.Shapes(n_per_class=1, n_points=500, seed=0, partial=True)
    for i in range(len(partial)):
        info = partial.instance(i)
        v, f = info["mesh"]
        assert len(f) < 0.75 * len(clean.instance(i)["mesh"][1])  # a scan sees about half
        x = partial[i][0].numpy().astype(np.float64) @ info["rotation"]
        name = partial.classes[i]
        res = surface_residual(name, x, info["params"])
        assert res.max() < OUTSIDE[name] and res.min() > -TOLERANCE[name], (name, res.min(), res.max())
    # the scanned sphere is a cap: its points lie on one side of a plane through the centre
    x = partial[0][0].numpy()
    axis = x.mean(0) / np.linalg.norm(x.mean(0))
    assert (x @ axis > -0.05).all()


def barycentric_in(points, v, f):
    """Face and barycentric coordinates of each point on a mesh (brute force over faces)."""
    tri = v[f]  # (F, 3, 3)
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    gram = np.stack([np.stack([(e1 * e1).sum(1), (e1 * e2).sum(1)], -1),
                     np.stack([(e1 * e2).sum(1), (e2 * e2).sum(1)], -1)], -2)  # (F, 2, 2)
    rel = points[:, None] - tri[None, :, 0]  # (N, F, 3)
    rhs = np.stack([(rel * e1).sum(-1), (rel * e2).sum(-1)], -1)  # (N, F, 2)
    uv = np.linalg.solve(gram[None], rhs[..., None])[..., 0]  # (N, F, 2)
    proj = tri[None, :, 0] + uv[..., :1] * e1 + uv[..., 1:] * e2
    err = np.linalg.norm(proj - points[:, None], axis=-1) + 10 * np.clip(-np.concatenate(
        [uv, 1 - uv.sum(-1, keepdims=True)], -1), 0, None).sum(-1)  # (N, F)
    face = err.argmin(1)
    u, w = uv[np.arange(len(points)), face].T
    return face, np.stack([1 - u - w, u, w], 1), err.min(1)


def test_bent_pairs_correspond_row_by_row():
    data = G.Shapes(n_per_class=1, n_points=100, seed=0, bend=0.5)
    for i in (0, 4):  # sphere, capsule
        (source, bent), label = data[i]
        info = data.instance(i)
        (v, f), (bv, bf) = info["mesh"], info["bent"]
        np.testing.assert_array_equal(bf, f)
        assert np.abs(bv - v).max() > 0.05  # really bent
        face, bary, err = barycentric_in(source.numpy().astype(np.float64), v.astype(np.float64), f)
        assert err.max() < 1e-5
        image = np.einsum("nk,nkd->nd", bary, bv.astype(np.float64)[f[face]])
        np.testing.assert_allclose(bent.numpy(), image, atol=1e-5)
    # face k corresponds to face k for the face-based kinds
    (mu, nu), _ = G.Shapes(n_per_class=1, seed=0, bend=0.5, kind="mesh-discrete")[0]
    _, bf = data.instance(0)["bent"]
    bv = data.instance(0)["bent"][0]
    np.testing.assert_allclose(nu.support[0].numpy(), bv[bf].mean(1), atol=1e-6)
    assert mu.support.shape == nu.support.shape


@pytest.mark.parametrize("kind, dim", [("mesh", 3), ("mesh-discrete", 3), ("varifold", 6)])
def test_mesh_kinds_give_measures(kind, dim):
    mu, label = G.Shapes(n_per_class=1, n_points=50, kind=kind)[2]
    assert isinstance(mu, geom.Measure) and mu.kind == kind and mu.support.shape[-1] == dim and label == 2
    assert torch.allclose(mu.weights.sum(-1), torch.ones(1))


# ----------------------------------------------------------------- von Mises-Fisher mixtures


@pytest.mark.parametrize("d, kappa", [(3, 5.0), (5, 20.0), (10, 2.0)])
def test_vmf_samples_have_the_mean_resultant_length_a_d(d, kappa):
    data = G.SphereMixtures(d=d, n_classes=1, n_components=1, kappa=kappa, n_points=3000, n_items=1, seed=d)
    x = data[0][0].numpy().astype(np.float64)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1, atol=1e-6)
    c = x @ data.means[0, 0]  # (N,)
    a_d = ive(d / 2, kappa) / ive(d / 2 - 1, kappa)
    assert abs(c.mean() - a_d) < 4 * c.std() / math.sqrt(len(c)), (c.mean(), a_d)
    assert G.mean_resultant_length(d, kappa) == pytest.approx(a_d, rel=1e-12)
    if d == 3:
        assert a_d == pytest.approx(1 / math.tanh(kappa) - 1 / kappa, rel=1e-10)
    # the tangent part is isotropic: the resultant points along the mean
    r = x.mean(0)
    assert np.linalg.norm(r - c.mean() * data.means[0, 0]) < 5 * math.sqrt(d / len(c))


def test_mixture_components_and_classes():
    data = G.SphereMixtures(d=4, n_classes=3, n_components=2, kappa=30.0, n_points=1000, n_items=6, seed=1)
    assert data.classes == ["mixture-0", "mixture-1", "mixture-2"] and data.means.shape == (3, 2, 4)
    a_d = ive(2, 30.0) / ive(1, 30.0)
    for i in (1, 5):
        x, label = data[i]
        assert label == i % 3
        comp = data.components(i)
        counts = np.bincount(comp, minlength=2)
        assert abs(counts[0] - 500) < 4 * math.sqrt(250)  # equal weights: binomial counts
        for k in range(2):
            c = x.numpy()[comp == k].astype(np.float64) @ data.means[label, k]
            assert abs(c.mean() - a_d) < 5 * c.std() / math.sqrt(len(c))
    mu, _ = G.SphereMixtures(kind="sphere", n_points=10)[0]
    assert mu.kind == "sphere" and mu.support.shape == (1, 10, 3)


# ----------------------------------------------------------------- SPD


@pytest.mark.parametrize("model", ["wishart", "signals"])
def test_spd_items_are_symmetric_positive_definite(model):
    for shrinkage in (None, 0.1, "ledoit-wolf"):
        data = G.SPDEnsembles(model=model, n_channels=5, n_times=20, n_per_class=3, shrinkage=shrinkage, seed=2)
        for S, label in data:
            assert S.shape == (5, 5) and S.dtype == torch.float32
            assert torch.equal(S, S.T) and torch.linalg.eigvalsh(S.double()).min() > 0
    small = G.SPDEnsembles(model=model, n_channels=6, n_times=4, shrinkage="ledoit-wolf")
    assert torch.linalg.eigvalsh(small[0][0].double()).min() > 0  # fewer times than channels: shrinkage helps


def test_wishart_ensemble_has_the_class_mean_and_variance():
    T, m = 30, 400
    data = G.SPDEnsembles(n_channels=3, n_times=T, n_per_class=1, n_matrices=m, seed=5)
    for c in range(2):
        S, label = data[c]
        assert S.shape == (m, 3, 3) and label == c
        Sigma = data.scales[c]
        var = (Sigma**2 + np.outer(np.diag(Sigma), np.diag(Sigma))) / T  # Wishart entry variances
        mean = S.double().mean(0).numpy()
        assert (np.abs(mean - Sigma) < 4.5 * np.sqrt(var / m)).all()
        np.testing.assert_allclose(S.double().var(0).numpy(), var, rtol=0.35)
    assert np.abs(data.scales[0] - data.scales[1]).max() > 0.1  # the classes differ


def test_signal_covariances_have_the_class_mean_and_match_covariances():
    from geom_plugins.spd import covariances

    data = G.SPDEnsembles(model="signals", n_channels=3, n_times=50, n_per_class=1, n_matrices=400, noise=0.3, seed=1)
    S, label = data[1]
    m = S.double().mean(0).numpy()
    se = S.double().std(0).numpy() / math.sqrt(len(S))
    assert (np.abs(m - data.scales[1]) < 4.5 * se).all()
    # scales = exp(1/8) A A^T + noise^2 I with the eigenvalues of A A^T in [e^-1, e]
    lam = np.linalg.eigvalsh(data.scales[1] - 0.09 * np.eye(3)) / math.exp(1 / 8)
    assert lam.min() >= math.exp(-1) - 1e-9 and lam.max() <= math.exp(1) + 1e-9
    # the shrinkage option is that of geom_plugins.spd.covariances: s = 0.5 pulls to tr/n
    half = G.SPDEnsembles(model="signals", n_channels=3, n_times=50, n_per_class=1, n_matrices=400, noise=0.3,
                          seed=1, shrinkage=0.5)[1][0]
    expected = 0.5 * S + 0.5 * (S.diagonal(dim1=1, dim2=2).sum(-1) / 3)[:, None, None] * torch.eye(3)
    torch.testing.assert_close(half, expected, atol=1e-5, rtol=1e-5)
    assert callable(covariances)
    mu, _ = G.SPDEnsembles(n_matrices=7, kind="spd-affine")[0]
    assert isinstance(mu, geom.Measure) and mu.kind == "spd-affine" and mu.support.shape == (1, 7, 4, 4)


# ----------------------------------------------------------------- Gaussian mixtures


def test_gaussian_mixture_moments_per_class():
    data = G.GaussianMixtures(d=3, n_points=1000, n_per_class=6, n_classes=2, n_components=2, seed=4)
    for c in range(2):
        x = np.concatenate([data[i][0].numpy() for i in range(len(data)) if data[i][1] == c]).astype(np.float64)
        w, mu, cov = data.weights, data.means[c], data.covariances[c]
        mean = w @ mu
        second = np.einsum("k,kij->ij", w, cov + mu[:, :, None] * mu[:, None, :])
        covariance = second - np.outer(mean, mean)
        N = len(x)
        assert (np.abs(x.mean(0) - mean) < 4.5 * np.sqrt(np.diag(covariance) / N)).all()
        xc = x - x.mean(0)
        prod = xc[:, :, None] * xc[:, None, :]  # (N, d, d)
        assert (np.abs(prod.mean(0) - covariance) < 4.5 * prod.std(0) / math.sqrt(N) + 1e-3).all()
    i = 7
    comp = data.components(i)
    x, label = data[i]
    for k in range(2):  # each row comes from the component it is labelled with
        xs = x.numpy()[comp == k].astype(np.float64)
        assert np.abs(xs.mean(0) - data.means[label, k]).max() < 5 / math.sqrt(len(xs))
    assert np.all(np.linalg.eigvalsh(data.covariances) > 0.099)


# ----------------------------------------------------------------- door and errors


def test_load_dataset_door(restore_registry):
    for name, cls in [("shapes", G.Shapes), ("sphere-mixtures", G.SphereMixtures), ("spd", G.SPDEnsembles),
                      ("gaussians", G.GaussianMixtures)]:
        if name not in geom.datasets():
            geom.register_dataset(name, cls)
    data = geom.load_dataset("gaussians", n_per_class=1, n_points=5, seed=9)
    np.testing.assert_array_equal(data[1][0], G.GaussianMixtures(n_per_class=1, n_points=5, seed=9)[1][0])
    with pytest.raises(ValueError, match="root: the generated dataset 'shapes' reads no files"):
        geom.load_dataset("shapes", root="/data")


@pytest.mark.parametrize(
    "call, error, needle",
    [
        (lambda: G.Shapes(root="x"), ValueError, "root"),
        (lambda: G.Shapes(n_per_class=0), ValueError, "n_per_class"),
        (lambda: G.Shapes(n_points=2.5), TypeError, "n_points"),
        (lambda: G.Shapes(seed=-1), ValueError, "seed"),
        (lambda: G.Shapes(noise=-0.1), ValueError, "noise"),
        (lambda: G.Shapes(partial=1), TypeError, "partial"),
        (lambda: G.Shapes(kind="voxels"), ValueError, "kind"),
        (lambda: G.Shapes(bend=1.0), ValueError, "bend"),
        (lambda: G.Shapes()["a"], TypeError, "index"),
        (lambda: G.SphereMixtures(root="x"), ValueError, "root"),
        (lambda: G.SphereMixtures(d=1), ValueError, "d:"),
        (lambda: G.SphereMixtures(kappa=0), ValueError, "kappa"),
        (lambda: G.SphereMixtures(n_components=0), ValueError, "n_components"),
        (lambda: G.SphereMixtures(n_items=0), ValueError, "n_items"),
        (lambda: G.SphereMixtures(kind="points3"), ValueError, "kind"),
        (lambda: G.SPDEnsembles(root="x"), ValueError, "root"),
        (lambda: G.SPDEnsembles(model="ar"), ValueError, "model"),
        (lambda: G.SPDEnsembles(n_channels=8, n_times=4), ValueError, "n_times"),
        (lambda: G.SPDEnsembles(shrinkage=2.0), ValueError, "shrinkage"),
        (lambda: G.SPDEnsembles(shrinkage="oas"), TypeError, "shrinkage"),
        (lambda: G.SPDEnsembles(n_matrices=0), ValueError, "n_matrices"),
        (lambda: G.SPDEnsembles(kind="points"), ValueError, "kind"),
        (lambda: G.SPDEnsembles(noise=-1.0), ValueError, "noise"),
        (lambda: G.GaussianMixtures(root="x"), ValueError, "root"),
        (lambda: G.GaussianMixtures(d=0), ValueError, "d:"),
        (lambda: G.GaussianMixtures(separation=-1.0), ValueError, "separation"),
        (lambda: G.GaussianMixtures(n_classes=0), ValueError, "n_classes"),
    ],
)
def test_bad_options_are_named(call, error, needle):
    with pytest.raises(error, match=needle):
        call()


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: G.Shapes(n_points=np.int64(10**9)), "n_points"),  # numpy integers are integers
        (lambda: G.Shapes(n_points=10**9, kind="mesh"), "n_points"),
        (lambda: G.SphereMixtures(n_points=10**9), "n_points"),
        (lambda: G.SphereMixtures(d=np.int32(10**9)), "d"),
        (lambda: G.GaussianMixtures(n_points=10**9), "n_points"),
        (lambda: G.GaussianMixtures(d=10**6), "d"),
        (lambda: G.GaussianMixtures(n_classes=np.uint64(10**9)), "n_classes"),
        (lambda: G.SPDEnsembles(n_times=10**11), "n_times"),
        (lambda: G.SPDEnsembles(n_channels=10**6, n_times=10**6), "n_channels"),
        (lambda: G.SPDEnsembles(n_matrices=np.int64(10**10)), "n_matrices"),
    ],
)
def test_sizes_beyond_memory_are_refused_up_front_naming_the_option(call, name):
    with pytest.raises(ValueError, match=rf"^{name}: this needs about .* of memory .*; choose a smaller {name}$"):
        call()
