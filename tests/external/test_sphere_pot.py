"""Cross-checks of the circle solver and spherical SW against POT (``import ot``).

POT's ``wasserstein_circle`` / ``binary_search_circle`` return ``W_p^p`` (not ``W_p``), found by a
binary search stopped at ``eps=1e-6``; ``ot.emd2`` with the circle cost is exact.
"""

import numpy as np
import pytest
import torch

ot = pytest.importorskip("ot")

import geom  # noqa: E402
from geom._ot1d.circle import circle_costs  # noqa: E402
from geom_plugins.sphere import sliced_wasserstein_sphere_uniform  # noqa: E402


def on_sphere(rng, n, d, shift=0.0):
    x = rng.normal(size=(n, d)) + shift
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("p", (1.0, 1.5, 2.0))
def test_circle_costs_equal_pot(p):
    rng = np.random.default_rng(int(4 * p))
    L, N, M = 6, 37, 23
    u, v = rng.random((L, N)), rng.random((L, M)) ** 2
    a, b = rng.random(N), rng.random(M)
    a, b = a / a.sum(), b / b.sum()
    ours = circle_costs(torch.tensor(u)[None], torch.tensor(v)[None], torch.tensor(a)[None], torch.tensor(b)[None],
                        p)[0].numpy()
    ref = ot.wasserstein_circle(u.T, v.T, a, b, p=p)  # (L,) W_p^p
    np.testing.assert_allclose(ours, ot.binary_search_circle(u.T, v.T, a, b, p=p), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-9)
    for k in range(L):  # exact oracle: the transport LP with the circle cost
        d = np.abs(u[k][:, None] - v[k][None, :])
        C = np.minimum(d, 1 - d) ** p
        assert ours[k] == pytest.approx(ot.emd2(a, b, C), rel=1e-10, abs=1e-13)


@pytest.mark.parametrize("p", (1, 2))
def test_spherical_sw_equals_pot_with_the_same_frames(p):
    rng = np.random.default_rng(p)
    d = 4
    x, y = on_sphere(rng, 30, d), on_sphere(rng, 17, d, shift=1.0)
    a, b = rng.random(30), rng.random(17)
    a, b = a / a.sum(), b / b.sum()
    U = ot.sliced.get_projections_sphere(d, 40, seed=3)  # (L, d, 2) Haar frames
    ref = ot.sliced_wasserstein_sphere(x, y, a, b, n_projections=40, projections=U, p=p)  # POT reshapes by n_projections
    mu = geom.measure(torch.tensor(x), kind="sphere", weights=torch.tensor(a))
    nu = geom.measure(torch.tensor(y), kind="sphere", weights=torch.tensor(b))
    ours = geom.sliced_wasserstein(mu, nu, p=p, directions=torch.tensor(U))  # POT's projections, native
    assert ours.item() == pytest.approx(float(ref), rel=1e-6)


def test_uniform_closed_form_equals_pot():
    rng = np.random.default_rng(5)
    x = on_sphere(rng, 200, 3, shift=0.5)
    U = ot.sliced.get_projections_sphere(3, 50, seed=6)
    ref = ot.sliced_wasserstein_sphere_unif(x, projections=U)  # SSW_2 itself (root of the mean of W_2^2)
    ours = sliced_wasserstein_sphere_uniform(torch.tensor(x), directions=torch.tensor(U))  # POT's projections, native
    assert ours.item() == pytest.approx(float(ref), rel=1e-10)
