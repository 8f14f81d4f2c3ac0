"""Sliced energy distance (Riesz kernel r = 1) and the sliced MMD flow: geom.mmd."""

from __future__ import annotations

import math

import pytest
import torch

import geom
from geom.flows import FlowResult
from geom.flows import mmd_flow
from geom.mmd import energy_slicing_constant, sliced_energy_distance


def pairwise_energy(u, v, a, b):
    """O(N^2) 1-D energy distance ``2 sum a b |u - v| - sum a a |u - u'| - sum b b |v - v'|``."""
    return (2 * (a[:, None] * b[None] * (u[:, None] - v[None]).abs()).sum()
            - (a[:, None] * a[None] * (u[:, None] - u[None]).abs()).sum()
            - (b[:, None] * b[None] * (v[:, None] - v[None]).abs()).sum())


def sliced_pairwise(x, y, a, b, theta):
    """``c_d`` times the mean over the rows of ``theta`` of the pairwise 1-D energy of the projections."""
    c = energy_slicing_constant(x.shape[1])
    return c * torch.stack([pairwise_energy(x @ t, y @ t, a, b) for t in theta]).mean()


def unit_rows(L, d, g, dtype=torch.float64):
    theta = torch.randn(L, d, generator=g, dtype=dtype)
    return theta / theta.norm(dim=1, keepdim=True)


def weighted_problem(g, n=23, m=17, d=3, ties=False):
    if ties:  # integer coordinates from a small range: many equal projections, x and y share values
        x = torch.randint(-2, 3, (n, d), generator=g).double()
        y = torch.randint(-2, 3, (m, d), generator=g).double()
    else:
        x, y = torch.randn(n, d, generator=g, dtype=torch.float64), torch.randn(m, d, generator=g, dtype=torch.float64) + 0.5
    a, b = torch.rand(n, generator=g, dtype=torch.float64) + 0.1, torch.rand(m, generator=g, dtype=torch.float64) + 0.1
    return x, y, a / a.sum(), b / b.sum()


@pytest.mark.parametrize("ties", [False, True])
def test_one_dimensional_value_equals_pairwise(ties):
    g = torch.Generator().manual_seed(1)
    x, y, a, b = weighted_problem(g, d=1, ties=ties)
    got = sliced_energy_distance(geom.measure(x, weights=a), geom.measure(y, weights=b), directions=[[1.0]])
    assert energy_slicing_constant(1) == 1.0
    torch.testing.assert_close(got, pairwise_energy(x[:, 0], y[:, 0], a, b), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("ties", [False, True])
def test_sliced_value_and_gradients_equal_pairwise_autograd(ties):
    g = torch.Generator().manual_seed(2)
    x, y, a, b = weighted_problem(g, ties=ties)
    theta = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.6, 0.8]], dtype=torch.float64) if ties else unit_rows(5, 3, g)
    leaves = [t.clone().requires_grad_() for t in (x, y, a, b)]
    res = sliced_energy_distance(geom.measure(leaves[0], weights=leaves[2]), geom.measure(leaves[1], weights=leaves[3]),
                                 directions=theta, return_result=True)
    got = torch.autograd.grad(res.value, leaves)
    ref_leaves = [t.clone().requires_grad_() for t in (x, y, a, b)]
    an, bn = ref_leaves[2] / ref_leaves[2].sum(), ref_leaves[3] / ref_leaves[3].sum()
    ref = sliced_pairwise(ref_leaves[0], ref_leaves[1], an, bn, theta)
    expected = torch.autograd.grad(ref, ref_leaves)
    torch.testing.assert_close(res.value, ref, rtol=1e-12, atol=1e-12)
    assert res.costs.shape == (theta.shape[0],)
    torch.testing.assert_close(res.costs.mean(), ref, rtol=1e-12, atol=1e-12)
    for name, u, v in zip("xyab", got, expected):
        torch.testing.assert_close(u, v, rtol=1e-10, atol=1e-12, msg=f"gradient w.r.t. {name}")


def test_gradient_equals_finite_differences():
    g = torch.Generator().manual_seed(3)
    x, y, a, b = weighted_problem(g, n=9, m=6)
    theta = unit_rows(4, 3, g)

    def f(x, y, a, b):
        return sliced_energy_distance(geom.measure(x, weights=a), geom.measure(y, weights=b), directions=theta)

    assert torch.autograd.gradcheck(f, [t.clone().requires_grad_() for t in (x, y, a, b)], eps=1e-6, atol=1e-7)


