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
