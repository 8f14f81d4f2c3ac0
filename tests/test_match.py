"""geom.match: functional maps, ZoomOut, SW alignment, entropic refinement, rigid registration, metrics."""

import numpy as np
import pytest
import torch

from geom import spectral
from geom.match import (descriptor_fmap, entropic_refine, fmap_to_p2p, geodesic_error, log_sinkhorn, match,
                        orientation_operators, p2p_to_fmap, pck_curve, permuted_bent_pair, rigid_register,
                        score_map, sw_align, zoomout)
from geom.match.sw import descriptor_map, embedding_sw, sw_descriptor_weights
from geom_datasets import shapes


@pytest.fixture(scope="module")
def lumpy():
    """A bent ellipsoid: no symmetry, so a simple spectrum and a unique correspondence (162 vertices)."""
    v, f = shapes.bend(shapes.ellipsoid(subdivisions=2), 0.4, seed=3)
    return v.astype(np.float64), f


def bend_field(mesh, strength, seed):
    """The datasets' near-isometric bending as a displacement field (geom.match takes it as an argument)."""
    return shapes.bend(mesh, strength, seed, return_field=True)[2]


@pytest.fixture(scope="module")
def permuted(lumpy):
    return permuted_bent_pair(*lumpy, seed=5)  # an exact permuted copy


def test_the_functional_map_of_a_shape_onto_itself_is_the_identity(lumpy):
    s = spectral.spectrum(*lumpy, n_eigen=20)
    C = p2p_to_fmap(np.arange(len(lumpy[0])), s, s)
    np.testing.assert_allclose(C, np.eye(20), atol=1e-10)


def test_on_a_sphere_the_self_map_is_orthogonal_within_each_eigenspace():
    """Eigenvalues of multiplicity 2l + 1: any basis of a band may come out, so a permuted copy's map is an
    orthogonal block per band (and zero across bands), not the identity."""
    v, f = shapes.sphere(subdivisions=3)
    perm = np.random.default_rng(0).permutation(len(v))
    inv = np.argsort(perm)
    a = spectral.spectrum(v, f, n_eigen=16)
    b = spectral.spectrum(v[perm], inv[f], n_eigen=16)
    C = p2p_to_fmap(inv, a, b)  # vertex i of A is vertex inv[i] of B
    np.testing.assert_allclose(C.T @ C, np.eye(16), atol=1e-6)
    bands = np.repeat(np.arange(4), [1, 3, 5, 7])
    across = bands[:, None] != bands[None, :]
    assert np.abs(C[across]).max() < 1e-3  # discretisation splits a band by ~1e-3 relative: mixing stays tiny
    blocks = [np.abs(C[np.ix_(bands == l, bands == l)]) for l in range(1, 4)]
    assert any((np.abs(blk - np.eye(len(blk))) > 0.1).any() for blk in blocks)  # not the identity: bases differ


def test_a_permuted_copy_is_recovered_exactly(permuted):
    r = match(permuted["source"], permuted["target"], method="fmap", n_eigen=30, k_init=10)
    assert np.array_equal(r.p2p, permuted["truth"])
    r = match(permuted["source"], permuted["target"], method="fmap-sw", n_eigen=30, k_init=10, sw_steps=20)
    assert np.array_equal(r.p2p, permuted["truth"])


def test_fmap_and_p2p_conversions_invert_each_other(permuted):
    a = spectral.spectrum(*permuted["source"], n_eigen=30)
    b = spectral.spectrum(*permuted["target"], n_eigen=30)
    C = p2p_to_fmap(permuted["truth"], a, b)
    assert np.array_equal(fmap_to_p2p(C, a, b), permuted["truth"])


