"""The sort pool's task runner: BLAS on one thread inside the pool, and put back afterwards, also when
several threads run geom at once."""

import threading

import pytest
import torch
from threadpoolctl import ThreadpoolController, threadpool_limits

import geom
from geom import _ot1d


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
    seen.clear()  # small work runs here, with BLAS untouched
    _ot1d.run_tasks(lambda k: seen.append(blas_threads()), [(k,) for k in range(8)], elements=10)
    assert all(s == [2] * len(s) for s in seen)


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