def test_slicing_constant_closed_forms_and_monte_carlo():
    assert energy_slicing_constant(1) == pytest.approx(1.0, abs=1e-14)
    assert energy_slicing_constant(2) == pytest.approx(math.pi / 2, rel=1e-14)  # E|cos| = 2 / pi
    assert energy_slicing_constant(3) == pytest.approx(2.0, rel=1e-14)  # E|t| = 1/2 on S^2
    g = torch.Generator().manual_seed(4)
    for d in (2, 3, 7, 50):
        z = torch.randn(d, generator=g, dtype=torch.float64)
        samples = energy_slicing_constant(d) * (unit_rows(200_000, d, g) @ z).abs()  # (L,)
        err = samples.std() / math.sqrt(samples.numel())
        assert abs(samples.mean() - z.norm()) < 4 * err, d


def test_unbiased_against_core_energy_distance():
    g = torch.Generator().manual_seed(5)
    x, y, a, b = weighted_problem(g, n=40, m=31)
    mu, nu = geom.measure(x, weights=a), geom.measure(y, weights=b)
    exact = geom.energy_distance(mu, nu, backend="dense")
    runs = torch.stack([sliced_energy_distance(mu, nu, n_projections=16, seed=s) for s in range(400)])
    assert abs(runs.mean() - exact) < 4 * runs.std() / math.sqrt(runs.numel())


def test_standard_error_matches_spread_over_seeds():
    g = torch.Generator().manual_seed(6)
    x, y = torch.randn(60, 3, generator=g), torch.randn(50, 3, generator=g) * 0.7 + 0.3
    runs = [sliced_energy_distance(x, y, n_projections=64, seed=s, return_result=True) for s in range(200)]
    spread = torch.stack([r.value for r in runs]).std()
    reported = torch.stack([r.stderr for r in runs]).mean()
    assert 0.8 < float(reported / spread) < 1.25


def test_batches_equal_item_by_item_and_padding():
    g = torch.Generator().manual_seed(7)
    x, y = torch.randn(3, 20, 2, generator=g), torch.randn(3, 15, 2, generator=g)
    theta = unit_rows(8, 2, g, torch.float32)
    batched = sliced_energy_distance(x, y, directions=theta)
    assert batched.shape == (3,)
    for k in range(3):
        torch.testing.assert_close(batched[k], sliced_energy_distance(x[k], y[k], directions=theta))
    # zero-weight padding changes nothing
    padded = torch.cat([x[0], torch.full((4, 2), 100.0)])
    w = torch.cat([torch.ones(20), torch.zeros(4)])
    torch.testing.assert_close(sliced_energy_distance(geom.measure(padded, weights=w), y[0], directions=theta),
                               batched[0])


def test_device_dtype_and_grad(device):
    g = torch.Generator().manual_seed(8)
    x, y = torch.randn(30, 3, generator=g).to(device).requires_grad_(), torch.randn(25, 3, generator=g).to(device)
    value = sliced_energy_distance(x, y, n_projections=32, seed=0)
    assert value.device.type == torch.device(device).type and value.dtype == torch.float32
    cpu = sliced_energy_distance(x.detach().cpu(), y.cpu(), n_projections=32, seed=0)
    torch.testing.assert_close(value.detach().cpu(), cpu, rtol=1e-5, atol=1e-6)
    (grad,) = torch.autograd.grad(value, x)
    assert grad.shape == x.shape and bool(torch.isfinite(grad).all())


def test_identical_measures_give_zero():
    x = torch.randn(40, 3, generator=torch.Generator().manual_seed(9))
    assert sliced_energy_distance(x, x[torch.randperm(40, generator=torch.Generator().manual_seed(0))], seed=0).abs() < 1e-6


def test_same_seed_same_result():
    g = torch.Generator().manual_seed(10)
    x, y = torch.randn(50, 3, generator=g), torch.randn(40, 3, generator=g)
    assert torch.equal(sliced_energy_distance(x, y, seed=3), sliced_energy_distance(x, y, seed=3))
    assert not torch.equal(sliced_energy_distance(x, y, seed=3), sliced_energy_distance(x, y, seed=4))
    state = torch.random.get_rng_state()
    sliced_energy_distance(x, y, seed=3)
    assert torch.equal(state, torch.random.get_rng_state())  # the global RNG is untouched


def flow_problem():
    g = torch.Generator().manual_seed(11)
    source = torch.randn(150, 2, generator=g) * 0.3
    target = torch.rand(200, 2, generator=g) * torch.tensor([2.0, 1.0]) + torch.tensor([2.0, 0.0])
    return source, target


