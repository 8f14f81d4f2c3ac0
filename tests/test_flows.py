"""Point-cloud flows: SW gradient flow, sliced-Wasserstein flow (SWF) and conditional SWF.

Oracles: hand-computed gradient steps and 1-D OT maps, POT's exact ``emd2`` and ``emd_1d``,
the identity between the noiseless SWF step and the SGD step of the SW_2^2 flow, determinism.
"""

import math

import numpy as np
import ot
import pytest
import torch

import geom
from geom.flows import FlowDiverged, FlowResult, conditional_swf, sw_flow, swf, transport_targets
from geom.flows import mmd_flow
from geom_plugins.mc import MonteCarlo
from geom_plugins.reservoir import Reservoir


class Fixed(geom.SlicingScheme):
    """The same given directions at every call (a deterministic scheme); call with n_projections=len(theta)."""

    def __init__(self, theta, **options):
        super().__init__(**options)
        self.theta = torch.as_tensor(theta, dtype=torch.float64)

    def directions(self, n, dim, *, generator=None):
        return self.theta[torch.arange(n) % len(self.theta)]  # the given rows, cycled to the n asked for


class Spy(MonteCarlo):
    """Uniform directions; keeps the particle supports the flow shows to ``estimate``."""

    def __init__(self, **options):
        super().__init__(**options)
        self.seen = []

    def estimate(self, costs, context):
        self.seen.append(context.mu.support[0].clone())
        return super().estimate(costs, context)


def _unit(theta):
    theta = torch.as_tensor(theta, dtype=torch.float64)
    return theta / theta.norm(dim=1, keepdim=True)