def test_nearest_neighbours_agree_across_backends_with_a_penalty():
    """3-D float64: the formula `make test` warms (a wider one would compile for ~12 s)."""
    from geom import _keops
    from geom.match._nn import nearest

    rng = np.random.default_rng(0)
    x, y, pen = rng.normal(size=(300, 3)), rng.normal(size=(250, 3)), rng.random(250)
    ref = (((x[:, None] - y[None]) ** 2).sum(-1) + pen).argmin(1)
    assert np.array_equal(nearest(x, y, pen, backend="gram"), ref)
    assert np.array_equal(nearest(x[:, :2], y[:, :2], backend="gram", pad_to=3),
                          ((x[:, None, :2] - y[None, :, :2]) ** 2).sum(-1).argmin(1))  # zero padding changes nothing
    reason = _keops.failure("nearest", 3, torch.float64, torch.device("cpu"))
    if reason is not None:
        pytest.skip(reason)
    assert np.array_equal(nearest(x, y, pen, backend="keops"), ref)
    with pytest.raises(ValueError, match="backend: expected one of"):
        nearest(x, y, backend="faiss")


def test_zoomout_repairs_a_noisy_small_map(permuted):
    a = spectral.spectrum(*permuted["source"], n_eigen=40)
    b = spectral.spectrum(*permuted["target"], n_eigen=40)
    C = p2p_to_fmap(permuted["truth"], a, b, 6, 6) + 0.1 * np.random.default_rng(1).normal(size=(6, 6))
    assert not np.array_equal(fmap_to_p2p(C, a, b), permuted["truth"])
    _, T = zoomout(C, a, b, 40, step=2)
    assert np.array_equal(T, permuted["truth"])


def test_descriptor_map_is_near_the_truth_and_the_orientation_term_sees_reflections(lumpy):
    pair = permuted_bent_pair(*lumpy, field=bend_field(lumpy, 0.2, 1), seed=1)
    a = spectral.spectrum(*pair["source"], n_eigen=30)
    b = spectral.spectrum(*pair["target"], n_eigen=30)
    da, db = (spectral.wks(s.evals, s.evecs, n_energies=10) for s in (a, b))
    truth = p2p_to_fmap(pair["truth"], a, b, 10, 10)
    for w in (0.0, 0.1):
        C = descriptor_fmap(a, b, da, db, k=10, w_orient=w)
        assert np.abs(np.diag(C) * np.diag(truth)).min() > 0  # the signs of the diagonal are right
    # orientation operators: commute with the map of a permuted copy, anticommute with a reflection's
    v, f = lumpy
    s = spectral.spectrum(v, f, n_eigen=12)
    mirror = spectral.spectrum(v * [-1, 1, 1], f[:, ::-1], n_eigen=12)  # reflected, faces kept outward
    d = spectral.wks(s.evals, s.evecs, n_energies=4)
    O, Om = orientation_operators(s, d, 12), orientation_operators(mirror, d, 12)
    Cm = p2p_to_fmap(np.arange(len(v)), s, mirror)
    for q in range(4):
        assert np.linalg.norm(Cm @ Om[q] + O[q] @ Cm) < 1e-8 * np.linalg.norm(O[q])
        assert np.linalg.norm(Cm @ Om[q] - O[q] @ Cm) > 0.5 * np.linalg.norm(O[q])


def test_sw_alignment_lowers_its_loss_and_keeps_the_true_map(permuted):
    a = spectral.spectrum(*permuted["source"], n_eigen=10)
    b = spectral.spectrum(*permuted["target"], n_eigen=10)
    truth = p2p_to_fmap(permuted["truth"], a, b)
    start = truth + 0.2 * np.random.default_rng(0).normal(size=truth.shape)
    C, losses = sw_align(start, a, b, n_steps=150, lr=1e-2, n_samples=None, seed=0)
    assert np.mean(losses[-10:]) < 0.01 * np.mean(losses[:10])  # measured: 11.5 -> 0.005
    assert np.linalg.norm(C - truth) < 0.8 * np.linalg.norm(start - truth)  # measured 0.70 (0.52 at seed 1)
    hits = lambda M: (fmap_to_p2p(M, a, b) == permuted["truth"]).mean()  # noqa: E731
    assert hits(C) > hits(start) + 0.05  # measured 0.50 -> 0.64


