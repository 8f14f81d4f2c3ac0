"""geom.sliced_plan against POT's sliced plans (``ot.sliced.sliced_plans``, ``ot.min_sliced_transport_plan``,
``ot.expected_sliced_plan``, POT >= 0.9.6), on the same directions (POT's projections are ``(d, L)``)."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

ot = pytest.importorskip("ot")
if not hasattr(ot, "expected_sliced_plan"):
    pytest.skip(f"POT {ot.__version__} has no sliced plans (0.9.6 added them)", allow_module_level=True)

import geom  # noqa: E402


def _pot_weights_entries_right() -> bool:
    """POT before PR #846 (issue #845) weighs the pairs of ``sparse_ot_dist`` by ``w[i]`` (the source
    index) instead of ``w[k]`` (the entry): its per-slice costs, hence its min-SWGG choice and its
    ``beta > 0`` weights, are wrong wherever a slice's plan is not a permutation (weights, N != M)."""
    x = np.array([[0.0], [1.0]])
    got = ot.utils.sparse_ot_dist(x, x, np.array([0, 0]), np.array([0, 1]), np.array([0.0, 1.0]))
    return abs(float(got) - 1.0) < 1e-12


POT_COSTS_RIGHT = _pot_weights_entries_right()


def pot_reference(x, y, a, b, th, metric="sqeuclidean"):
    """POT's per-slice plans (dense) and their costs: POT's own where they are right, else the plans'
    costs on POT's ``ot.dist`` matrix (the fix of PR #846)."""
    plans, costs = ot.sliced.sliced_plans(x, y, a, b, metric=metric, projections=th.T)
    dense = [np.asarray(sp.coo_matrix(
        (pl.data, (pl.rows, pl.cols)), shape=(len(x), len(y))).toarray()) for pl in plans]
    if not POT_COSTS_RIGHT:
        C = ot.dist(x, y, metric=metric)
        costs = [float((G * C).sum()) for G in dense]
    return dense, np.asarray(costs, dtype=np.float64)


def case(seed, N, M, weighted, d=3):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(N, d)), rng.normal(size=(M, d)) * [1.0, 2.0, 0.5][:d] + 0.3
    a = rng.random(N) if weighted else np.full(N, 1.0 / N)
    b = rng.random(M) if weighted else np.full(M, 1.0 / M)
    th = rng.normal(size=(12, d))
    th /= np.linalg.norm(th, axis=1, keepdims=True)
    return x, y, a / a.sum(), b / b.sum(), th


CASES = [(0, 40, 40, False), (1, 40, 25, False), (2, 30, 45, True), (3, 50, 50, True)]


def permutation_case(seed, N, M, weighted):
    return N == M and not weighted  # POT's functions are right there whatever its version


@pytest.mark.parametrize("seed, N, M, weighted", CASES)
def test_each_slice_plan_equals_pot(seed, N, M, weighted):
    x, y, a, b, th = case(seed, N, M, weighted)
    plans, _ = pot_reference(x, y, a, b, th)
    P = geom.sliced_plan(geom.measure(torch.tensor(x), weights=torch.tensor(a)),
                         geom.measure(torch.tensor(y), weights=torch.tensor(b)), directions=torch.tensor(th))
    for l, G in enumerate(plans):
        ours = np.zeros((N, M))
        np.add.at(ours, (P.rows[0, l].numpy(), P.cols[0, l].numpy()), P.mass[0, l].numpy())
        np.testing.assert_allclose(ours, G, atol=1e-12)


@pytest.mark.parametrize("seed, N, M, weighted", CASES)
@pytest.mark.parametrize("beta", [0.0, 3.0])
def test_expected_plan_equals_pot(seed, N, M, weighted, beta):
    x, y, a, b, th = case(seed, N, M, weighted)
    if beta == 0 or permutation_case(seed, N, M, weighted) or POT_COSTS_RIGHT:
        ref, ref_cost = ot.expected_sliced_plan(x, y, a, b, projections=th.T, beta=beta)
    else:  # POT's softmax(-beta C) of its per-slice plans, on the right costs
        plans, costs = pot_reference(x, y, a, b, th)
        w = np.exp(-beta * costs - np.logaddexp.reduce(-beta * costs))
        ref, ref_cost = sum(wl * G for wl, G in zip(w, plans)), float((w * costs).sum())
    P = geom.sliced_plan(geom.measure(torch.tensor(x), weights=torch.tensor(a)),
                         geom.measure(torch.tensor(y), weights=torch.tensor(b)), directions=torch.tensor(th))
    np.testing.assert_allclose(P.expected(beta).to_dense().numpy(), ref, atol=1e-12)
    np.testing.assert_allclose(float(P.expected_cost(beta)), float(ref_cost), rtol=1e-10)


