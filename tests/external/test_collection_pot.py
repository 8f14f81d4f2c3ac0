"""geom.collection against POT: ``ot.sliced_wasserstein_distance`` with the same projections.

POT takes Euclidean projections as a ``(d, L)`` array (geom's directions transposed) and returns
``SW_p = (mean_l W_p^p)^(1/p)``, geom's convention.
"""

import numpy as np
import pytest
import torch

ot = pytest.importorskip("ot")

import geom  # noqa: E402
import geom.collection as gc  # noqa: E402


def pot_matrix(xs, ws, directions, p):
    P = directions.T.numpy()  # (d, L)
    C = len(xs)
    out = np.zeros((C, C))
    for i in range(C):
        for j in range(C):
            out[i, j] = ot.sliced_wasserstein_distance(xs[i], xs[j], ws[i], ws[j], p=p, projections=P)
    return out


@pytest.mark.parametrize("p", (1.0, 2.0))
def test_uniform_matrix_equals_pot(p):
    rng = np.random.default_rng(0)
    xs = [rng.normal(size=(50, 3)) * (1 + k / 4) + k / 3 for k in range(6)]
    emb = gc.embed([torch.from_numpy(x) for x in xs], n_projections=20, seed=1, p=p)
    ref = pot_matrix(xs, [None] * 6, emb.directions, p)
    np.testing.assert_allclose(gc.pairwise(emb).numpy(), ref, rtol=1e-10, atol=1e-12)


def test_weighted_matrix_exact_mode_equals_pot_and_embedding_is_within_its_error():
    rng = np.random.default_rng(1)
    sizes = (12, 30, 7, 21)
    xs = [rng.normal(size=(n, 2)) + k for k, n in enumerate(sizes)]
    ws = [rng.random(n) + 0.05 for n in sizes]
    ws = [w / w.sum() for w in ws]
    items = [geom.measure(torch.from_numpy(x), weights=torch.from_numpy(w)) for x, w in zip(xs, ws)]
    emb = gc.embed(items, n_projections=10, seed=2, n_quantiles=256)
    ref = pot_matrix(xs, ws, emb.directions, 2.0)
    np.testing.assert_allclose(gc.pairwise(items, mode="exact", directions=emb.directions).numpy(), ref, rtol=1e-10,
                               atol=1e-12)
    bound = (emb.error[:, None] + emb.error[None]).numpy()
    assert (np.abs(gc.pairwise(emb).numpy() - ref) <= bound + 1e-12).all()