def _wks(spec, every=10):
    return spectral.wks(spec.evals, spec.evecs, n_energies=100)[:, ::every]


def _coefficients(spec, d, k):
    d = d / np.sqrt((spec.mass[:, None] * d**2).sum(0))
    return spec.evecs[:, :k].T @ (spec.mass[:, None] * d)


def test_the_weighted_descriptor_map_equals_the_least_squares_map_and_has_exact_gradients(permuted):
    a = spectral.spectrum(*permuted["source"], n_eigen=20)
    b = spectral.spectrum(*permuted["target"], n_eigen=20)
    da, db = _wks(a), _wks(b)
    ca, cb = _coefficients(a, da, 12), _coefficients(b, db, 12)
    ones = torch.ones(da.shape[1], dtype=torch.float64)
    np.testing.assert_allclose(descriptor_map(ones, a, b, ca, cb, 12).numpy(), descriptor_fmap(a, b, da, db, k=12),
                               rtol=1e-9, atol=1e-11)
    # weights w_q scale descriptor q's rows of the least-squares problem by sqrt(w_q): the same map as
    # the descriptors scaled by sqrt(w_q) with unit weights (descriptor_fmap renormalises, so scale coefficients)
    w = torch.linspace(0.2, 2.0, da.shape[1], dtype=torch.float64)
    scaled = descriptor_map(ones, a, b, ca * np.sqrt(w.numpy()), cb * np.sqrt(w.numpy()), 12)
    np.testing.assert_allclose(descriptor_map(w, a, b, ca, cb, 12).numpy(), scaled.numpy(), rtol=1e-9, atol=1e-11)
    small = (w[:5] if len(w) >= 5 else w).clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda v: descriptor_map(v, a, b, ca[:6, :len(v)], cb[:6, :len(v)], 6),
                                    (small,))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sw_weighting_of_descriptors_that_disagree_brings_the_embeddings_closer(permuted, seed):
    """Four of ten descriptors of B scrambled across vertices: the learned weights give a map whose
    embeddings are much closer in SW than the unit weights' (measured ratios 0.2 to 0.6 over 6 seeds)."""
    a = spectral.spectrum(*permuted["source"], n_eigen=20)
    b = spectral.spectrum(*permuted["target"], n_eigen=20)
    da, db = _wks(a), _wks(b)
    rng = np.random.default_rng(seed)
    bad = rng.choice(da.shape[1], 4, replace=False)
    db[:, bad] = db[rng.permutation(len(db))][:, bad]
    w, C, losses = sw_descriptor_weights(a, b, da, db, k=12, n_steps=60, seed=seed)
    assert embedding_sw(C, a, b) < 0.75 * embedding_sw(descriptor_fmap(a, b, da, db, k=12), a, b)
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    assert (w > 0).all()
    np.testing.assert_allclose(w.sum(), da.shape[1])
    with pytest.raises(ValueError, match="desc_a, desc_b: expected one row per vertex"):
        sw_descriptor_weights(a, b, da[:-1], db, k=12)


def test_embedding_sw_is_zero_at_the_true_map_and_grows_with_its_error(permuted):
    a = spectral.spectrum(*permuted["source"], n_eigen=20)
    b = spectral.spectrum(*permuted["target"], n_eigen=20)
    C = p2p_to_fmap(permuted["truth"], a, b, 12, 12)
    rng = np.random.default_rng(0)
    scores = [embedding_sw(C + s * rng.normal(size=C.shape), a, b) for s in (0.0, 0.05, 0.3)]
    assert scores[0] < 1e-10  # the same weighted point sets (sign-fixed eigenvectors of a permuted copy)
    assert scores[0] < scores[1] < scores[2]
    with pytest.raises(ValueError, match="C: expected a square map"):
        embedding_sw(np.ones((3, 4)), a, b)


