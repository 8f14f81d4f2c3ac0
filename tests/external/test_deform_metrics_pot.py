"""geom.deform.metrics.exact_w2 against POT's exact network-simplex solver (``ot.emd2``).

Both solve the same linear programme, the optimal transport between the uniform empirical measures
of the two meshes' surface samples (``geom.deform.metrics.surface_samples``, the same seed for both)
with the squared Euclidean cost; POT returns ``W_2^2``. For equal sizes the optimum is attained at a
permutation (Birkhoff), which is what the assignment solver searches.
"""

import numpy as np
import pytest

from geom.deform.metrics import exact_w2, surface_samples

ot = pytest.importorskip("ot")


def blob(rng, n_vertices=12, n_faces=20):
    v = rng.standard_normal((n_vertices, 3)) * rng.uniform(0.5, 2, 3) + rng.normal(0, 1, 3)
    return v, np.array([rng.choice(n_vertices, 3, replace=False) for _ in range(n_faces)])


@pytest.mark.parametrize("n", [1, 7, 64, 300])
@pytest.mark.parametrize("seed", range(3))
def test_exact_w2_matches_pot(n, seed):
    rng = np.random.default_rng(seed)
    a, b = blob(rng), blob(rng)
    x, _ = surface_samples(a, n, seed=seed)
    y, _ = surface_samples(b, n, seed=seed)
    w = np.full(n, 1.0 / n)
    expected = np.sqrt(ot.emd2(w, w, ot.dist(x, y, metric="sqeuclidean")))
    assert exact_w2(a, b, n_samples=n, seed=seed) == pytest.approx(expected, rel=1e-9)
