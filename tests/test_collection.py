"""geom.collection: quantile embeddings, SW matrices, kNN, SW kernels, the MMD test, blocks on disk."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import geom
import geom.collection as gc
from geom.collection import _pairwise


def clouds(seed, C=9, N=40, D=3, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    shift = torch.randn(C, 1, D, generator=g, dtype=dtype)
    return torch.randn(C, N, D, generator=g, dtype=dtype) * (0.5 + torch.rand(C, 1, 1, generator=g, dtype=dtype)) \
        + shift


def per_pair(mu, nu, directions, p=2):
    return geom.sliced_wasserstein(mu, nu, p=p, directions=directions).item()


# ---------------------------------------------------------------------------------------------- embedding


@pytest.mark.parametrize("p", (1.0, 2.0, 3.0))
def test_uniform_equal_n_equals_per_pair_sw_exactly(p):
    x = clouds(0)
    emb = gc.embed(x, n_projections=12, seed=3, p=p)
    assert emb.n_quantiles == x.shape[1] and bool((emb.error == 0).all())
    D = gc.pairwise(emb)
    for a in range(len(x)):
        for b in range(len(x)):
            assert D[a, b].item() == pytest.approx(per_pair(x[a], x[b], emb.directions, p), rel=1e-12, abs=1e-14)


def test_float32_embedding_matches_per_pair():
    x = clouds(1, dtype=torch.float32)
    emb = gc.embed(x, n_projections=10, seed=0)
    assert emb.vectors.dtype == torch.float32
    D = gc.pairwise(emb)
    ref = torch.tensor([[per_pair(x[a], x[b], emb.directions) for b in range(len(x))] for a in range(len(x))])
    torch.testing.assert_close(D.float(), ref, rtol=1e-5, atol=1e-6)


def test_weighted_and_unequal_sizes_are_within_the_stated_quadrature_error():
    g = torch.Generator().manual_seed(5)
    items = [geom.measure(torch.randn(n, 2, generator=g, dtype=torch.float64) + k,
                          weights=torch.rand(n, generator=g, dtype=torch.float64) + 0.1)
             for k, n in enumerate((7, 13, 30, 18, 9))]
    for K in (16, 64, 512):
        emb = gc.embed(items, n_projections=8, seed=2, n_quantiles=K)
        assert bool((emb.error > 0).all())
        D = gc.pairwise(emb)
        E = gc.pairwise(items, mode="exact", directions=emb.directions)
        bound = emb.error[:, None] + emb.error[None]
        assert bool(((D - E).abs() <= bound + 1e-12).all())
    small, large = (gc.embed(items, n_projections=8, seed=2, n_quantiles=K).error for K in (16, 4096))
    # quantile functions of discrete measures are steps: the error goes as K^(-1/p), 16 times less here
    assert bool((large < small / 8).all())


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), sizes=st.lists(st.integers(1, 25), min_size=2, max_size=4),
       K=st.integers(1, 64), p=st.sampled_from([1.0, 1.5, 2.0, 3.0]), zeros=st.booleans())
def test_quadrature_bound_holds_for_any_weights_sizes_levels_and_order(seed, sizes, K, p, zeros):
    g = torch.Generator().manual_seed(seed)
    items = []
    for n in sizes:
        w = torch.rand(n, generator=g, dtype=torch.float64)
        if zeros and n > 1:
            w[0] = 0.0  # atoms of weight zero are nobody's quantile
        items.append(geom.measure(torch.randn(n, 2, generator=g, dtype=torch.float64) * 3, weights=w))
    emb = gc.embed(items, n_projections=3, seed=seed, n_quantiles=K, p=p)
    D = gc.pairwise(emb)
    E = gc.pairwise(items, mode="exact", directions=emb.directions, p=p)
    bound = emb.error[:, None] + emb.error[None]
    assert bool(((D - E).abs() <= bound + 1e-9 * (1 + E)).all())


def test_error_is_the_lp_distance_to_the_step_quantiles():
    # one measure on the line: atoms 0 and 1 with weights 1/3, 2/3; K = 2 levels at 1/4 and 3/4
    mu = geom.measure(torch.tensor([[0.0], [1.0]], dtype=torch.float64), weights=[1.0, 2.0])
    emb = gc.embed([mu], directions=[[1.0]], n_quantiles=2, p=1)
    # Q = 0 on (0, 1/3], 1 after; the steps are 0 on (0, 1/2], 1 after: they differ on (1/3, 1/2]
    assert emb.error.item() == pytest.approx(1 / 6, rel=1e-12)
    assert emb.rows().tolist() == [[0.0, 1.0]] and emb.scale == 0.5  # Q(1/4), Q(3/4); (L K)^(-1/p)
    assert emb.vectors[0].tolist() == pytest.approx([-2 / 3, 1 / 3])  # moved by the centre, 2/3


def test_spd_kind_embeds_exactly():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(4, 6, 3, 3, generator=g, dtype=torch.float64)
    spd = A @ A.transpose(-1, -2) + 0.5 * torch.eye(3, dtype=torch.float64)
    mu = geom.measure(spd, kind="spd")
    emb = gc.embed(mu, n_projections=5, seed=1)
    D = gc.pairwise(emb)
    E = gc.pairwise(mu, mode="exact", directions=emb.directions)
    torch.testing.assert_close(D, E, rtol=1e-10, atol=1e-12)


def test_sphere_kind_is_refused_with_the_reason_and_exact_mode_works():
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(3, 20, 3, generator=g, dtype=torch.float64), dim=-1)
    mu = geom.measure(x, kind="sphere")
    with pytest.raises(ValueError, match="circle.*mode='exact'"):
        gc.embed(mu, n_projections=4, seed=0)
    D = gc.pairwise(mu, mode="exact", n_projections=6, seed=0)
    dirs = geom.sliced_wasserstein(mu[0], mu[1], n_projections=6, seed=0, return_result=True).directions
    assert D[0, 1].item() == pytest.approx(per_pair(mu[0], mu[1], dirs), rel=1e-12)
    assert D[1, 0] == D[0, 1] and D[2, 2] == 0


def test_directions_come_from_the_scheme_and_seed():
    x = clouds(2)
    a, b = gc.embed(x, n_projections=6, seed=4), gc.embed(x, n_projections=6, seed=4)
    assert torch.equal(a.vectors, b.vectors)
    assert not torch.equal(a.directions, gc.embed(x, n_projections=6, seed=5).directions)
    q = gc.embed(x, n_projections=8, scheme="qmc", seed=0)
    assert q.directions.shape == (8, 3)
    with pytest.raises(ValueError, match="scheme"):
        gc.embed(x, n_projections=4, scheme="max", seed=0)  # learns from a pair: no shared directions


# ---------------------------------------------------------------------------------------------- pairwise


def test_symmetric_path_equals_the_full_matrix_and_condensed_form():
    x = clouds(3, C=23)
    emb = gc.embed(x, n_projections=8, seed=0)
    other = gc.Embedding(emb.vectors.clone(), emb.error, emb.directions, emb.n_quantiles, emb.p, emb.kind, emb.origin)
    sym = gc.pairwise(emb, block_size=5)
    full = gc.pairwise(emb, other, block_size=5)  # a second object: every block computed
    torch.testing.assert_close(sym, full, rtol=1e-12, atol=1e-13)
    assert torch.equal(sym, sym.T) and bool((sym.diagonal() == 0).all())
    from scipy.spatial.distance import squareform

    cond = gc.pairwise(emb, condensed=True, block_size=5)
    np.testing.assert_array_equal(squareform(sym.numpy(), checks=False), cond.numpy())
    torch.testing.assert_close(gc.pairwise(emb, block_size=100), sym, rtol=1e-12, atol=1e-13)


def test_between_two_collections_uses_the_first_ones_directions():
    x, y = clouds(4, C=5), clouds(5, C=3)
    emb = gc.embed(x, n_projections=7, seed=0)
    D = gc.pairwise(emb, list(y))
    assert D.shape == (5, 3)
    assert D[2, 1].item() == pytest.approx(per_pair(x[2], y[1], emb.directions), rel=1e-12)
    E = gc.pairwise(x, y, mode="exact", directions=emb.directions)
    torch.testing.assert_close(D, E, rtol=1e-12, atol=1e-13)


def test_float32_far_from_the_origin_keeps_its_digits():
    # clouds around 1e4 with extents around 1: float32 projections of raw coordinates would carry
    # errors of 1e-3 (their spacing there); moved by the collection's centre they keep 1e-7
    x64 = clouds(22, C=6) + 1e4
    x = x64.float()
    emb = gc.embed(x, n_projections=8, seed=0)
    D = gc.pairwise(emb)
    ref = gc.pairwise(x.double(), mode="exact", directions=emb.directions.double())  # float64 per pair
    assert (D - ref).abs().max().item() <= 1e-5 * ref.max().item()
    y = gc.embed(x[:2] + 0.5, directions=emb.directions)  # another centre: compared all the same
    assert gc.pairwise(emb, y)[3, 1].item() == pytest.approx(
        geom.sliced_wasserstein(x[3].double(), x[1].double() + 0.5, directions=emb.directions.double()).item(),
        rel=1e-5)


def test_near_duplicates_keep_their_digits():
    # far from the origin and 1e-9 apart: the Gram identity alone would return noise or 0
    x = clouds(6, C=3) + 1e4
    x[1] = x[0] + 1e-9
    emb = gc.embed(x, n_projections=4, seed=0)
    D = gc.pairwise(emb)
    assert D[0, 1].item() == pytest.approx(per_pair(x[0], x[1], emb.directions), rel=1e-6)
    assert D[0, 1] > 0


def interrupt_after(monkeypatch, n: int) -> list:
    """Ctrl-C at the block after ``n`` blocks were computed, one block at a time (a deterministic stop);
    returns the list of computed blocks' marks (clear it to count again)."""
    real, calls = _pairwise.block_values, []

    def dying(*args):
        if len(calls) == n:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(_pairwise, "block_values", dying)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    return calls


