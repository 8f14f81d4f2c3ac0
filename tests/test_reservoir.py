"""The ``"reservoir"`` scheme (ReSWD, Boss et al. 2025): state across calls, unbiasedness, selection.

Reservoir updates are driven either through :func:`geom.sliced_wasserstein` with one instance, or by
calling ``directions`` and ``estimate`` directly with hand-made costs, which makes the A-Res keys,
the decay and the reset rule checkable exactly.
"""

import math

import pytest
import torch

import geom
import geom.testing
from geom.sliced import EstimateContext
from geom_plugins.mc import MonteCarlo
from geom_plugins import reservoir as reservoir_plugin
from geom_plugins.reservoir import Reservoir

DUMMY = geom.measure(torch.zeros(1, 3, dtype=torch.float64))


def _step(scheme, costs_of, n, dim, g):
    """One call by hand: directions, then ``estimate`` on ``costs_of(theta) (B, n)``."""
    theta = scheme.directions(n, dim, generator=g)
    costs = costs_of(theta)
    value, stderr = scheme.estimate(costs, EstimateContext(DUMMY, DUMMY, theta, 2.0, g, drawn=True))
    return theta, costs, value, stderr


def _x_pair(d=3, N=60, seed=0):
    """Two clouds that differ only along the first axis (shift and scale)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, d, generator=g, dtype=torch.float64)
    y = torch.randn(N, d, generator=g, dtype=torch.float64)
    y[:, 0] = 2 * y[:, 0] + 1.5
    return x, y


def test_hook_registers_the_scheme():
    seen = []
    reservoir_plugin.geom_register_schemes(register=lambda name, cls: seen.append((name, cls)))
    assert seen == [("reservoir", Reservoir)]


def test_contract():
    geom.testing.check_scheme(Reservoir)
    geom.testing.check_scheme(Reservoir, reservoir_size=4, mixture=0.8, concentration=3)
    geom.testing.check_scheme(Reservoir, base="mc", n_candidates=3, decay=1.0, ess_threshold=0.0)


@pytest.mark.parametrize("n, K, least", [(32, 16, None), (10, 16, None), (8, 16, 3), (8, 4, 7), (1, 4, None)])
def test_split_of_n_between_reservoir_and_fresh(n, K, least):
    scheme = Reservoir(reservoir_size=K, n_candidates=least, ess_threshold=0.0)
    g = torch.Generator().manual_seed(0)
    ones = lambda th: torch.ones(1, th.shape[0], dtype=torch.float64)  # noqa: E731
    _step(scheme, ones, 40, 3, g)  # first call: empty reservoir, all 40 fresh; keeps K of them
    assert scheme.reservoir.shape == (K, 3)
    members = scheme.reservoir.clone()
    theta, _, _, _ = _step(scheme, ones, n, 3, g)
    m = least if least is not None else max(n - K, (n + 1) // 2)
    n_res = min(K, max(0, n - m))
    assert theta.shape == (n, 3)
    assert torch.equal(theta[:n_res], members[:n_res])  # the members with the largest keys come first
    assert not (theta[n_res:, None, :] == members[None]).all(-1).any()  # the rest are fresh


def test_first_call_is_all_fresh_and_uniform():
    theta = Reservoir(reservoir_size=8).directions(20_000, 3, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(theta.mean(0), torch.zeros(3, dtype=torch.float64), atol=0.03)  # E theta = 0
    assert torch.allclose(theta.T @ theta / 20_000, torch.eye(3, dtype=torch.float64) / 3, atol=0.01)


def test_state_survives_many_calls():
    x, y = _x_pair()
    scheme, g, K = Reservoir(reservoir_size=12, ess_threshold=0.0), torch.Generator().manual_seed(2), 12
    previous = None
    for t in range(40):
        res = geom.sliced_wasserstein(x, y, scheme=scheme, n_projections=32, generator=g, return_result=True)
        assert scheme.step == t + 1 and scheme.resets == 0
        assert scheme.reservoir.shape == (K, 3) and scheme.log_keys.shape == (K,) == scheme.weights.shape
        assert torch.allclose(scheme.reservoir.norm(dim=1), torch.ones(K, dtype=torch.float64))
        assert bool((scheme.log_keys[:-1] >= scheme.log_keys[1:]).all())  # largest key first
        if previous is not None:
            assert torch.equal(res.directions[:K], previous)  # the members are shown first
        previous = scheme.reservoir.clone()
    assert res.costs.shape == (32,) and bool(torch.isfinite(res.value))


@pytest.mark.parametrize("decay", [1.0, 0.5])
def test_keys_decay_by_the_factor_per_update(decay):
    """Constant costs and rho = 1: a member's weight is decay^age, so a survivor's log key is divided by
    ``decay`` at each update (unchanged without decay), and fresh candidates enter with weight 1."""
    scheme, g = Reservoir(reservoir_size=8, decay=decay, ess_threshold=0.0, mixture=0.0), torch.Generator().manual_seed(3)
    ones = lambda th: torch.ones(1, th.shape[0], dtype=torch.float64)  # noqa: E731
    _step(scheme, ones, 16, 3, g)
    survived = 0
    for _ in range(5):
        before = {tuple(r.tolist()): (k.item(), w.item()) for r, k, w in zip(scheme.reservoir, scheme.log_keys,
                                                                           scheme.weights)}
        _step(scheme, ones, 16, 3, g)
        for r, k, w in zip(scheme.reservoir, scheme.log_keys, scheme.weights):
            if tuple(r.tolist()) in before:
                k0, w0 = before[tuple(r.tolist())]
                assert k.item() == pytest.approx(k0 / decay, rel=1e-12)
                assert w.item() == pytest.approx(w0 * decay, rel=1e-12)
                survived += 1
            else:
                assert w.item() == 1.0  # a fresh candidate of this update
    assert survived > 0


def test_old_members_give_way_under_decay():
    """The first call's candidates cost 10, later ones 1. Without decay some of the first stay after 10
    updates (all 8 were replaced by the 80 later ones for 1 seed in 300); with decay 0.05 their
    weight is 10 * 0.05^10 and none stays."""
    kept = {}
    for decay in (1.0, 0.05):
        scheme, g = Reservoir(reservoir_size=8, decay=decay, ess_threshold=0.0), torch.Generator().manual_seed(4)
        first = scheme.directions(16, 3, generator=g)

        def costs_of(theta):
            return 1 + 9 * (theta[:, None, :] == first[None]).all(-1).any(1, keepdim=True).T.double()  # (1, n)

        scheme.estimate(costs_of(first), EstimateContext(DUMMY, DUMMY, first, 2.0, g, drawn=True))
        for _ in range(10):
            _step(scheme, costs_of, 16, 3, g)
        kept[decay] = int((scheme.reservoir[:, None, :] == first[None]).all(-1).any(1).sum())
    assert kept[0.05] == 0
    assert kept[1.0] >= 1


def test_reset_when_effective_sample_size_is_low():
    g = torch.Generator().manual_seed(5)
    skewed = lambda th: torch.cat([torch.tensor([[1000.0]], dtype=torch.float64),  # noqa: E731
                                   torch.full((1, th.shape[0] - 1), 1e-6, dtype=torch.float64)], 1)
    scheme = Reservoir(reservoir_size=4, ess_threshold=0.5)
    _step(scheme, skewed, 8, 3, g)  # kept weights ~ [1000, 1e-6, 1e-6, 1e-6]: ESS ~ 1 < 0.5 * 4
    assert scheme.resets == 1 and scheme.reservoir.shape == (0, 3)
    theta, *_ = _step(scheme, skewed, 8, 3, g)  # after a reset the next call is all fresh again
    assert scheme.resets == 2
    keep = Reservoir(reservoir_size=4, ess_threshold=0.0)  # threshold 0: the same costs never reset
    _step(keep, skewed, 8, 3, g)
    assert keep.resets == 0 and keep.reservoir.shape == (4, 3)
    # the heavy direction is always kept (key ~ 1); weights are relative to the largest
    assert keep.weights.max().item() == 1.0
    assert keep.weights.sort().values[:-1].tolist() == pytest.approx([1e-9] * 3, rel=1e-9)
    even = Reservoir(reservoir_size=4, ess_threshold=0.5)
    _step(even, lambda th: torch.ones(1, th.shape[0], dtype=torch.float64), 8, 3, g)  # ESS = 4
    assert even.resets == 0 and even.reservoir.shape == (4, 3)
    zero = Reservoir(reservoir_size=4, ess_threshold=0.0)  # every weight 0 (mu == nu): nothing to keep
    _step(zero, lambda th: torch.zeros(1, th.shape[0], dtype=torch.float64), 8, 3, g)
    assert zero.resets == 1 and zero.reservoir.shape == (0, 3)


def test_another_dimension_starts_over():
    x, y = _x_pair()
    scheme, g = Reservoir(reservoir_size=6), torch.Generator().manual_seed(6)
    for _ in range(3):
        geom.sliced_wasserstein(x, y, scheme=scheme, n_projections=16, generator=g)
    assert scheme.step == 3 and scheme.reservoir.shape == (6, 3)
    theta = scheme.directions(16, 2, generator=g)
    assert theta.shape == (16, 2) and scheme.step == 0 and scheme.reservoir.shape == (0, 2)


def test_batch_shares_one_reservoir_from_the_batch_mean_cost():
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    batched, single = Reservoir(reservoir_size=6, mixture=0.0), Reservoir(reservoir_size=6, mixture=0.0)
    for t in range(6):
        weights = torch.rand(2, 20, generator=torch.Generator().manual_seed(100 + t), dtype=torch.float64)
        th, costs, value, _ = _step(batched, lambda th: weights[:, : th.shape[0]] * 3, 20, 3, g1)
        th2, _, _, _ = _step(single, lambda th: weights[:, : th.shape[0]].mean(0, keepdim=True) * 3, 20, 3, g2)
        assert torch.equal(th, th2)
        n_res = 20 - max(20 - 6, 10) if t else 0
        assert torch.allclose(value, costs[:, n_res:].mean(1))  # each item: the mean of its fresh slices
    assert torch.equal(batched.reservoir, single.reservoir)
    assert torch.allclose(batched.log_keys, single.log_keys, rtol=1e-12, atol=0)


def test_value_and_gradient_come_from_the_fresh_slices_only():
    scheme, g = Reservoir(reservoir_size=5, mixture=0.0), torch.Generator().manual_seed(8)
    ones = lambda th: torch.ones(2, th.shape[0], dtype=torch.float64)  # noqa: E731
    _step(scheme, ones, 12, 3, g)
    costs = torch.rand(2, 12, generator=g, dtype=torch.float64).requires_grad_()
    theta, _, value, stderr = _step(scheme, lambda th: costs, 12, 3, g)
    value.sum().backward()
    n_res = 5
    assert torch.equal(costs.grad[:, :n_res], torch.zeros(2, n_res, dtype=torch.float64))
    assert torch.allclose(costs.grad[:, n_res:], torch.full((2, 7), 1 / 7, dtype=torch.float64))
    assert torch.allclose(stderr, costs.detach()[:, n_res:].std(1) / math.sqrt(7))


@pytest.mark.parametrize("d", [2, 3, 10])
def test_importance_weights_match_the_proposal(d):
    """With costs 1 the estimate is mean(rho); E_q rho = int (dU/dq) dq = 1 iff the draws near the members
    follow the density the weights assume."""
    scheme = Reservoir(reservoir_size=6, mixture=0.8, concentration=3, n_candidates=50_000)
    g = torch.Generator().manual_seed(9)
    x, y = _x_pair(d=d)
    for _ in range(3):
        geom.sliced_wasserstein(x, y, scheme=scheme, n_projections=64, generator=g)  # fills the reservoir
    assert scheme.reservoir.shape[0] > 0
    _, _, value, stderr = _step(scheme, lambda th: torch.ones(1, th.shape[0], dtype=torch.float64), 50_000, d, g)
    assert stderr.item() * math.sqrt(50_000) > 0.2  # the weights do vary: the proposal is not uniform
    assert abs(value.item() - 1.0) < 4 * stderr.item()


def _reference(x, y, p):
    res = geom.sliced_wasserstein(x, y, p=p, scheme=MonteCarlo(), n_projections=200_000, seed=123,
                                  return_result=True)
    mean = res.value.item() ** p
    return mean, res.stderr.item() * p * mean ** (1 - 1 / p)  # delta method back to E W_p^p


@pytest.mark.parametrize("mixture, p", [(0.0, 2), (0.5, 2), (0.8, 2), (0.5, 1)])
def test_unbiased_on_a_fixed_pair(mixture, p):
    x, y = _x_pair()
    ref, ref_err = _reference(x, y, p)
    scheme, g = Reservoir(reservoir_size=16, mixture=mixture), torch.Generator().manual_seed(10)
    values, errors, naive = [], [], []
    for _ in range(200):
        res = geom.sliced_wasserstein(x, y, p=p, scheme=scheme, n_projections=32, generator=g, return_result=True)
        values.append(res.value.item() ** p)
        errors.append(res.stderr.item() * p * values[-1] ** (1 - 1 / p))
        naive.append(res.costs.mean().item())
    v = torch.tensor(values, dtype=torch.float64)
    se = math.hypot(v.std().item() / math.sqrt(len(v)), ref_err)
    assert abs(v.mean().item() - ref) < 4 * se, (v.mean().item(), ref, se)
    # the reported error is the spread over calls (each estimate is unbiased given the past)
    assert 0.6 < (torch.tensor(errors) ** 2).mean().item() / v.var().item() < 1.6
    # power of the check: averaging the reservoir slices in as well would be clearly biased upwards
    assert torch.tensor(naive).mean().item() - ref > 5 * se  # measured 10 to 58 se over seeds


def test_reservoir_concentrates_on_informative_directions():
    x, y = _x_pair()
    spread = []
    for a, b in ((x, y), (x[:, [2, 1, 0]], y[:, [2, 1, 0]])):  # the pair differs along x, then along z
        scheme, g, seen = Reservoir(reservoir_size=16), torch.Generator().manual_seed(11), []
        for t in range(40):
            geom.sliced_wasserstein(a, b, scheme=scheme, n_projections=32, generator=g)
            if t >= 10 and scheme.reservoir.shape[0]:
                seen.append(scheme.reservoir[:, 0].abs().mean().item())
        assert len(seen) >= 20
        spread.append(sum(seen) / len(seen))
    assert spread[0] > 0.6  # uniform directions in 3-D: E |theta_x| = 1/2 (measured ~0.69 over seeds)
    assert spread[0] - spread[1] > 0.15  # along z instead, the members turn away from x (~0.38)


def test_same_seed_same_sequence():
    x, y = _x_pair()

    def run(seed, mixture):
        scheme, g = Reservoir(reservoir_size=8, mixture=mixture), torch.Generator().manual_seed(seed)
        out = [geom.sliced_wasserstein(x, y, scheme=scheme, n_projections=16, generator=g, return_result=True)
               for _ in range(12)]
        return torch.stack([r.directions for r in out]), torch.stack([r.value for r in out])

    for mixture in (0.0, 0.5):
        torch.manual_seed(0)
        state = torch.random.get_rng_state()
        d1, v1 = run(12, mixture)
        assert torch.equal(state, torch.random.get_rng_state())  # the global RNG is not used
        d2, v2 = run(12, mixture)
        assert torch.equal(d1, d2) and torch.equal(v1, v2)
        d3, _ = run(13, mixture)
        assert not torch.equal(d1, d3)


def test_directions_from_the_caller_get_the_plain_mean_and_leave_the_reservoir():
    x, y = _x_pair()
    scheme, g = Reservoir(reservoir_size=6), torch.Generator().manual_seed(14)
    for _ in range(3):
        geom.sliced_wasserstein(x, y, scheme=scheme, n_projections=16, generator=g)
    members, step = scheme.reservoir.clone(), scheme.step
    theta = MonteCarlo().directions(16, 3, generator=g)
    res = geom.sliced_wasserstein(x, y, scheme=scheme, directions=theta, return_result=True)
    assert res.value.item() == pytest.approx(res.costs.mean().sqrt().item(), rel=1e-12)
    assert scheme.step == step and torch.equal(scheme.reservoir, members)


def test_base_scheme_gives_the_uniform_candidates():
    class Axes(geom.SlicingScheme):
        def directions(self, n, dim, *, generator=None):
            return torch.eye(dim, dtype=torch.float64)[torch.arange(n) % dim]

    theta = Reservoir(base=Axes()).directions(7, 3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(theta, torch.eye(3, dtype=torch.float64)[torch.arange(7) % 3])


@pytest.mark.parametrize("options, error, words", [
    ({"reservoir_size": 0}, ValueError, "reservoir_size: expected a positive integer, got 0"),
    ({"reservoir_size": 2.5}, TypeError, "reservoir_size: expected a positive integer, got float"),
    ({"n_candidates": -1}, ValueError, "n_candidates: expected a positive integer"),
    ({"n_candidates": True}, TypeError, "n_candidates: expected a positive integer, got bool"),
    ({"decay": 0.0}, ValueError, "decay: expected a real number in (0, 1], got 0.0"),
    ({"decay": 1.5}, ValueError, "decay: expected a real number in (0, 1]"),
    ({"decay": "fast"}, TypeError, "decay: expected a real number in (0, 1], got str"),
    ({"ess_threshold": -0.1}, ValueError, "ess_threshold: expected a real number in [0, 1]"),
    ({"ess_threshold": math.nan}, ValueError, "ess_threshold: expected a real number in [0, 1], got nan"),
    ({"mixture": 1.0}, ValueError, "mixture: expected a real number in [0, 1), got 1.0"),
    ({"concentration": 0}, ValueError, "concentration: expected a positive integer"),
    ({"base": "no-such-scheme"}, ValueError, "base: "),
    ({"base": 3}, TypeError, "base: expected a registered name or a SlicingScheme instance"),
    ({"base": Reservoir()}, ValueError, "base: expected a scheme with uniformly distributed directions"),
    ({"size": 3}, TypeError, "unknown options ['size']"),
])
def test_bad_options(options, error, words):
    with pytest.raises(error) as info:
        Reservoir(**options)
    assert words in str(info.value)