def test_log_sinkhorn_marginals_and_entropic_refinement_of_a_permuted_copy(permuted):
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(50, 3, generator=gen, dtype=torch.float64), torch.randn(40, 3, generator=gen, dtype=torch.float64)
    a, b = torch.rand(50, generator=gen, dtype=torch.float64), torch.rand(40, generator=gen, dtype=torch.float64)
    a, b = a / a.sum(), b / b.sum()
    eps = 0.05
    f, g = log_sinkhorn(x, y, a, b, eps, n_iter=2000, tol=1e-12)
    P = a[:, None] * b[None] * torch.exp((f[:, None] + g[None] - torch.cdist(x, y) ** 2) / eps)
    torch.testing.assert_close(P.sum(1), a, atol=1e-8, rtol=0)
    torch.testing.assert_close(P.sum(0), b, atol=1e-8, rtol=0)
    A = spectral.spectrum(*permuted["source"], n_eigen=30)
    B = spectral.spectrum(*permuted["target"], n_eigen=30)
    C = p2p_to_fmap(permuted["truth"], A, B)
    noisy = C + 0.05 * np.random.default_rng(2).normal(size=C.shape)
    _, T = entropic_refine(noisy, A, B)
    assert np.array_equal(T, permuted["truth"])


@pytest.mark.keops
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_log_sinkhorn_keops_equals_dense(dtype):
    pytest.importorskip("pykeops")
    from geom import _keops

    reason = _keops.failure("lse", 3, dtype, torch.device("cpu"))
    if reason is not None:
        pytest.skip(f"KeOps does not compile here: {reason}")
    gen = torch.Generator().manual_seed(3)
    x, y = (0.3 * torch.randn(n, 3, generator=gen, dtype=torch.float64) for n in (70, 50))
    a, b = torch.rand(70, generator=gen, dtype=torch.float64) + 0.1, torch.rand(50, generator=gen, dtype=torch.float64) + 0.1
    a, b = a / a.sum(), b / b.sum()
    cast = [t.to(dtype) for t in (x, y, a, b)]
    for eps in (0.5, 1e-3):  # 1e-3: exponents of -1e3, where a log-sum-exp without the max shift overflows
        fd, gd = log_sinkhorn(*cast, eps, n_iter=20, backend="dense")
        fk, gk = log_sinkhorn(*cast, eps, n_iter=20, backend="keops")
        tol = 1e-10 if dtype == torch.float64 else 1e-4
        torch.testing.assert_close(fk, fd, rtol=0, atol=tol * eps * 100)
        torch.testing.assert_close(gk, gd, rtol=0, atol=tol * eps * 100)


@pytest.mark.parametrize("eps", [0.5, 1e-3])
def test_dense_log_sum_exp_and_plan_rows_equal_a_float64_reference(monkeypatch, eps):
    # blocks of a few rows (the buffer reused), logits spread over thousands (most exp results would be
    # subnormal without the floor): the float32 blocks give float64's log-sum-exp and softmax rows
    from geom.match import refine

    monkeypatch.setattr(refine, "_BLOCK_ELEMENTS", 7 * 40)  # 7 rows per block, a short last block
    gen = torch.Generator().manual_seed(5)
    x, y = torch.randn(45, 6, generator=gen, dtype=torch.float64), torch.randn(40, 6, generator=gen, dtype=torch.float64)
    h = torch.randn(40, generator=gen, dtype=torch.float64)
    logits = (h[None] - torch.cdist(x, y).square()) / eps  # (45, 40)
    got = refine._lse_dense(x.float(), y.float(), h.float(), eps)
    torch.testing.assert_close(got.double(), torch.logsumexp(logits, 1), rtol=2e-5, atol=2e-5 / eps)
    b = torch.full((40,), 1 / 40, dtype=torch.float64)
    target = torch.randn(40, 3, generator=gen, dtype=torch.float64)
    plan_rows = torch.softmax(logits + b.log()[None], 1)
    got = refine._plan_barycentre(x.float(), y.float(), b.float(), h.float(), eps, target.float())
    torch.testing.assert_close(got.double(), plan_rows @ target, rtol=1e-4, atol=1e-4)


