"""``"sphere"``: spherical sliced Wasserstein (Bonet et al., ICLR 2023)."""

import math

import pytest
import torch

import geom
import geom.testing
from geom._ot1d.circle import circle_costs
from geom_plugins.sphere import (
    Sphere,
    directions_to_frames,
    frames_to_directions,
    sliced_wasserstein_sphere_uniform,
)


def unit(n, d, seed, shift=0.0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=dtype) + shift
    return x / x.norm(dim=1, keepdim=True)


def haar_frames(L, d, seed):
    q, r = torch.linalg.qr(torch.randn(L, d, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r, dim1=1, dim2=2))[:, None, :]


def test_contract():
    geom.testing.check_representation(Sphere, unit(40, 3, 0).requires_grad_())
    geom.testing.check_representation(Sphere, 3 * unit(20, 5, 1), normalize=True)


def test_frames_are_native_directions_and_give_the_projection_angles():
    U = haar_frames(6, 4, 0)
    x = unit(5, 4, 1)
    t = Sphere().project(x[None], U)[0]  # (L, N)
    c = torch.einsum("nd,ldk->lnk", x, U)
    expected = torch.remainder(torch.atan2(c[..., 1], c[..., 0]) / (2 * math.pi), 1.0)
    torch.testing.assert_close(t, expected)
    assert bool((t >= 0).all() and (t < 1).all())
    # given frames come back as they are, in the native shape
    r = geom.sliced_wasserstein(geom.measure(x, kind="sphere"), geom.measure(unit(7, 4, 2), kind="sphere"),
                                directions=U, return_result=True)
    assert r.directions.shape == (6, 4, 2) and torch.equal(r.directions, U)
    drawn = geom.sliced_wasserstein(geom.measure(x, kind="sphere"), geom.measure(unit(7, 4, 2), kind="sphere"),
                                    n_projections=9, seed=0, return_result=True).directions
    assert drawn.shape == (9, 4, 2)
    torch.testing.assert_close(drawn.transpose(1, 2) @ drawn, torch.eye(2, dtype=drawn.dtype).expand(9, 2, 2))


def test_the_deprecated_converters_still_work_and_warn():
    U = haar_frames(6, 4, 0)
    with pytest.warns(DeprecationWarning, match="frames_to_directions"):
        assert torch.equal(frames_to_directions(U), U)  # frames are the directions now
    rows = U.reshape(6, -1) / math.sqrt(2.0)  # the row encoding of the first release
    with pytest.warns(DeprecationWarning, match="directions_to_frames"):
        torch.testing.assert_close(directions_to_frames(rows), U)


def test_uniform_frames_are_haar():
    """E[U_1 U_1^T] = E[U_2 U_2^T] = I / d and E[U_1 U_2^T] = 0 for Haar frames (not for raw columns)."""
    d, L = 3, 20000
    U = geom.Frames(d).sample(L, torch.Generator().manual_seed(0))
    assert torch.allclose(U.transpose(1, 2) @ U, torch.eye(2, dtype=U.dtype).expand(L, 2, 2), atol=1e-12)
    for a, b, target in ((0, 0, torch.eye(d) / d), (1, 1, torch.eye(d) / d), (0, 1, torch.zeros(d, d))):
        m = torch.einsum("li,lj->lij", U[..., a], U[..., b])  # (L, d, d)
        err = (m.mean(0) - target.double()).abs() / (m.std(0) / math.sqrt(L))
        assert err.max() < 5


