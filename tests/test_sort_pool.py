"""The sort pool: its task runner (BLAS on one thread while tasks run, put back afterwards, also when
several threads run geom at once) and the float64-key argsort its tasks use."""

import threading

import numpy as np
import pytest
import torch
from threadpoolctl import ThreadpoolController, threadpool_limits

import geom
from geom._ot1d import pool as _ot1d


def blas_threads():
    return [m["num_threads"] for m in ThreadpoolController().info() if m["user_api"] == "blas"]


@pytest.fixture
def two_blas_threads():
    if not blas_threads():
        pytest.skip("numpy has no BLAS that threadpoolctl can see")
    with threadpool_limits(limits=2, user_api="blas"):
        yield


def test_tasks_see_one_blas_thread_and_the_setting_comes_back(two_blas_threads):
    seen = []
    _ot1d.run_tasks(lambda k: seen.append(blas_threads()), [(k,) for k in range(8)], elements=1 << 20)
    assert seen and all(s == [1] * len(s) for s in seen)
    assert blas_threads() == [2] * len(blas_threads())
    seen.clear()  # small work runs here, with BLAS held too (idle BLAS threads would spin next to torch's)
    _ot1d.run_tasks(lambda k: seen.append(blas_threads()), [(k,) for k in range(8)], elements=10)
    assert seen and all(s == [1] * len(s) for s in seen)
    assert blas_threads() == [2] * len(blas_threads())


def test_concurrent_callers_leave_blas_as_they_found_it(two_blas_threads):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(20000, 3, generator=g), torch.randn(20000, 3, generator=g)
    expected = geom.sliced_wasserstein(x, y, n_projections=16, seed=1)
    results, errors = [], []

    def work():
        try:
            for _ in range(5):
                results.append(geom.sliced_wasserstein(x, y, n_projections=16, seed=1))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 15 and all(torch.equal(r, expected) for r in results)
    assert blas_threads() == [2] * len(blas_threads())
    assert _ot1d._BLAS_USERS == 0


@pytest.mark.parametrize("n", [1, 7, 1000, 70_000])
def test_argsort_inplace_equals_a_stable_argsort(n):
    # float64 keys with the index in their low mantissa bits: the values and the permutation of a
    # stable argsort, on rows with many ties, negatives, zeros, subnormals and extreme magnitudes.
    rng = np.random.default_rng(n)
    rows = rng.standard_normal((3, n)).astype(np.float32)
    rows[1] = rng.integers(-3, 4, n)  # mostly ties, negative ones included
    special = np.array([0.0, 1e-45, -1e-45, 3e38, -3e38, 1e-38, -2.5, 2.5], dtype=np.float32)
    rows[2, : min(n, 8)] = special[: min(n, 8)]
    rows[2, 8 : min(n, 40)] = -2.5
    values, perm = rows.copy(), np.empty(rows.shape, np.int64)
    _ot1d._argsort_inplace(values, perm, _ot1d._Workspace())
    expected = np.argsort(rows, axis=-1, kind="stable")
    np.testing.assert_array_equal(perm, expected)
    np.testing.assert_array_equal(values, np.take_along_axis(rows, expected, axis=-1))


@pytest.mark.parametrize("n", [1, 5000])
def test_argsort_inplace_without_values_leaves_the_rows(n):
    rows = np.random.default_rng(n).standard_normal((4, n)).astype(np.float32)
    values, perm = rows.copy(), np.empty(rows.shape, np.int64)
    _ot1d._argsort_inplace(values, perm, _ot1d._Workspace(), write_values=False)
    np.testing.assert_array_equal(perm, np.argsort(rows, axis=-1, kind="stable"))
    np.testing.assert_array_equal(values, rows)


def test_argsort_inplace_puts_negative_zero_with_zero():
    row = np.array([[0.0, -0.0, 1.0, -0.0, -1.0, 0.0]], dtype=np.float32)
    values, perm = row.copy(), np.empty(row.shape, np.int64)
    _ot1d._argsort_inplace(values, perm, _ot1d._Workspace())
    assert perm[0].tolist()[0] == 4 and perm[0].tolist()[-1] == 2 and sorted(perm[0].tolist()) == list(range(6))
    np.testing.assert_array_equal(values, row[:, perm[0]])  # the signs of the zeros travel with them
    assert (values[0, 1:5] == 0).all()