def test_block_files_resume_after_an_interruption(tmp_path, monkeypatch):
    x = clouds(7, C=20)
    emb = gc.embed(x, n_projections=6, seed=0)
    want = gc.pairwise(emb, block_size=4)
    real = _pairwise.block_values
    calls = interrupt_after(monkeypatch, 5)
    with pytest.raises(KeyboardInterrupt):
        gc.pairwise(emb, block_size=4, out=tmp_path)
    assert len(list(tmp_path.glob("block-*.npy"))) == 5
    calls.clear()
    monkeypatch.setattr(_pairwise, "block_values", lambda *a: (calls.append(1), real(*a))[1])
    got = gc.pairwise(emb, block_size=4, out=tmp_path)
    assert len(calls) == 15 - 5  # 5 x 5 blocks, 15 in the upper triangle; the 5 on disk are skipped
    assert torch.equal(got, want)
    calls.clear()
    assert torch.equal(gc.pairwise(emb, block_size=4, out=tmp_path), want) and not calls


def test_block_folder_refuses_other_runs_and_recomputes_bad_blocks(tmp_path):
    x = clouds(8, C=8)
    emb = gc.embed(x, n_projections=6, seed=0)
    want = gc.pairwise(emb, block_size=4, out=tmp_path)
    with pytest.raises(ValueError, match="another computation"):
        gc.pairwise(gc.embed(x, n_projections=6, seed=1), block_size=4, out=tmp_path)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="holds no manifest.json"):
        gc.pairwise(emb, out=foreign)
    block = sorted(tmp_path.glob("block-*.npy"))[0]
    np.save(block, np.array([{"a": 1}], dtype=object), allow_pickle=True)  # a pickle: never loaded as one
    with pytest.warns(geom.GeomWarning, match="computing it again"):
        got = gc.pairwise(emb, block_size=4, out=tmp_path)
    assert torch.equal(got, want)
    assert np.load(block, allow_pickle=False).dtype == np.float64