def test_ssw_is_invariant_to_a_common_rotation():
    x, y = unit(30, 4, 1), unit(20, 4, 2, shift=1.0)
    w = torch.rand(20, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    O = torch.linalg.qr(torch.randn(4, 4, generator=torch.Generator().manual_seed(4), dtype=torch.float64))[0]
    U = haar_frames(16, 4, 5)
    for p in (1, 2):
        # Exactly, with rotated frames: <O x, U> = <x, O^T U>.
        a = geom.sliced_wasserstein(geom.measure(x @ O.T, kind="sphere"),
                                    geom.measure(y @ O.T, kind="sphere", weights=w),
                                    p=p, directions=U)
        b = geom.sliced_wasserstein(geom.measure(x, kind="sphere"), geom.measure(y, kind="sphere", weights=w),
                                    p=p, directions=O.T @ U)
        assert a.item() == pytest.approx(b.item(), rel=1e-10)
        # In law, with independent random frames: the estimates agree within their standard errors.
        r1 = geom.sliced_wasserstein(geom.measure(x @ O.T, kind="sphere"),
                                     geom.measure(y @ O.T, kind="sphere", weights=w),
                                     p=p, n_projections=2000, seed=6, return_result=True)
        r2 = geom.sliced_wasserstein(geom.measure(x, kind="sphere"), geom.measure(y, kind="sphere", weights=w),
                                     p=p, n_projections=2000, seed=7, return_result=True)
        assert abs(r1.value - r2.value).item() < 4 * math.hypot(r1.stderr.item(), r2.stderr.item())


def test_ssw_of_a_measure_and_its_rotation_is_positive_and_symmetric():
    x = unit(25, 3, 8)
    y = unit(40, 3, 9, shift=0.8)
    rows = (haar_frames(32, 3, 10))
    xy = geom.sliced_wasserstein(geom.measure(x, kind="sphere"), geom.measure(y, kind="sphere"), directions=rows)
    yx = geom.sliced_wasserstein(geom.measure(y, kind="sphere"), geom.measure(x, kind="sphere"), directions=rows)
    assert xy.item() > 0.05
    assert xy.item() == pytest.approx(yx.item(), rel=1e-10)


def test_gradient_with_respect_to_points_matches_finite_differences():
    x = unit(12, 3, 11).requires_grad_()
    y = unit(9, 3, 12, shift=0.5)
    rows = (haar_frames(8, 3, 13))

    def f(pts):
        return geom.sliced_wasserstein(geom.measure(pts, kind="sphere", normalize=True),
                                       geom.measure(y, kind="sphere"), directions=rows, p=2)

    (g,) = torch.autograd.grad(f(x), x)
    eps = 1e-6
    for i, k in ((0, 0), (3, 1), (7, 2), (11, 0)):
        e = torch.zeros_like(x)
        e[i, k] = eps
        fd = (f(x.detach() + e) - f(x.detach() - e)).item() / (2 * eps)
        assert g[i, k].item() == pytest.approx(fd, rel=1e-5, abs=1e-8)


def test_uniform_closed_form_equals_a_fine_grid():
    """Weighted: W_2^2 to Unif(S^1) per slice equals W_2^2 to a fine uniform grid on the circle."""
    x = unit(15, 3, 14, shift=0.6)
    w = torch.rand(15, generator=torch.Generator().manual_seed(15), dtype=torch.float64)
    rows = (haar_frames(5, 3, 16))
    mu = Sphere().build(x, weights=w)
    mu.kind = "sphere"
    res = sliced_wasserstein_sphere_uniform(mu, directions=rows, return_result=True)
    K = 4000
    grid = ((torch.arange(K, dtype=torch.float64) + 0.5) / K).expand(1, 5, K)
    t = Sphere().project(x[None], rows)  # (1, L, N)
    ref = circle_costs(t, grid, (w / w.sum())[None], torch.full((1, K), 1.0 / K, dtype=torch.float64), 2.0)[0]
    torch.testing.assert_close(res.costs, ref, rtol=0, atol=1e-7)
    assert res.value.item() == pytest.approx(ref.mean().sqrt().item(), abs=1e-7)


def test_uniform_sample_is_near_zero_and_a_cap_is_not():
    mu = unit(3000, 3, 17)
    cap = unit(300, 3, 18, shift=3.0)
    far = sliced_wasserstein_sphere_uniform(cap, n_projections=64, seed=0)
    near = sliced_wasserstein_sphere_uniform(mu, n_projections=64, seed=0)
    assert near.item() < 0.02 < 0.1 < far.item()


@pytest.mark.parametrize("d", (3, 5))
def test_qmc_gaussian_point_set_agrees_with_monte_carlo(d):
    x, y = unit(50, d, 19), unit(40, d, 20, shift=0.7)
    mu, nu = geom.measure(x, kind="sphere"), geom.measure(y, kind="sphere")
    mc = geom.sliced_wasserstein(mu, nu, n_projections=4000, seed=0, return_result=True)
    qmc = geom.sliced_wasserstein(mu, nu, n_projections=256, seed=1, scheme="qmc", point_set="gaussian",
                                  n_randomizations=8, return_result=True)
    assert abs(qmc.value - mc.value).item() < 4 * math.hypot(mc.stderr.item(), qmc.stderr.item())


def test_normalize_option_projects_onto_the_sphere():
    raw = torch.randn(10, 3, generator=torch.Generator().manual_seed(21), dtype=torch.float64) * 5
    mu = geom.measure(raw, kind="sphere", normalize=True)
    torch.testing.assert_close(mu.support[0], raw / raw.norm(dim=1, keepdim=True))


def test_bad_input():
    x = unit(6, 3, 22)
    bad = x.clone()
    bad[4] *= 1.01
    with pytest.raises(ValueError, match=r"unit sphere.*index \(4,\).*normalize=True"):
        geom.measure(bad, kind="sphere")
    with pytest.raises(ValueError, match=r"index \(1, 4\)"):
        geom.measure(torch.stack([x, bad]), kind="sphere")
    zero = x.clone()
    zero[2] = 0
    with pytest.raises(ValueError, match=r"zero vector at index \(2,\)"):
        geom.measure(zero, kind="sphere", normalize=True)
    with pytest.raises(ValueError, match="d >= 2"):
        geom.measure(torch.ones(4, 1), kind="sphere")
    with pytest.raises(TypeError, match="normalize"):
        geom.measure(x, kind="sphere", normalize="yes")
    with pytest.raises(TypeError, match="unknown options"):
        geom.measure(x, kind="sphere", radius=2)
    with pytest.raises(ValueError, match="finite"):
        geom.measure(torch.full((3, 3), float("nan")), kind="sphere")
    bad = torch.stack([haar_frames(1, 3, 0)[0], torch.ones(3, 2, dtype=torch.float64)])
    with pytest.raises(ValueError, match=r"directions: expected orthonormal frames \(U\^T U = I\), got frame 1"):
        geom.sliced_wasserstein(geom.measure(x, kind="sphere"), geom.measure(x, kind="sphere"), directions=bad)
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match=r"frames: expected shape \(L, d, 2\)"):
        frames_to_directions(torch.ones(3, 3))
    with pytest.raises(ValueError, match=r"directions: expected shape \(L, 3, 2\) with L >= 1 \(orthonormal frames\)"):
        geom.sliced_wasserstein(geom.measure(x, kind="sphere"), geom.measure(x, kind="sphere"),
                                directions=torch.eye(3))
    with pytest.raises(ValueError, match=r"directions: expected shape \(L, 3, 2\)"):  # the rows of the first release
        geom.sliced_wasserstein(geom.measure(x, kind="sphere"), geom.measure(x, kind="sphere"),
                                directions=torch.tensor([[1.0, 1.0, 0, 0, 0, 0]]) / math.sqrt(2))
    with pytest.raises(ValueError, match="p = 2"):
        sliced_wasserstein_sphere_uniform(x, p=1)
    with pytest.raises(ValueError, match="same kind"):
        geom.sliced_wasserstein(geom.measure(x, kind="sphere"), geom.measure(x))