def _blobs(N=120, M=120, seed=0):
    """Source: one Gaussian at the origin; target: two blobs at (3, 0) and (-3, 1)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, 2, generator=g, dtype=torch.float64)
    lab = torch.arange(M) % 2
    centres = torch.tensor([[3.0, 0.0], [-3.0, 1.0]], dtype=torch.float64)
    y = 0.3 * torch.randn(M, 2, generator=g, dtype=torch.float64) + centres[lab]
    return x, y, lab


def _emd(x, y):
    return ot.emd2([], [], ot.dist(x.numpy(), y.numpy()))


# ----------------------------------------------------------------------------- the objectives fall


@pytest.mark.parametrize("optimizer,lr", [("adam", 0.05), ("sgd", 0.5)])
def test_sw_flow_brings_sw_and_exact_w2_down(optimizer, lr):
    x, y, _ = _blobs()
    r = sw_flow(x, y, steps=200, lr=lr, optimizer=optimizer, n_projections=32, seed=1, record_every=50)
    assert isinstance(r, FlowResult)
    assert r.steps.tolist() == [0, 50, 100, 150, 200]
    assert r.trajectory.shape == (5, 120, 2) and r.values.shape == (5,)
    assert torch.equal(r.trajectory[0], x) and torch.equal(r.trajectory[-1], r.particles)
    assert r.values[-1] < 0.1 * r.values[0]
    # the recorded value is SW_2 on the evaluation directions: POT agrees
    assert r.values[0] > 0.5
    w_start, w_end = _emd(r.trajectory[0], y), _emd(r.particles, y)
    assert w_end < 0.05 * w_start


def test_swf_brings_sw_and_exact_w2_down():
    x, y, _ = _blobs()
    r = swf(x, y, steps=60, step_size=0.5, n_projections=16, seed=2, record_every=20)
    assert r.values[-1] < 0.1 * r.values[0]
    assert bool((r.values[1:] < r.values[:-1]).all())
    assert _emd(r.particles, y) < 0.05 * _emd(x, y)


def test_conditional_swf_brings_joint_sw_down_and_samples_each_class():
    x, y, lab = _blobs(N=100, M=200)
    cls = torch.arange(100) % 2
    cls = cls[torch.randperm(100, generator=torch.Generator().manual_seed(5))]
    r = conditional_swf(x, y, cls, lab, steps=80, step_size=0.5, label_scale=5.0, n_projections=16,
                        seed=3, record_every=40)
    assert r.particles.shape == (100, 2) and r.trajectory.shape == (3, 100, 2)
    assert r.values[-1] < 0.1 * r.values[0]
    centres = torch.stack([y[lab == c].mean(0) for c in (0, 1)])  # (2, 2)
    nearest = torch.cdist(r.particles, centres).argmin(1)
    assert bool((nearest == cls).all())
    # without the label block (an unconditional flow) the classes are mixed: the check can fail
    u = swf(x, y, steps=80, step_size=0.5, n_projections=16, seed=3)
    assert float((torch.cdist(u.particles, centres).argmin(1) == cls).double().mean()) < 0.75
    # each class's particles match that class's target (exact W2 per class, against the other class)
    for c in (0, 1):
        own, other = _emd(r.particles[cls == c], y[lab == c]), _emd(r.particles[cls == c], y[lab != c])
        assert own < 0.05 * other


# ----------------------------------------------------------------------------- exact steps


def test_sw_flow_sgd_step_with_fixed_directions_equals_hand_computed_step():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(7, 3, generator=g, dtype=torch.float64), torch.randn(7, 3, generator=g, dtype=torch.float64)
    theta = _unit(torch.randn(4, 3, generator=g, dtype=torch.float64))
    lr = 0.3
    r = sw_flow(x, y, steps=1, lr=lr, optimizer="sgd", scheme=Fixed(theta), n_projections=len(theta), seed=0)
    xn, yn, th = x.numpy(), y.numpy(), theta.numpy()
    grad = np.zeros_like(xn)  # N * d SW_2^2 / dx_i = (1/L) sum_l 2 (u_i - v_match(i)) theta_l
    for t in th:
        u, v = xn @ t, yn @ t
        match = np.empty(7)
        match[np.argsort(u)] = np.sort(v)
        grad += 2 * (u - match)[:, None] * t[None, :] / len(th)
    np.testing.assert_allclose(r.particles.numpy(), xn - lr * grad, rtol=0, atol=1e-12)


def test_sw_flow_step_does_not_depend_on_the_number_of_particles():
    """Doubling every particle halves its mass; the per-particle step must not halve with it. The
    copies of a point tie in every sort and split its target mass, so it is their mean that moves
    like the original point (weights and N != M: the general 1-D path)."""
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(9, 2, generator=g, dtype=torch.float64), torch.randn(13, 2, generator=g, dtype=torch.float64)
    theta = _unit(torch.randn(5, 2, generator=g, dtype=torch.float64))
    once = sw_flow(x, y, steps=1, lr=0.2, optimizer="sgd", scheme=Fixed(theta), n_projections=len(theta), seed=0)
    twice = sw_flow(torch.cat([x, x]), y, steps=1, lr=0.2, optimizer="sgd", scheme=Fixed(theta), n_projections=len(theta), seed=0)
    torch.testing.assert_close((twice.particles[:9] + twice.particles[9:]) / 2, once.particles, rtol=0, atol=1e-10)
    assert (once.particles - x).abs().max() > 0.05


def test_swf_one_step_one_direction_is_the_1d_ot_map():
    g = torch.Generator().manual_seed(2)
    d = 3
    x, y = torch.randn(11, d, generator=g, dtype=torch.float64), torch.randn(11, d, generator=g, dtype=torch.float64) + 2
    theta = _unit(torch.randn(1, d, generator=g, dtype=torch.float64))
    r = swf(x, y, steps=1, step_size=1.0 / d, scheme=Fixed(theta), n_projections=len(theta), seed=0)
    t = theta[0]
    u, moved = x @ t, r.particles @ t
    expected = torch.empty(11, dtype=torch.float64)
    expected[torch.argsort(u)] = torch.sort(y @ t).values  # the target quantile at each particle's rank
    torch.testing.assert_close(moved, expected, rtol=0, atol=1e-12)
    # nothing moves orthogonally to the direction
    torch.testing.assert_close(r.particles - moved[:, None] * t, x - u[:, None] * t, rtol=0, atol=1e-12)


def test_transport_targets_match_pot_coupling_with_weights():
    rng = np.random.default_rng(3)
    L, N, M = 3, 8, 13
    u, v = rng.normal(size=(L, N)), rng.normal(size=(L, M)) * 2 + 1
    a, b = rng.uniform(0.1, 1, N), rng.uniform(0.1, 1, M)
    a, b = a / a.sum(), b / b.sum()
    T, costs = transport_targets(torch.from_numpy(u), torch.from_numpy(a), torch.from_numpy(v), torch.from_numpy(b))
    for l in range(L):
        plan = ot.emd_1d(u[l], v[l], a, b, metric="sqeuclidean")  # (N, M) monotone coupling
        np.testing.assert_allclose(T[l].numpy(), plan @ v[l] / a, rtol=0, atol=1e-10)
        np.testing.assert_allclose(costs[l].item(), ot.wasserstein_1d(u[l], v[l], a, b, p=2), rtol=1e-9, atol=1e-12)


def test_noiseless_swf_step_equals_sgd_step_of_the_sw_flow():
    """SWF drift = d * Wasserstein gradient of SW_2^2 / 2: two implementations, weights and N != M."""
    g = torch.Generator().manual_seed(4)
    d = 3
    x, y = torch.randn(10, d, generator=g, dtype=torch.float64), torch.randn(17, d, generator=g, dtype=torch.float64)
    a = torch.rand(10, generator=g, dtype=torch.float64) + 0.2
    b = torch.rand(17, generator=g, dtype=torch.float64) + 0.2
    theta = _unit(torch.randn(6, d, generator=g, dtype=torch.float64))
    mu, nu = geom.measure(x, weights=a), geom.measure(y, weights=b)
    h = 0.4
    r1 = swf(mu, nu, steps=1, step_size=h, scheme=Fixed(theta), n_projections=len(theta), seed=0)
    r2 = sw_flow(mu, nu, steps=1, lr=h * d / 2, optimizer="sgd", scheme=Fixed(theta), n_projections=len(theta), seed=0)
    torch.testing.assert_close(r1.particles, r2.particles, rtol=0, atol=1e-10)
    assert not torch.allclose(r1.particles, x)


# ----------------------------------------------------------------------------- randomness


def test_same_seed_same_trajectory_and_other_seed_another():
    x, y, lab = _blobs(N=40, M=40)
    runs = {
        "sw": lambda s: sw_flow(x, y, steps=5, lr=0.05, n_projections=8, seed=s, record_every=1),
        "swf": lambda s: swf(x, y, steps=5, step_size=0.5, n_projections=8, noise=0.01, seed=s, record_every=1),
        "cswf": lambda s: conditional_swf(x, y, lab, lab, steps=5, step_size=0.5, label_scale=2.0, n_projections=8,
                                          noise=0.01, seed=s, record_every=1),
    }
    for name, run in runs.items():
        a, b, c = run(7), run(7), run(8)
        assert torch.equal(a.trajectory, b.trajectory), name
        assert torch.equal(a.values, b.values), name
        assert not torch.equal(a.particles, c.particles), name
        gen = torch.Generator().manual_seed(7)
        if name == "sw":
            assert torch.equal(sw_flow(x, y, steps=5, lr=0.05, n_projections=8, generator=gen).particles, a.particles)


def test_noiseless_swf_is_deterministic_given_the_seed_and_noise_moves_particles():
    x, y, _ = _blobs(N=30, M=50)
    a = swf(x, y, steps=4, step_size=0.7, n_projections=5, seed=11)
    b = swf(x, y, steps=4, step_size=0.7, n_projections=5, seed=11)
    assert torch.equal(a.particles, b.particles)
    noisy = swf(x, y, steps=4, step_size=0.7, n_projections=5, noise=0.05, seed=11)
    # same directions at step 1 (noise is drawn after them), so the difference after one step is the noise
    one, one_noisy = (swf(x, y, steps=1, step_size=0.7, n_projections=5, noise=s, seed=11) for s in (0.0, 0.05))
    diff = (one_noisy.particles - one.particles).flatten()
    assert abs(float(diff.std()) - math.sqrt(2 * 0.05 * 0.7)) < 0.2 * math.sqrt(2 * 0.05 * 0.7)
    assert not torch.equal(noisy.particles, a.particles)


# ----------------------------------------------------------------------------- conditioning and masks


def test_conditional_swf_keeps_label_blocks_exactly():
    x, y, lab = _blobs(N=20, M=30)
    cls = torch.arange(20) % 2
    spy = Spy()
    conditional_swf(x, y, cls, lab, steps=6, step_size=0.5, label_scale=3.0, n_projections=4, noise=0.1,
                    scheme=spy, seed=0)
    assert len(spy.seen) == 6
    block = torch.zeros(20, 2, dtype=torch.float64)
    block[torch.arange(20), cls] = 3.0
    for z in spy.seen:  # the joint particles the flow slices, at every step
        assert z.shape == (20, 4)
        assert torch.equal(z[:, 2:], block)
    assert not torch.equal(spy.seen[-1][:, :2], x)


@pytest.mark.parametrize("shape", ["row", "full"])
def test_masked_coordinates_stay_bit_identical(shape):
    x, y, lab = _blobs(N=24, M=24)
    if shape == "row":
        mask = torch.tensor([True, False])
        observed = torch.zeros(24, 2, dtype=torch.bool)
        observed[:, 0] = True
    else:
        observed = torch.rand(24, 2, generator=torch.Generator().manual_seed(0)) < 0.4
        mask = observed
    for r in (swf(x, y, steps=5, step_size=0.5, n_projections=4, noise=0.1, mask=mask, seed=0, record_every=1),
              conditional_swf(x, y, lab, lab, steps=5, step_size=0.5, label_scale=2.0, n_projections=4,
                              noise=0.1, mask=mask.numpy(), seed=0, record_every=1)):
        for frame in r.trajectory:
            assert torch.equal(frame[observed], x[observed])
            assert torch.equal(frame[observed].view(torch.int64), x[observed].view(torch.int64))  # bits
        assert not torch.equal(r.particles[~observed], x[~observed])


# ----------------------------------------------------------------------------- schemes, callbacks


def test_reservoir_state_is_carried_across_steps():
    x, y, _ = _blobs(N=40, M=40)
    res = Reservoir(reservoir_size=4)
    r = sw_flow(x, y, steps=12, lr=0.05, scheme=res, n_projections=12, seed=0)
    assert res.step == 12 and res.reservoir.shape[0] > 0
    assert r.values[-1] < r.values[0]
    res2 = Reservoir(reservoir_size=4)
    swf(x, y, steps=9, step_size=0.5, scheme=res2, n_projections=12, seed=0)
    assert res2.step == 9
    # by name with options
    r3 = sw_flow(x, y, steps=3, lr=0.05, scheme="reservoir", reservoir_size=4, n_projections=12, seed=0)
    assert r3.info["scheme"] == "Reservoir"


@pytest.mark.parametrize("flow", ["sw", "swf", "cswf"])
def test_callback_returning_false_stops_at_that_step(flow):
    x, y, lab = _blobs(N=20, M=20)
    calls = []

    def cb(step, particles, value):
        calls.append((step, particles.shape, value))
        return step < 4

    kw = dict(steps=50, n_projections=4, seed=0, record_every=10, callback=cb)
    if flow == "sw":
        r = sw_flow(x, y, lr=0.05, **kw)
    elif flow == "swf":
        r = swf(x, y, step_size=0.5, **kw)
    else:
        r = conditional_swf(x, y, lab, lab, step_size=0.5, label_scale=1.0, **kw)
    assert [c[0] for c in calls] == [1, 2, 3, 4]
    assert all(shape == (20, 2) and math.isfinite(v) and v > 0 for _, shape, v in calls)
    assert r.steps.tolist() == [0, 4] and r.info["steps_done"] == 4 and r.info["stopped"]
    assert torch.equal(r.trajectory[-1], r.particles)


# ----------------------------------------------------------------------------- bad input


def test_bad_input_names_the_argument():
    x, y, lab = _blobs(N=10, M=12)
    with pytest.raises(ValueError, match="steps"):
        sw_flow(x, y, steps=0, lr=0.1)
    with pytest.raises(TypeError, match="steps"):
        swf(x, y, steps=2.5, step_size=0.1)
    with pytest.raises(ValueError, match="lr"):
        sw_flow(x, y, steps=1, lr=-1.0)
    with pytest.raises(ValueError, match="step_size"):
        swf(x, y, steps=1, step_size=0.0)
    with pytest.raises(ValueError, match="noise"):
        swf(x, y, steps=1, step_size=0.1, noise=-1.0)
    with pytest.raises(ValueError, match="source, target: expected the same dimension, got 2 and 3"):
        sw_flow(x, torch.randn(5, 3), steps=1, lr=0.1)
    with pytest.raises(ValueError, match="source, target"):
        swf(x, torch.randn(5, 3), steps=1, step_size=0.1)
    with pytest.raises(ValueError, match="optimizer: expected 'adam' or 'sgd', got 'rmsprop'"):
        sw_flow(x, y, steps=1, lr=0.1, optimizer="rmsprop")
    with pytest.raises(ValueError, match=r"source_labels: .*\(10,\)"):
        conditional_swf(x, y, lab[:9], lab, steps=1, step_size=0.1, label_scale=1.0)
    with pytest.raises(ValueError, match="target_labels"):
        conditional_swf(x, y, lab[:10], lab[:5], steps=1, step_size=0.1, label_scale=1.0)
    with pytest.raises(ValueError, match="source_labels: classes \\[7\\]"):
        conditional_swf(x, y, torch.full((10,), 7), lab, steps=1, step_size=0.1, label_scale=1.0)
    with pytest.raises(ValueError, match="label_scale"):
        conditional_swf(x, y, lab[:10], lab, steps=1, step_size=0.1, label_scale=0)
    with pytest.raises(ValueError, match=r"mask: expected shape \(2,\) or \(10, 2\), got \(3,\)"):
        swf(x, y, steps=1, step_size=0.1, mask=torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask"):
        conditional_swf(x, y, lab[:10], lab, steps=1, step_size=0.1, label_scale=1.0, mask=np.ones((9, 2), bool))
    with pytest.raises(TypeError, match="mask"):
        swf(x, y, steps=1, step_size=0.1, mask=torch.ones(2))
    with pytest.raises(TypeError, match="callback"):
        swf(x, y, steps=1, step_size=0.1, callback=3)
    with pytest.raises(ValueError, match="record_every"):
        sw_flow(x, y, steps=3, lr=0.1, record_every=[0, 5])
    with pytest.raises(ValueError, match="scheme"):
        sw_flow(x, y, steps=1, lr=0.1, scheme="no-such-scheme")
    with pytest.raises(ValueError, match="source: expected one cloud"):
        sw_flow(torch.randn(2, 5, 2), y, steps=1, lr=0.1)


@pytest.mark.parametrize("flow", ["sw-adam", "swf", "cswf"])
def test_stopped_run_continued_with_its_generator_repeats_the_uninterrupted_run(flow):
    x, y, lab = _blobs(N=30, M=30)

    def run(src, steps, gen, scheme, callback=None, state=None):
        kw = dict(steps=steps, n_projections=6, generator=gen, scheme=scheme, callback=callback)
        if flow == "sw-adam":
            return sw_flow(src, y, lr=0.05, optimizer_state=state, **kw)
        if flow == "swf":
            return swf(src, y, step_size=0.5, noise=0.01, **kw)
        return conditional_swf(src, y, lab, lab, step_size=0.5, label_scale=2.0, noise=0.01, **kw)

    full = run(x, 10, torch.Generator().manual_seed(3), Reservoir(reservoir_size=3))
    gen, res = torch.Generator().manual_seed(3), Reservoir(reservoir_size=3)
    first = run(x, 10, gen, res, callback=lambda k, *_: k < 4)
    assert first.info["steps_done"] == 4
    rest = run(first.particles, 6, gen, res, state=first.info.get("optimizer_state"))
    torch.testing.assert_close(rest.particles, full.particles, rtol=0, atol=1e-6)
    assert torch.equal(rest.trajectory[0], first.particles)
    assert res.step == 10


# ----------------------------------------------------------------------------- divergence and resources


@pytest.mark.parametrize("flow", ["sw-adam", "sw-sgd", "swf", "cswf", "mmd"])
def test_a_diverging_flow_stops_naming_the_step_and_what_became_non_finite(flow):
    """Huge step sizes overflow within a few steps: the flow must raise, never record NaN particles
    as a distance of 0 (which reads as perfect convergence)."""
    x, y, lab = _blobs(N=40, M=40)
    seen = []
    kw = dict(seed=0, callback=lambda k, particles, value: seen.append((k, value, particles)))
    runs = {
        "sw-adam": lambda: sw_flow(x, y, steps=50, lr=1e300, **kw),
        "sw-sgd": lambda: sw_flow(x, y, steps=50, lr=1e300, optimizer="sgd", **kw),
        "swf": lambda: swf(x, y, steps=300, step_size=1e6, **kw),
        "cswf": lambda: conditional_swf(x, y, lab, lab, steps=300, step_size=1e6, label_scale=1.0, **kw),
        "mmd": lambda: mmd_flow(x, y, steps=30, lr=1e308, **kw),
    }
    with pytest.raises(FlowDiverged, match=r"diverged at step \d+: the (particles|value|recorded value|gradient) "
                                           r"became non-finite") as info:
        runs[flow]()
    assert isinstance(info.value, ValueError) and info.value.step >= 1
    assert all(k <= info.value.step and math.isfinite(v) and bool(torch.isfinite(p).all()) for k, v, p in seen)


def test_sw_flow_names_the_gradient_before_moving_the_particles():
    x, y, _ = _blobs(N=20, M=20)
    with pytest.raises(FlowDiverged, match="step 2: the gradient became non-finite") as info:
        sw_flow(x, y, steps=5, lr=1e300, seed=0)
    assert (info.value.step, info.value.what) == (2, "gradient")


@pytest.mark.parametrize("argument", ["eval_projections", "n_projections"])
@pytest.mark.parametrize("flow", ["sw", "swf", "mmd"])
def test_projection_counts_beyond_memory_are_refused_before_allocating(flow, argument):
    x, y, _ = _blobs(N=20, M=20)
    kw = {argument: 10**12}
    run = {"sw": lambda: sw_flow(x, y, steps=1, lr=0.1, **kw), "swf": lambda: swf(x, y, steps=1, step_size=0.5, **kw),
           "mmd": lambda: mmd_flow(x, y, steps=1, lr=0.1, **kw)}[flow]
    with pytest.raises(ValueError, match=f"{argument}: this needs about .* of memory"):
        run()


# ---------------------------------------------------------------------------------------------- scale-aware defaults


def _sphere(n, radius, centre, seed):
    z = torch.randn(n, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return torch.as_tensor(centre, dtype=torch.float64) + radius * z / z.norm(dim=1, keepdim=True)


SCALE_FLOWS = {
    "sw": lambda x, y, **kw: sw_flow(x, y, **kw),
    "swf": lambda x, y, **kw: swf(x, y, step_size=0.5, **kw),
    "mmd": lambda x, y, **kw: mmd_flow(x, y, **kw),
}


@pytest.mark.parametrize("flow, fraction", [("sw", 0.2), ("swf", 0.05), ("mmd", 0.02)])
def test_default_steps_bring_a_unit_sphere_onto_one_a_hundred_times_larger(flow, fraction):
    """A fixed lr of 0.02 (the sw default before it knew the scale) leaves SW at 0.97 of its start here."""
    x, y = _sphere(64, 1.0, [0, 0, 0], 0), _sphere(64, 100.0, [50, 0, 0], 1)
    r = SCALE_FLOWS[flow](x, y, steps=100, seed=0)
    assert r.values[-1] < fraction * r.values[0]
    if flow != "swf":
        assert r.info["lr"] == pytest.approx(geom.flows.DEFAULT_STEP[flow] * 100, rel=0.05)  # RMS radius ~ 100


@pytest.mark.parametrize("flow", ["sw", "swf", "mmd"])
def test_default_steps_make_flows_scale_equivariant(flow):
    """Source and target scaled by 100: the default-step trajectory is the unit one scaled by 100
    (Adam's epsilon aside)."""
    x, y = _sphere(32, 1.0, [0, 0, 0], 2), 0.5 * _sphere(32, 1.0, [1, 0, 0], 3)
    small = SCALE_FLOWS[flow](x, y, steps=15, seed=0)
    large = SCALE_FLOWS[flow](100 * x, 100 * y, steps=15, seed=0)
    torch.testing.assert_close(large.particles, 100 * small.particles, rtol=1e-6, atol=1e-6)


def test_target_scale_is_the_rms_radius_and_unit_targets_keep_the_old_steps():
    y = _sphere(4096, 1.0, [3, -2, 7], 4)  # a unit sphere anywhere: scale 1, so lr 0.02 (sw) and 0.05 (mmd)
    assert geom.flows.target_scale(y) == pytest.approx(1.0, abs=0.02)
    assert geom.flows.DEFAULT_STEP == {"sw": 0.02, "mmd": 0.05}
    w = torch.tensor([3.0, 1.0])  # weighted: mean 0.25, RMS radius sqrt(0.75 * 0.25^2 + 0.25 * 0.75^2)
    assert geom.flows.target_scale(geom.measure(torch.tensor([[0.0], [1.0]]), weights=w)) == pytest.approx(3**0.5 / 4)
    assert geom.flows.target_scale(torch.ones(5, 2)) == 1.0  # one point repeated: no scale, 1
    r = sw_flow(y[:16], y, steps=1, seed=0)
    assert r.info["lr"] == pytest.approx(0.02, rel=0.02)