def test_rigid_registration_recovers_a_known_rotation(lumpy):
    import scipy.spatial.transform as tr

    v, _ = lumpy
    R = tr.Rotation.from_rotvec([0.4, -1.1, 0.7]).as_matrix()
    t = np.array([0.3, -2.0, 1.0])
    perm = np.random.default_rng(0).permutation(len(v))
    y = (v @ R.T + t)[perm]
    res = rigid_register(v, y, seed=0, n_starts=24)
    assert np.abs(res.rotation - R).max() < 0.03
    assert np.abs(res.translation - t).max() < 0.03
    assert (res.p2p == np.argsort(perm)).mean() > 0.95


def grid(nx, ny, h):
    xs, ys = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
    v = np.stack([xs.ravel() * h, ys.ravel() * h, np.zeros(nx * ny)], 1)
    idx = np.arange(nx * ny).reshape(nx, ny)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel(), idx[:-1, 1:].ravel()
    return v, np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)]), idx


def test_geodesic_error_on_a_hand_made_strip():
    """A 4 x 1 strip of squares of side h: moving each vertex one column right is an error of one
    edge, h / sqrt(area); Dijkstra is exact along grid lines."""
    h = 0.5
    v, f, idx = grid(5, 2, h)
    area = 4 * 1 * h * h
    truth = np.arange(10)
    pred = idx[np.minimum(np.arange(5) + 1, 4)].ravel()  # row i -> row i + 1, the last row stays
    expected = np.where(np.arange(5).repeat(2) < 4, h, 0.0) / np.sqrt(area)
    np.testing.assert_allclose(geodesic_error(pred, truth, v, f, method="dijkstra"), expected, atol=1e-12)
    score = score_map(pred, truth, v, f, method="dijkstra")
    assert score.mean == pytest.approx(expected.mean())
    assert score.pck[0] == pytest.approx(0.2)  # the last column maps onto itself


def test_heat_method_geodesics_on_a_fine_grid():
    """On a plane the geodesic distance is the Euclidean one; a shift by 8 columns of a 41 x 21 grid."""
    pytest.importorskip("potpourri3d")
    h = 0.05
    v, f, idx = grid(41, 21, h)
    pred = idx[np.minimum(np.arange(41) + 8, 40)].ravel()
    truth = idx.ravel()
    err = geodesic_error(pred, truth, v, f, method="heat") * np.sqrt(40 * 20 * h * h)
    exact = np.linalg.norm(v[pred] - v[truth], axis=1)
    far = exact >= 4 * h - 1e-12  # the heat method is least accurate at a few edges
    rel = np.abs(err[far] / exact[far] - 1)
    # measured: mean 3.8%, 95th percentile 12.6% (a swapped pair or a wrong area would be off by 100%)
    assert rel.mean() < 0.06 and np.quantile(rel, 0.95) < 0.2, (rel.mean(), np.quantile(rel, 0.95))


def test_remeshed_pair_has_another_triangulation_and_near_ground_truth(lumpy):
    pytest.importorskip("open3d")
    from geom.match import remeshed_pair

    v, f = lumpy
    field = bend_field(lumpy, 0.2, 0)
    pair = remeshed_pair(v, f, field=field, fraction=0.5)
    vt, ft = pair["target"]
    assert len(ft) <= len(f) // 2 + 2 and len(vt) < len(v)
    gap = np.linalg.norm(vt[pair["truth"]] - (v + field(v)), axis=1)
    edges = np.linalg.norm(vt[ft] - vt[np.roll(ft, 1, axis=1)], axis=2)
    assert gap.max() <= edges.max()  # each truth vertex lies within an edge of the bent source vertex