def _pairing_reference(u, v, p):
    """Uniform pairing by a stable argsort in float64: cost mean |d|^p and gradients in the unsorted values."""
    pu, pv = np.argsort(u, axis=1, kind="stable"), np.argsort(v, axis=1, kind="stable")
    d = np.take_along_axis(u, pu, 1).astype(np.float64) - np.take_along_axis(v, pv, 1)
    n = u.shape[1]
    slope = p * np.abs(d) ** (p - 1) * np.sign(d) / n
    gu, gv = np.empty(u.shape), np.empty(v.shape)
    np.put_along_axis(gu, pu, slope, 1)
    np.put_along_axis(gv, pv, -slope, 1)
    return (np.abs(d) ** p).mean(1), gu, gv


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("want", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("p", [1.0, 1.5, 2.0, 3.0])
def test_compiled_pairing_equals_a_stable_argsort_pairing(dtype, want, p):
    from geom._ot1d import line

    rng = np.random.default_rng(7)
    u = rng.integers(-6, 6, (5, 300)).astype(dtype) / 4  # many ties and duplicates
    v = rng.standard_normal((5, 300)).astype(dtype)
    v[:, :40] = 0.0
    v[:, 40:60] = -0.0
    cost_ref, gu_ref, gv_ref = _pairing_reference(u, v, p)
    grads = [np.empty(u.shape, dtype) if w else None for w in want]
    cost = np.empty(5, dtype)
    scale = line._pair_uniform(u.copy(), v.copy(), p, cost, *grads, _ot1d._Workspace())
    assert np.array_equal(scale, np.ones(5))
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(cost, cost_ref, rtol=tol)
    for g, ref in zip(grads, (gu_ref, gv_ref)):
        if g is not None:  # ties pair in index order on both sides, as the stable argsort does
            np.testing.assert_allclose(g, ref, rtol=tol, atol=tol * np.abs(ref).max())


def test_compiled_pairing_rescues_rows_whose_plain_cost_leaves_the_dtype():
    from geom._ot1d import line

    rng = np.random.default_rng(3)
    base = rng.standard_normal((3, 64))
    u = np.stack([base[0] * 1e30, base[1] * 1e-30, base[2]]).astype(np.float32)  # p = 2 overflows, underflows, fine
    v = np.zeros_like(u)
    gu = np.empty(u.shape, np.float32)
    cost = np.empty(3, np.float32)
    scale = line._pair_uniform(u.copy(), v.copy(), 2.0, cost, gu, None, _ot1d._Workspace())
    top = np.abs(u.astype(np.float64)).max(1)
    np.testing.assert_allclose(scale, [top[0], top[1], 1.0], rtol=1e-7)
    ref = (u.astype(np.float64) ** 2).mean(1)
    np.testing.assert_allclose(cost * scale**2, ref, rtol=1e-5)  # W_2^2 = scale^2 cost in every row
    expected = 2 * u.astype(np.float64) / 64  # d W_2^2 / du = scale^2 d cost / du
    err = np.abs(gu * scale[:, None] ** 2 - expected).max(1) / np.abs(expected).max(1)
    assert (err < 1e-5).all(), err


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("d", [3, 40])
def test_argsort_projections_orders_every_row_in_either_layout(monkeypatch, d, dtype):
    """Each returned row is a permutation that sorts the projections (recomputed in float64) up to the
    data's rounding, with per-task products below ``WIDE`` dimensions and blocks of directions from
    there on, both forced here."""
    g = torch.Generator().manual_seed(7)
    x = (torch.randn(2, 300, d, generator=g, dtype=torch.float64) + 5.0).to(dtype)  # off the origin
    theta = torch.nn.functional.normalize(torch.randn(9, d, generator=g, dtype=torch.float64), dim=1).to(dtype)
    u = torch.einsum("ld,bnd->bln", theta.double(), x.double())  # (B, L, N)
    tol = (1e-5 if dtype == torch.float32 else 1e-13) * float(x.abs().max()) * d ** 0.5
    for wide in (1, 10**9):
        monkeypatch.setattr(_ot1d, "WIDE", wide)
        perm = _ot1d.argsort_projections(x, theta)
        assert torch.equal(perm.sort(-1).values, torch.arange(300).expand_as(perm))
        assert float(u.gather(-1, perm).diff(dim=-1).min()) >= -tol


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("equal", ["x", "y", "both"])
@pytest.mark.parametrize("want", [(False, False), (True, False), (False, True), (True, True)])
def test_merge_of_equal_weights_given_as_none_equals_the_merge_of_the_weights(dtype, equal, want):
    """A side whose weights are all equal goes to the merge as None: its levels are (i + 1) / n and, without
    a gradient, its values are sorted alone. Cost and gradients are those of the merge of the weights."""
    from geom._ot1d import line

    rng = np.random.default_rng(11)
    N, M = 240, 170
    u = rng.integers(-5, 5, (4, N)).astype(dtype) / 4  # ties within and across the sides
    v = rng.integers(-5, 5, (4, M)).astype(dtype) / 4
    a, b = np.full(N, 1.0 / N), np.full(M, 1.0 / M)

    def merge(wa, wb):
        grads = [np.empty(u.shape, dtype) if want[0] else None, np.empty(v.shape, dtype) if want[1] else None,
                 None, None]
        cost = np.empty(4, dtype)
        scale = line._merge_quantiles(u.copy(), v.copy(), wa, wb, 2.0, cost, grads, _ot1d._Workspace())
        return cost, scale, grads[:2]

    ref_cost, ref_scale, ref_grads = merge(a, b)
    cost, scale, grads = merge(None if equal in ("x", "both") else a, None if equal in ("y", "both") else b)
    tol = 1e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(cost, ref_cost, rtol=tol)
    np.testing.assert_array_equal(scale, ref_scale)
    # the levels differ by the rounding of a running sum, up to N ulps: a piece's mass, and the gradient
    # of a small piece, move by about N eps times the largest gradient's slope
    atol = max(tol, N * np.finfo(np.float64).eps * N)
    for g, ref in zip(grads, ref_grads):
        if g is not None:
            np.testing.assert_allclose(g, ref, rtol=tol, atol=atol * np.abs(ref).max())