@pytest.mark.parametrize("seed, N, M, weighted", CASES)
def test_min_swgg_plan_and_cost_equal_pot(seed, N, M, weighted):
    x, y, a, b, th = case(seed, N, M, weighted)
    if permutation_case(seed, N, M, weighted) or POT_COSTS_RIGHT:
        ref, ref_cost = ot.min_sliced_transport_plan(x, y, a, b, projections=th.T)
    else:  # POT's per-slice plans, the cheapest by the right costs
        plans, costs = pot_reference(x, y, a, b, th)
        ref, ref_cost = plans[int(np.argmin(costs))], costs.min()
    P = geom.sliced_plan(geom.measure(torch.tensor(x), weights=torch.tensor(a)),
                         geom.measure(torch.tensor(y), weights=torch.tensor(b)), directions=torch.tensor(th))
    np.testing.assert_allclose(P.min_plan().to_dense().numpy(), ref, atol=1e-12)
    np.testing.assert_allclose(float(P.min_cost), float(ref_cost), rtol=1e-10)


@pytest.mark.parametrize("metric, p", [("sqeuclidean", 2), ("euclidean", 1)])
def test_per_slice_costs_equal_pot(metric, p):
    x, y, a, b, th = case(7, 35, 28, True)
    _, ref_costs = pot_reference(x, y, a, b, th, metric=metric)
    P = geom.sliced_plan(geom.measure(torch.tensor(x), weights=torch.tensor(a)),
                         geom.measure(torch.tensor(y), weights=torch.tensor(b)), p=p, directions=torch.tensor(th))
    np.testing.assert_allclose(P.costs[0].numpy(), np.asarray(ref_costs), rtol=1e-10)


# ---------------------------------------------------------------- unbalanced sliced OT


def uot_case(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(40, 3, generator=g, dtype=torch.float64)
    y = torch.randn(25, 3, generator=g, dtype=torch.float64) + 0.5
    a, b = torch.rand(40, generator=g, dtype=torch.float64), torch.rand(25, generator=g, dtype=torch.float64)
    th = torch.nn.functional.normalize(torch.randn(7, 3, generator=g, dtype=torch.float64), dim=-1)
    return x, y, a / a.sum(), b / b.sum(), th


@pytest.mark.parametrize("reg_m", [0.5, 2.0, (0.3, 3.0), (1e8, 1.0)])
def test_sliced_unbalanced_ot_equals_pot(reg_m):
    from geom.plans import unbalanced_sliced_ot

    x, y, a, b, th = uot_case()
    ref = float(ot.sliced_unbalanced_ot(x, y, reg_m, a, b, projections=th.T, numItermax=10))
    ours = unbalanced_sliced_ot(geom.measure(x, weights=a), geom.measure(y, weights=b), reg_m, directions=th,
                                n_iter=10)
    np.testing.assert_allclose(float(ours.value), ref, rtol=1e-7)


def test_semi_relaxed_limit_is_continuous():
    """reg_m = (inf, rho) keeps the source marginal: equal to POT's large finite rho_1 (POT 0.9.7's own inf
    branch returns another number, 0.986 against its limit 0.2908 on this case)."""
    from geom.plans import unbalanced_sliced_ot

    x, y, a, b, th = uot_case()
    ref = float(ot.sliced_unbalanced_ot(x, y, (1e8, 1.0), a, b, projections=th.T, numItermax=10))
    ours = unbalanced_sliced_ot(geom.measure(x, weights=a), geom.measure(y, weights=b), (float("inf"), 1.0),
                                directions=th, n_iter=10)
    np.testing.assert_allclose(float(ours.value), ref, rtol=1e-6)
    torch.testing.assert_close(ours.source_weights[0], a.expand(7, -1))  # the kept marginal