def test_partial_pair_ground_truth_is_exact(lumpy):
    from geom.match import partial_pair

    pair = partial_pair(*lumpy, fraction=0.6, seed=2)
    (vs, fs), (vt, _) = pair["source"], pair["target"]
    assert len(vs) < len(vt) and spectral.n_components(spectral.cotangent_laplacian(vs, fs)[0]) == 1
    np.testing.assert_allclose(vt[pair["truth"]], vs, atol=1e-6)  # no bend: the image is the vertex itself


def test_pck_curve_and_auc():
    t, curve, auc = pck_curve(np.array([0.0, 0.05, 0.2, 0.02]))
    assert curve[0] == 0.25 and curve[-1] == 0.75
    assert curve[20] == 0.5  # t = 0.02
    assert auc == pytest.approx(np.trapezoid(curve, t) / 0.1)
    assert pck_curve(np.zeros(7))[2] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="errors"):
        pck_curve(np.array([0.1, np.nan]))


def test_symmetric_flips_are_counted():
    v, f = shapes.ellipsoid(subdivisions=2)
    from geom.match import reflection_symmetry

    sym = reflection_symmetry(v, 0)
    assert sym is not None and np.array_equal(sym[sym], np.arange(len(v)))
    truth = np.arange(len(v))
    flipped = score_map(sym, truth, v, f, symmetry=sym, method="dijkstra")
    far = np.abs(v[:, 0]) > 0.3  # vertices far from the mirror plane are flipped by more than 0.05
    assert flipped.flip_rate == pytest.approx(far.mean(), abs=0.1)
    assert score_map(truth, truth, v, f, symmetry=sym, method="dijkstra").flip_rate == 0


# ---------------------------------------------------------------- errors


def test_mesh_only_methods_refuse_point_clouds(lumpy):
    v, f = lumpy
    for method in ("fmap", "fmap-sw", "sliced-plan"):
        with pytest.raises(ValueError, match=f"target: method '{method}' needs a triangle mesh"):
            match((v, f), v, method=method)
    assert len(match(v, v, method="rigid").p2p) == len(v)  # rigid takes point clouds


def test_disconnected_mesh_and_too_many_eigenpairs_are_refused(lumpy):
    v, f = lumpy
    two = (np.concatenate([v, v + 5]), np.concatenate([f, f + len(v)]))
    with pytest.raises(ValueError, match="connected mesh, got 2 connected components"):
        match(two, (v, f))
    with pytest.raises(ValueError, match=f"n_eigen: expected at most the number of vertices, {len(v)}"):
        match((v, f), (v, f), n_eigen=len(v) + 1)
    with pytest.raises(ValueError, match="method: expected one of"):
        match((v, f), (v, f), method="icp")
    with pytest.raises(ValueError, match="k_init: expected an int or a non-empty sequence"):
        match((v, f), (v, f), method="fmap-sw", k_init=())
    with pytest.raises(ValueError, match="k_init"):
        match((v, f), (v, f), method="fmap-sw", k_init=(6, 1))


def test_fmap_sw_keeps_the_start_and_the_refinement_with_the_lowest_embedding_sw(permuted):
    r = match(permuted["source"], permuted["target"], method="fmap-sw", n_eigen=20, k_init=(4, 8), sw_steps=10)
    assert r.info["k_init"] == [4, 8]
    assert r.info["k_chosen"] == (4, 8)[int(np.argmin(r.info["start_scores"]))]
    scores = r.info["map_scores"]
    assert r.info["refined"] == (scores["refined"] < scores["zoomout"])


def test_ground_truth_of_the_wrong_length_is_refused(lumpy):
    v, f = lumpy
    with pytest.raises(ValueError, match=r"ground_truth: expected one target vertex per source vertex \(5\), got 4"):
        score_map(np.arange(5), np.arange(4), v, f)
    with pytest.raises(ValueError, match=r"ground_truth: expected target vertices in \[0, 162\)"):
        score_map(np.arange(5), np.arange(5) + 200, v, f)