def test_mmd_flow_decreases_exact_energy_distance():
    source, target = flow_problem()
    start = geom.energy_distance(source, target, backend="dense")
    result = mmd_flow(source, target, steps=150, lr=0.02, n_projections=64, seed=0, record_every=50)
    assert isinstance(result, FlowResult)
    end = geom.energy_distance(result.particles, target, backend="dense")
    assert end < 0.02 * start, (float(start), float(end))
    assert result.steps.tolist() == [0, 50, 100, 150]
    assert result.trajectory.shape == (4, 150, 2)
    torch.testing.assert_close(result.trajectory[0], source)
    torch.testing.assert_close(result.trajectory[-1], result.particles)
    assert result.values[-1] < 0.05 * result.values[0]
    assert result.info["method"] == "mmd" and result.info["steps_done"] == 150


def test_mmd_flow_step_independent_of_n():
    # One step from rest: the displacement of a particle is lr * g_i / a_i, the same whatever N is
    # (duplicating every particle leaves each one's drift unchanged).
    source, target = flow_problem()
    one = mmd_flow(source, target, steps=1, lr=0.1, n_projections=8, seed=1)
    two = mmd_flow(torch.cat([source, source]), target, steps=1, lr=0.1, n_projections=8, seed=1)
    torch.testing.assert_close(two.particles[:150] - source, one.particles - source, rtol=1e-4, atol=1e-5)
    assert float((one.particles - source).norm(dim=1).mean()) > 0.05


def test_mmd_flow_same_seed_callback_and_stop():
    source, target = flow_problem()
    r1 = mmd_flow(source, target, steps=20, lr=0.05, n_projections=16, seed=5)
    r2 = mmd_flow(source, target, steps=20, lr=0.05, n_projections=16, seed=5)
    r3 = mmd_flow(source, target, steps=20, lr=0.05, n_projections=16, seed=6)
    assert torch.equal(r1.particles, r2.particles) and torch.equal(r1.values, r2.values)
    assert not torch.equal(r1.particles, r3.particles)
    seen = []

    def stop_at_7(step, particles, value):
        seen.append(step)
        return step < 7

    r4 = mmd_flow(source, target, steps=20, lr=0.05, n_projections=16, seed=5, callback=stop_at_7,
                  record_every=[0, 3])
    assert seen == list(range(1, 8)) and r4.info["steps_done"] == 7
    assert r4.steps.tolist() == [0, 3, 7]
    r5 = mmd_flow(source, target, steps=7, lr=0.05, n_projections=16, seed=5)
    torch.testing.assert_close(r4.particles, r5.particles)  # stopping early == running fewer steps


def test_mmd_flow_continued_with_its_velocity_repeats_the_uninterrupted_run():
    source, target = flow_problem()
    whole = mmd_flow(source, target, steps=20, lr=0.05, n_projections=16, seed=5, record_every=5)
    gen = torch.Generator().manual_seed(5)
    first = mmd_flow(source, target, steps=8, lr=0.05, n_projections=16, generator=gen)
    rest = mmd_flow(first.particles, target, steps=12, lr=0.05, n_projections=16, generator=gen,
                    velocity=first.info["velocity"], record_every=[2, 7, 12])
    assert torch.equal(rest.particles, whole.particles)
    assert torch.equal(rest.values, whole.values[[2, 3, 4]])  # steps 10, 15, 20
    cold = mmd_flow(first.particles, target, steps=12, lr=0.05, n_projections=16, seed=5)
    assert not torch.allclose(cold.particles, whole.particles)  # the velocity matters
    with pytest.raises(ValueError, match=r"velocity: expected shape \(.*\) like source"):
        mmd_flow(source, target, steps=2, velocity=torch.zeros(3, 3))


def test_bad_input_errors():
    x, y = torch.randn(10, 3), torch.randn(8, 3)
    with pytest.raises(ValueError, match="n_projections"):
        sliced_energy_distance(x, y, n_projections=0)
    with pytest.raises(TypeError, match="n_projections"):
        sliced_energy_distance(x, y, n_projections=2.5)
    with pytest.raises(ValueError, match="dimension"):
        sliced_energy_distance(x, torch.randn(8, 2))
    with pytest.raises(ValueError, match="directions"):
        sliced_energy_distance(x, y, directions=[[1.0, 1.0, 0.0]])
    with pytest.raises(ValueError, match="scheme"):
        sliced_energy_distance(x, y, scheme="max")
    with pytest.raises(ValueError, match="scheme"):
        sliced_energy_distance(x, y, scheme="no-such-scheme")
    with pytest.raises(ValueError, match="seed, generator"):
        sliced_energy_distance(x, y, seed=0, generator=torch.Generator())
    with pytest.raises(ValueError, match="steps"):
        mmd_flow(x, y, steps=0)
    with pytest.raises(ValueError, match="lr"):
        mmd_flow(x, y, steps=3, lr=-1.0)
    with pytest.raises(ValueError, match="momentum"):
        mmd_flow(x, y, steps=3, momentum=1.0)
    with pytest.raises(ValueError, match="target"):
        mmd_flow(x, torch.randn(8, 2), steps=3)
    with pytest.raises(ValueError, match="source"):
        mmd_flow(torch.randn(2, 10, 3), y, steps=3)
    with pytest.raises(ValueError, match="source"):
        mmd_flow(geom.measure(x, weights=[0.0] + [1.0] * 9), y, steps=3)
    with pytest.raises(ValueError, match="record_every"):
        mmd_flow(x, y, steps=3, record_every=[5])
    with pytest.raises(TypeError, match="record_every"):
        mmd_flow(x, y, steps=3, record_every="often")
    with pytest.raises(TypeError, match="callback"):
        mmd_flow(x, y, steps=3, callback=3)


