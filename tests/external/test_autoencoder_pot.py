"""geom.learn.autoencoder.emd_scores against independent exact solvers: SciPy's assignment solver
(``linear_sum_assignment``, the Hungarian-type Jonker-Volgenant algorithm) and POT's ``ot.emd2`` on the
full clouds with its own ground cost.

For two uniform measures of ``n`` points each the optimal transport plan is a permutation (Birkhoff), so
the EMD, ``min_P sum_ij P_ij |x_i - y_j|`` with ``P`` of marginals ``1/n``, is the mean distance of the
optimal assignment. With ``n_points`` at least the clouds' size the seeded subsample is the whole cloud
in another order, which changes no transport cost.
"""

import numpy as np
import pytest
import torch

from geom.learn.autoencoder import emd_scores

ot = pytest.importorskip("ot")
optimize = pytest.importorskip("scipy.optimize")


def clouds(b, n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, n, 3, generator=g, dtype=torch.float64) * torch.tensor([1.0, 0.5, 0.2], dtype=torch.float64)


@pytest.mark.parametrize("n", [1, 9, 100])
@pytest.mark.parametrize("seed", range(3))
def test_emd_equals_the_optimal_assignment_and_pot_on_the_full_clouds(n, seed):
    x, y = clouds(2, n, seed), clouds(2, n, seed + 100) + 0.25
    got = emd_scores(x, y, n_points=n, seed=seed).numpy()
    for i in range(2):
        a, b = x[i].numpy(), y[i].numpy()
        d = np.linalg.norm(a[:, None] - b[None], axis=-1)  # (n, n) Euclidean
        rows, cols = optimize.linear_sum_assignment(d)
        assert got[i] == pytest.approx(d[rows, cols].mean(), rel=1e-10, abs=1e-12)
        w = np.full(n, 1.0 / n)
        assert got[i] == pytest.approx(ot.emd2(w, w, ot.dist(a, b, metric="euclidean")), rel=1e-10, abs=1e-12)


def test_subsamples_are_the_documented_seeded_subsets():
    """Clouds larger than ``n_points``: item ``i``'s score is the exact EMD of the subsets drawn without
    replacement by ``numpy.random.default_rng((seed, i))``, first from ``x[i]``, then from ``y[i]``."""
    x, y = clouds(3, 300, 7), clouds(3, 200, 8) + torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    got = emd_scores(x, y, n_points=64, seed=3).numpy()
    for i in range(3):
        rng = np.random.default_rng((3, i))
        a = x[i].numpy()[rng.choice(300, 64, replace=False)]
        b = y[i].numpy()[rng.choice(200, 64, replace=False)]
        d = np.linalg.norm(a[:, None] - b[None], axis=-1)
        rows, cols = optimize.linear_sum_assignment(d)
        assert got[i] == pytest.approx(d[rows, cols].mean(), rel=1e-10)
        assert got[i] >= np.linalg.norm(a.mean(0) - b.mean(0)) - 1e-12  # Jensen: the EMD bounds the mean shift