# ---------------------------------------------------------------------------------------------- kNN


def brute_knn(D, k, within):
    D = D.clone()
    if within:
        D.fill_diagonal_(math.inf)
    order = D.argsort(dim=1, stable=True)[:, :k]
    return D.gather(1, order), order


@pytest.mark.parametrize("within", (True, False))
def test_knn_equals_brute_force(within):
    x, y = clouds(9, C=31), clouds(10, C=12)
    db = gc.embed(x, n_projections=8, seed=0)
    q = db if within else gc.embed(y, directions=db.directions)
    D = gc.pairwise(q, None if within else db)
    d, i = gc.knn(q, None if within else db, k=4, block_size=7)
    bd, bi = brute_knn(D, 4, within)
    assert torch.equal(i, bi)
    torch.testing.assert_close(d, bd, rtol=1e-12, atol=1e-13)


def test_knn_faiss_equals_blas():
    # in a process of its own: faiss bundles an OpenBLAS, and one loaded into this process after geom's
    # sort pool met its BLAS libraries is not held to one thread by it (tests/test_sort_pool.py sees that)
    import importlib.util
    import subprocess
    import sys

    if importlib.util.find_spec("faiss") is None:
        pytest.skip("faiss is not installed (pip install faiss-cpu)")
    code = """
import torch, geom.collection as gc
g = torch.Generator().manual_seed(11)
x = torch.randn(40, 40, 3, generator=g, dtype=torch.float64) + torch.randn(40, 1, 3, generator=g, dtype=torch.float64)
emb = gc.embed(x, n_projections=8, seed=0)
for q, db in ((emb, None), (emb[:7], emb[7:])):
    d, i = gc.knn(q, db, k=3)
    fd, fi = gc.knn(q, db, k=3, backend="faiss")
    assert torch.equal(fi, i), (fi, i)
    torch.testing.assert_close(fd, d, rtol=1e-12, atol=1e-13)
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


@pytest.mark.keops
@pytest.mark.slow
def test_knn_keops_equals_blas():
    pytest.importorskip("pykeops")
    from geom import _keops

    reason = _keops.failure("nearest", 3, torch.float32, torch.device("cpu"))
    if reason is not None:
        pytest.skip(f"KeOps does not compile here: {reason}")
    x = clouds(12, C=30, N=8)
    emb = gc.embed(x, n_projections=4, seed=0)  # 32-dimensional vectors
    d, i = gc.knn(emb, k=3)
    kd, ki = gc.knn(emb, k=3, backend="keops")
    assert torch.equal(ki, i)
    torch.testing.assert_close(kd, d, rtol=1e-12, atol=1e-13)


# ---------------------------------------------------------------------------------------------- kernels


def test_gaussian_kernel_is_positive_semidefinite():
    g = torch.Generator().manual_seed(0)
    items = [geom.measure(torch.randn(n, 3, generator=g, dtype=torch.float64) * (1 + k % 3),
                          weights=torch.rand(n, generator=g, dtype=torch.float64))
             for k, n in enumerate(torch.randint(5, 40, (60,), generator=g).tolist())]
    emb = gc.embed(items, n_projections=6, seed=0, n_quantiles=32)
    for gamma in ("median", 0.1, 10.0):
        K = gc.gaussian_kernel(emb, gamma=gamma)
        assert torch.equal(K, K.T) and bool((K.diagonal() == 1).all())
        assert torch.linalg.eigvalsh(K).min().item() >= -1e-10
    D = gc.pairwise(emb)
    torch.testing.assert_close(gc.gaussian_kernel(emb, gamma=0.5), torch.exp(-0.5 * D**2))


def test_kernel_refuses_other_orders_and_bad_gamma():
    x = clouds(13, C=4)
    with pytest.raises(ValueError, match="p = 1"):
        gc.gaussian_kernel(gc.embed(x, n_projections=3, seed=0, p=1))
    with pytest.raises(ValueError, match="gamma"):
        gc.gaussian_kernel(x, gamma=-1.0, n_projections=3, seed=0)
    with pytest.raises(ValueError, match="gamma"):
        gc.gaussian_kernel(x, gamma="mean", n_projections=3, seed=0)


def ellipsoids(seed, C, N=128):
    """Clouds on ellipsoids with semi-axes (1, t, t^2 / 2): the regression target is t."""
    g = torch.Generator().manual_seed(seed)
    t = 0.3 + 0.7 * torch.rand(C, generator=g, dtype=torch.float64)
    z = torch.nn.functional.normalize(torch.randn(C, N, 3, generator=g, dtype=torch.float64), dim=-1)
    axes = torch.stack([torch.ones_like(t), t, t * t / 2 + 0.2], -1)  # (C, 3)
    return z * axes[:, None], t


def test_kernel_ridge_distribution_regression_predicts_the_shape_parameter():
    pytest.importorskip("sklearn")
    x, t = ellipsoids(0, 80)
    xt, tt = ellipsoids(1, 40)
    train = gc.embed(x, n_projections=16, seed=0)
    gamma = 0.1 / gc.pairwise(train, condensed=True).square().median().item()  # a wide kernel
    model = gc.KernelModel("ridge", gamma=gamma, alpha=1e-3).fit(train, t.numpy())
    assert model.score(xt, tt.numpy()) > 0.95  # held-out R^2, test clouds embedded on the same directions
    shuffled = gc.KernelModel("ridge", gamma=gamma, alpha=1e-3).fit(train, t.numpy()[::-1].copy())
    assert shuffled.score(xt, tt.numpy()) < 0.5  # the score is earned: labels unrelated to the clouds give none


def test_svc_classifies_with_the_precomputed_kernel():
    pytest.importorskip("sklearn")
    x, t = ellipsoids(2, 60)
    xt, tt = ellipsoids(3, 30)
    model = gc.KernelModel("svc", C=10.0).fit(x, (t > 0.65).numpy(), n_projections=16, seed=0)
    assert model.score(xt, (tt > 0.65).numpy()) > 0.85
    with pytest.raises(ValueError, match="y: expected 60"):
        gc.KernelModel("ridge").fit(x, t[:10].numpy(), n_projections=4, seed=0)
    with pytest.raises(ValueError, match="estimator"):
        gc.KernelModel("forest")


def test_mmd_test_keeps_its_level_and_has_power():
    g = torch.Generator().manual_seed(0)

    def collection(C, shift):
        return torch.randn(C, 32, 2, generator=g, dtype=torch.float64) + shift * torch.tensor([1.0, 0.0],
                                                                                              dtype=torch.float64)

    null = [gc.mmd_test(collection(15, 0.0), collection(15, 0.0), n_permutations=199, seed=k, n_projections=8).pvalue
            for k in range(20)]
    assert sum(p < 0.05 for p in null) <= 4  # level 5%: 1 expected in 20, 4 or fewer with probability 0.98
    shifted = gc.mmd_test(collection(15, 0.0), collection(15, 0.6), n_permutations=199, seed=0, n_projections=8)
    assert shifted.pvalue <= 0.01 and shifted.statistic > 0
    assert 1 / 200 <= shifted.pvalue <= 1
    a, b = collection(6, 0.0), collection(6, 0.0)
    again = gc.mmd_test(a, b, n_permutations=50, seed=3, n_projections=4)
    assert again.n_permutations == 50 and 0 < again.pvalue <= 1
    assert gc.mmd_test(a, b, n_permutations=50, seed=3, n_projections=4) == again  # directions seeded too


def test_mmd_statistic_is_the_unbiased_estimate():
    x, y = clouds(14, C=5), clouds(15, C=4) + 0.3
    ex = gc.embed(x, n_projections=6, seed=0)
    ey = gc.embed(y, directions=ex.directions)
    r = gc.mmd_test(ex, ey, gamma=0.7, n_permutations=10, seed=0)
    D = gc.pairwise(list(x) + list(y), mode="exact", directions=ex.directions).numpy()  # per pair, pooled
    K = np.exp(-0.7 * D**2)
    kxx, kyy, kxy = K[:5, :5], K[5:, 5:], K[:5, 5:]
    want = (kxx.sum() - 5) / 20 + (kyy.sum() - 4) / 12 - 2 * kxy.mean()
    assert r.statistic == pytest.approx(want, rel=1e-10)


# ---------------------------------------------------------------------------------------------- errors


def test_bad_input_gives_clear_errors():
    x = clouds(16, C=3)
    with pytest.raises(ValueError, match="measures: expected a non-empty collection"):
        gc.embed([])
    with pytest.raises(ValueError, match="one dimension.*position 1"):
        gc.embed([torch.randn(5, 3), torch.randn(5, 2)], n_projections=2, seed=0)
    spd = torch.eye(3).expand(4, 3, 3)
    with pytest.raises(ValueError, match="one kind, got kind 'points' at position 0 and 'spd' at position 1"):
        gc.embed([geom.measure(torch.randn(4, 3)), geom.measure(spd, kind="spd")], n_projections=2, seed=0)
    with pytest.raises(TypeError, match="measures: expected a batched geom.Measure"):
        gc.embed("folder")
    with pytest.raises(ValueError, match="k: expected at most 2 .*minus the query itself.*got 3"):
        gc.knn(x, k=3, n_projections=2, seed=0)
    with pytest.raises(ValueError, match="k: expected at most 3 .*got 4"):
        gc.knn(x[:1], list(x), k=4, n_projections=2, seed=0)
    with pytest.raises(TypeError, match="k: expected a positive integer"):
        gc.knn(x, k=1.5, n_projections=2, seed=0)
    with pytest.raises(ValueError, match="n_quantiles"):
        gc.embed(x, n_quantiles=0, n_projections=2, seed=0)
    with pytest.raises(ValueError, match="mode"):
        gc.pairwise(x, mode="fast", n_projections=2, seed=0)
    with pytest.raises(ValueError, match="condensed"):
        gc.pairwise(x, x + 1, condensed=True, n_projections=2, seed=0)
    emb = gc.embed(x, n_projections=2, seed=0)
    with pytest.raises(ValueError, match="Y: expected an embedding on the same directions"):
        gc.pairwise(emb, gc.embed(x, n_projections=2, seed=1))
    with pytest.raises(TypeError, match="query: embedded with the settings of the first collection; seed"):
        gc.knn(list(x + 1), emb, k=1, seed=3)
    with pytest.raises(TypeError, match="X: is an Embedding already; seed apply to collections only"):
        gc.pairwise(emb, x, seed=3)
    with pytest.raises(TypeError, match="mode='exact' computes from the measures"):
        gc.pairwise(emb, mode="exact")
    with pytest.raises(ValueError, match="backend"):
        gc.knn(emb, k=1, backend="annoy")
    with pytest.raises(ValueError, match="Y: expected measures of kind 'points' like the first collection, got 'mesh'"):
        gc.pairwise(emb, geom.Measure(x, torch.full(x.shape[:2], 1 / x.shape[1], dtype=x.dtype), kind="mesh",
                                      batched=True, uniform=True))
    with pytest.raises(ValueError, match="X: expected a collection of at least 2"):
        gc.mmd_test(x[:1], x[1:], n_projections=2, seed=0)


def test_nan_is_refused_not_turned_into_zero():
    x = clouds(17, C=3)
    x[1, 3, 0] = math.nan
    with pytest.raises(ValueError, match="finite"):
        gc.embed(x, n_projections=2, seed=0)


def test_overflowing_coordinates_raise_instead_of_returning_inf():
    x = clouds(18, C=3) * 1e160  # SW ~ 1e160: its square leaves float64
    emb = gc.embed(x, n_projections=2, seed=0)
    with pytest.raises(ValueError, match="not finite"):
        gc.pairwise(emb)


def test_import_geom_does_not_import_dask_or_sklearn():
    import subprocess
    import sys

    code = ("import sys, geom, geom.collection; bad = [m for m in ('dask', 'distributed', 'sklearn', 'faiss') "
            "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------------------------- the command


def collection_folder(tmp_path):
    x = clouds(20, C=8, N=30)
    folder = tmp_path / "shapes"
    for k, item in enumerate(x):
        sub = folder / ("a" if k < 4 else "b")
        sub.mkdir(parents=True, exist_ok=True)
        np.save(sub / f"s{k}.npy", item.numpy())
    return folder, x


def test_command_matrix_writes_its_files_and_resumes(tmp_path, capsys):
    import json

    from cli_helpers import assert_user_error, run

    folder, x = collection_folder(tmp_path)
    out = tmp_path / "out"
    rc, stdout, err = run(capsys, "collection", "matrix", folder, "--out", out, "--n-projections", 6,
                          "--block-size", 3)
    assert rc == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["classes"] == ["a", "b"] and summary["n_measures"] == 8
    assert summary["members"][5] == {"name": "b/s5.npy", "class": "b"}
    assert sorted(summary["files"]) == ["blocks", "heatmap.png", "matrix.npy", "mds.png", "summary.json"]
    D = np.load(out / "matrix.npy", allow_pickle=False)
    want = gc.pairwise(gc.embed(list(x.float()), n_projections=6, seed=0), block_size=3).numpy()
    np.testing.assert_array_equal(D, want)
    assert sorted(summary["clustered_order"]) == list(range(8))
    assert (out / "heatmap.png").read_bytes()[:4] == b"\x89PNG" and (out / "mds.png").stat().st_size > 1000
    assert_user_error(*run(capsys, "collection", "matrix", folder, "--out", out), "not empty", "--force")
    for block in sorted((out / "blocks").glob("block-*.npy"))[1::2]:
        block.unlink()
    rc, _, err = run(capsys, "collection", "matrix", folder, "--out", out, "--n-projections", 6, "--block-size", 3,
                     "--resume")
    assert rc == 0, err
    np.testing.assert_array_equal(np.load(out / "matrix.npy", allow_pickle=False), want)
    assert_user_error(*run(capsys, "collection", "matrix", folder, "--out", out, "--n-projections", 7, "--block-size",
                           3, "--resume"), "another computation")
    rc, _, err = run(capsys, "collection", "knn", folder, "--out", out, "--force", "--n-projections", 6, "--k", 2)
    assert rc == 0, err
    assert not (out / "matrix.npy").exists() and (out / "neighbours.npz").exists()  # its own earlier outputs only
    (out / "heatmap.png").write_text("someone else's")
    assert_user_error(*run(capsys, "collection", "matrix", folder, "--out", out, "--force"), "heatmap.png",
                      "no earlier `geom collection` wrote")


def test_command_knn_and_test(tmp_path, capsys):
    import json

    from cli_helpers import run

    folder, x = collection_folder(tmp_path)
    rc, _, err = run(capsys, "collection", "knn", folder, "--out", tmp_path / "k", "--n-projections", 6, "--k", 3)
    assert rc == 0, err
    with np.load(tmp_path / "k" / "neighbours.npz", allow_pickle=False) as f:
        d, i = gc.knn(list(x.float()), k=3, n_projections=6, seed=0)
        np.testing.assert_array_equal(f["indices"], i.numpy())
    rc, _, err = run(capsys, "collection", "test", folder, "--out", tmp_path / "t", "--n-projections", 6,
                     "--classes", "a,b", "--n-permutations", 99)
    assert rc == 0, err
    summary = json.loads((tmp_path / "t" / "summary.json").read_text())
    assert summary["sizes"] == [4, 4] and 0.01 <= summary["pvalue"] <= 1


def test_command_errors_are_one_line(tmp_path, capsys):
    from cli_helpers import assert_user_error, run

    folder, _ = collection_folder(tmp_path)
    assert_user_error(*run(capsys, "collection", "cluster", folder, "--out", tmp_path / "o"), "ACTION", "embed")
    assert_user_error(*run(capsys, "collection", "matrix", tmp_path / "none", "--out", tmp_path / "o"),
                      "SOURCE", "not a folder")
    assert_user_error(*run(capsys, "collection", "test", folder, "--out", tmp_path / "o", "--classes", "a,z"),
                      "--classes", "a, b")
    assert_user_error(*run(capsys, "collection", "test", folder, "--out", tmp_path / "o"), "--classes, --against")
    assert_user_error(*run(capsys, "collection", "knn", folder, "--out", tmp_path / "o", "--k", 8), "k: expected at most 7")
    assert_user_error(*run(capsys, "collection", "embed", folder, "--out", tmp_path / "o", "--resume"), "--resume")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_user_error(*run(capsys, "collection", "embed", empty, "--out", tmp_path / "o"), "no shape files")


def test_pairwise_leaves_the_embedding_as_it_was():
    emb = gc.embed(clouds(21, C=6), n_projections=4, seed=0)
    before = emb.vectors.clone()
    gc.pairwise(emb)
    gc.knn(emb, k=2)
    assert torch.equal(emb.vectors, before)


def test_command_interrupted_matrix_resumes(tmp_path, capsys, monkeypatch):
    from cli_helpers import run

    folder, x = collection_folder(tmp_path)
    out = tmp_path / "out"
    real = _pairwise.block_values
    interrupt_after(monkeypatch, 4)
    rc, _, err = run(capsys, "collection", "matrix", folder, "--out", out, "--n-projections", 6, "--block-size", 2)
    assert rc == 130 and "geom: interrupted" in err
    assert len(list((out / "blocks").glob("block-*.npy"))) == 4 and not (out / "matrix.npy").exists()
    monkeypatch.setattr(_pairwise, "block_values", real)
    rc, _, err = run(capsys, "collection", "matrix", folder, "--out", out, "--n-projections", 6, "--block-size", 2,
                     "--resume")
    assert rc == 0, err
    want = gc.pairwise(gc.embed(list(x.float()), n_projections=6, seed=0), block_size=2).numpy()
    np.testing.assert_array_equal(np.load(out / "matrix.npy", allow_pickle=False), want)


def test_command_embed_writes_arrays_only(tmp_path, capsys):
    from cli_helpers import run

    folder, x = collection_folder(tmp_path)
    rc, _, err = run(capsys, "collection", "embed", folder, "--out", tmp_path / "e", "--n-projections", 5, "--seed", 2)
    assert rc == 0, err
    with np.load(tmp_path / "e" / "embedding.npz", allow_pickle=False) as f:
        emb = gc.embed(list(x.float()), n_projections=5, seed=2)
        np.testing.assert_array_equal(f["vectors"], emb.vectors.numpy())
        np.testing.assert_array_equal(f["labels"], [0, 0, 0, 0, 1, 1, 1, 1])