@pytest.mark.parametrize("wide", [False, True])
@pytest.mark.parametrize("weight_grads", [True, False])
@pytest.mark.parametrize("uniform", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_numpy_and_torch_kernels_agree(monkeypatch, dtype, uniform, weight_grads, wide):
    # The CPU path (the compiled kernel without weight gradients, numpy with them; ties in both) and
    # the torch path (CUDA) on the same data, with weights, N != M, batches and many ties (integer
    # points), several directions per task. ``wide``: the path of wide dimensions (projections by
    # blocks first, supports in their (B, N, D) layout), with a buffer of three slices between products.
    from geom._ot1d import energy as mmd
    from geom._ot1d import pool

    if wide:
        monkeypatch.setattr(pool, "WIDE", 1)
        monkeypatch.setattr(mmd, "_BUFFER_WIDE", 3 * 65)

    g = torch.Generator().manual_seed(12)
    x = torch.randint(-3, 4, (2, 40, 3), generator=g).to(dtype)
    y = torch.randint(-3, 4, (2, 25, 3), generator=g).to(dtype)
    a, b = torch.rand(2, 40, generator=g, dtype=dtype) + 0.1, torch.rand(2, 25, generator=g, dtype=dtype) + 0.1
    a, b = a / a.sum(-1, keepdim=True), b / b.sum(-1, keepdim=True)
    if uniform:
        a, b = torch.full_like(a, 1 / 40), torch.full_like(b, 1 / 25)
    theta = torch.cat([torch.eye(3), unit_rows(5, 3, g, torch.float32)]).to(dtype)
    need = (True, True, weight_grads, weight_grads)
    up = torch.rand(2, theta.shape[0], generator=g, dtype=dtype)  # per-slice upstream gradients
    v_np, g_np = mmd._cpu_chunk(x, y, theta, a, b, need, up)
    v_t, g_t = mmd._torch_chunk(x, y, theta, a, b, need, up)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(v_np, v_t, **tol)
    for u, v, wanted in zip(g_np, g_t, need):
        assert (u is None) == (v is None) == (not wanted)
        if wanted:
            torch.testing.assert_close(u.to(dtype), v.to(dtype), **tol)


def test_per_slice_upstream_gradients_weight_each_slice():
    # The mean over slices scales gradients summed in the forward pass; any other use of the
    # per-slice costs sorts again in backward. Both must equal the sum over slices of each slice's
    # own gradient, weighted by its upstream. One cloud is broadcast against a batch of three.
    g = torch.Generator().manual_seed(13)
    x, y = torch.randn(30, 3, generator=g, dtype=torch.float64), torch.randn(3, 20, 3, generator=g, dtype=torch.float64)
    a = torch.rand(30, generator=g, dtype=torch.float64) + 0.1
    theta = unit_rows(6, 3, g)
    up = torch.rand(3, 6, generator=g, dtype=torch.float64)

    def grads(fn, directions):
        xr, ar = x.clone().requires_grad_(), a.clone().requires_grad_()
        res = sliced_energy_distance(geom.measure(xr, weights=ar), y, directions=directions, return_result=True)
        return torch.autograd.grad(fn(res), [xr, ar])

    weighted = grads(lambda res: (res.costs * up).sum(), theta)
    mean = grads(lambda res: res.value.sum(), theta)
    weighted_slices = [grads(lambda res: res.value @ up[:, l], theta[l : l + 1]) for l in range(6)]
    slices = [grads(lambda res: res.value.sum(), theta[l : l + 1]) for l in range(6)]
    for k in range(2):
        torch.testing.assert_close(weighted[k], sum(s[k] for s in weighted_slices), rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(mean[k], sum(s[k] for s in slices) / 6, rtol=1e-12, atol=1e-14)
    for k in range(3):  # and the batch is item by item
        torch.testing.assert_close(sliced_energy_distance(geom.measure(x, weights=a), y[k], directions=theta),
                                   sliced_energy_distance(geom.measure(x, weights=a), y, directions=theta)[k])