# ---------------------------------------------------------------- the command


def test_geom_match_writes_the_map_render_and_json_and_scores_ground_truth(tmp_path, capsys, permuted):
    import json

    import trimesh
    from cli_helpers import assert_user_error, run

    a, b = tmp_path / "a.ply", tmp_path / "b.ply"
    trimesh.Trimesh(*permuted["source"], process=False).export(a)
    trimesh.Trimesh(*permuted["target"], process=False).export(b)
    gt = tmp_path / "gt.npy"
    np.save(gt, permuted["truth"])
    out = tmp_path / "out"
    rc, stdout, _ = run(capsys, "match", a, b, "--out", out, "--n-eigen", 30, "--ground-truth", gt)
    assert rc == 0 and "mean geodesic error 0.0000" in stdout
    assert np.array_equal(np.load(out / "map.npy", allow_pickle=False), permuted["truth"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ground_truth"]["mean_geodesic_error"] == 0 and summary["ground_truth"]["auc"] == 1
    assert summary["files"] == ["map.npy", "render.png", "summary.json"] and (out / "render.png").stat().st_size > 0
    # --force replaces only its own outputs; a foreign file of an output's name is refused
    assert_user_error(*run(capsys, "match", a, b, "--out", out), "--out", "--force")
    (out / "notes.txt").write_text("mine")
    assert run(capsys, "match", a, b, "--out", out, "--n-eigen", 20, "--force")[0] == 0
    assert (out / "notes.txt").read_text() == "mine"
    other = tmp_path / "other"
    other.mkdir()
    (other / "map.npy").write_text("not ours")
    assert_user_error(*run(capsys, "match", a, b, "--out", other, "--force"), "map.npy", "no earlier")


def test_geom_match_bad_input_is_one_line(tmp_path, capsys, permuted):
    import trimesh
    from cli_helpers import assert_user_error, run

    a, b = tmp_path / "a.ply", tmp_path / "b.ply"
    trimesh.Trimesh(*permuted["source"], process=False).export(a)
    trimesh.Trimesh(*permuted["target"], process=False).export(b)
    short, pickled = tmp_path / "short.npy", tmp_path / "pickled.npy"
    np.save(short, permuted["truth"][:-1])
    np.save(pickled, np.array([1, "x"], dtype=object), allow_pickle=True)
    n = len(permuted["truth"])
    assert_user_error(*run(capsys, "match", a, b, "--out", tmp_path / "o1", "--ground-truth", short),
                      "--ground-truth", f"({n}), got {n - 1}")
    assert_user_error(*run(capsys, "match", a, b, "--out", tmp_path / "o2", "--ground-truth", pickled),
                      "--ground-truth", "without pickle")
    assert_user_error(*run(capsys, "match", a, b, "--out", tmp_path / "o3", "--n-eigen", n + 1), "--n-eigen",
                      f"at most the number of vertices, {n}")
    cloud = tmp_path / "cloud.npy"
    np.save(cloud, permuted["target"][0].astype(np.float32))
    assert_user_error(*run(capsys, "match", a, cloud, "--out", tmp_path / "o4"), "B:", "needs a triangle mesh")
    assert not (tmp_path / "o1").exists() or not any((tmp_path / "o1").iterdir())


@pytest.mark.parametrize("method", ["fmap", "fmap-sw", "sliced-plan"])
def test_match_reports_as_many_progress_steps_as_it_announces(permuted, method):
    from geom.match.pipeline import progress_steps

    seen = []
    match(permuted["source"], permuted["target"], method=method, n_eigen=20, sw_steps=5,
          progress=lambda stage, n=1: seen.append(n))
    assert sum(seen) == progress_steps(method, sw_steps=5, n_eigen=20)
