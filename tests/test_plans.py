"""geom.sliced_plan: marginals, exact recovery of permutations, batches, weights, N != M, errors."""

import pytest
import torch

import geom


def rand(gen, *shape):
    return torch.randn(*shape, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize("N, M, weighted", [(30, 30, False), (30, 17, False), (25, 40, True)])
def test_every_slice_plan_and_the_expected_and_min_plans_have_the_measures_as_marginals(N, M, weighted):
    gen = torch.Generator().manual_seed(N + M)
    x, y = rand(gen, N, 3), rand(gen, M, 3) + 0.5
    a = torch.rand(N, generator=gen, dtype=torch.float64) if weighted else None
    b = torch.rand(M, generator=gen, dtype=torch.float64) if weighted else None
    mu, nu = geom.measure(x, weights=a), geom.measure(y, weights=b)
    P = geom.sliced_plan(mu, nu, n_projections=9, seed=3)
    wa, wb = mu.weights[0], nu.weights[0]
    for l in range(9):
        dense = torch.zeros(N, M, dtype=torch.float64).index_put_(
            (P.rows[0, l], P.cols[0, l]), P.mass[0, l], accumulate=True)
        torch.testing.assert_close(dense.sum(1), wa, atol=1e-12, rtol=0)
        torch.testing.assert_close(dense.sum(0), wb, atol=1e-12, rtol=0)
        assert int((dense > 0).sum()) <= N + M - 1  # a monotone plan: at most N + M - 1 entries
        # its full cost is the cost of that plan in R^3
        cost = (dense * torch.cdist(x, y).square()).sum()
        torch.testing.assert_close(P.costs[0, l], cost, rtol=1e-12, atol=1e-12)
    for plan in (P.expected(), P.expected(beta=2.0), P.min_plan()):
        d = plan.to_dense()
        torch.testing.assert_close(d.sum(1), wa, atol=1e-12, rtol=0)
        torch.testing.assert_close(d.sum(0), wb, atol=1e-12, rtol=0)
    assert P.min_cost == P.costs[0].min()
    torch.testing.assert_close(P.expected_cost(), (P.expected().to_dense() * torch.cdist(x, y).square()).sum())


def test_each_slice_plan_is_monotone_along_its_direction():
    gen = torch.Generator().manual_seed(5)
    x, y = rand(gen, 20, 2), rand(gen, 13, 2)
    P = geom.sliced_plan(geom.measure(x, weights=torch.rand(20, generator=gen)), y, n_projections=4, seed=0)
    for l in range(4):
        th = P.directions[l]
        keep = P.mass[0, l] > 0
        u, v = (x @ th)[P.rows[0, l][keep]], (y @ th)[P.cols[0, l][keep]]
        order = torch.argsort(u, stable=True)
        assert bool((torch.diff(v[order]) >= -1e-12).all())  # sorted sources meet sorted targets


def test_a_permuted_copy_is_recovered_exactly():
    gen = torch.Generator().manual_seed(1)
    x = rand(gen, 200, 3)
    perm = torch.randperm(200, generator=gen)
    y = x[perm]  # y_j = x_perm[j]: x_i goes to j = perm^-1[i]
    P = geom.sliced_plan(x, y, n_projections=8, seed=2)
    inv = torch.argsort(perm)
    assert torch.equal(P.assignment("min"), inv)
    assert torch.equal(P.assignment("expected"), inv)
    assert P.min_cost == 0
    torch.testing.assert_close(P.barycentric_map(), x)


def test_the_min_plan_is_no_worse_than_any_slice_and_wins_on_a_line_shaped_pair():
    """Two clouds stretched along one axis: the slice near that axis sorts them as the optimal plan does."""
    gen = torch.Generator().manual_seed(0)
    t = torch.linspace(0, 10, 50, dtype=torch.float64)
    x = torch.stack([t, 0.01 * rand(gen, 50)], -1)
    y = torch.stack([t[torch.randperm(50, generator=gen)], 1 + 0.01 * rand(gen, 50)], -1)  # fresh noise
    P = geom.sliced_plan(x, y, directions=torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]))
    assert int(P.min_index) == 0
    perm = torch.argsort(y[:, 0])  # the slice along t pairs equal t: only the second coordinates differ
    torch.testing.assert_close(P.min_cost, (x[:, 1] - y[perm, 1]).square().mean())
    assert float(P.costs[0, 1]) > 10


def test_batches_equal_the_items_one_by_one_with_padding():
    gen = torch.Generator().manual_seed(4)
    x, y = rand(gen, 2, 12, 3), rand(gen, 2, 9, 3)
    a = torch.rand(2, 12, generator=gen, dtype=torch.float64)
    a[1, 10:] = 0  # padding
    th = torch.nn.functional.normalize(rand(gen, 5, 3), dim=-1)
    P = geom.sliced_plan(geom.measure(x, weights=a), y, directions=th)
    for i in range(2):
        Q = geom.sliced_plan(geom.measure(x[i], weights=a[i]), y[i], directions=th)
        torch.testing.assert_close(P.expected().to_dense()[i], Q.expected().to_dense())
        torch.testing.assert_close(P.min_plan().to_dense()[i], Q.min_plan().to_dense())
        torch.testing.assert_close(P.costs[i], Q.costs[0])
    T = P.barycentric_map()
    assert T.shape == (2, 12, 3)
    assert torch.isnan(T[1, 10:]).all() and torch.isfinite(T[1, :10]).all()  # padding is not moved, not zeroed
    assert (P.assignment()[1, 10:] == -1).all()


def test_barycentric_map_is_the_plan_average_of_the_targets():
    gen = torch.Generator().manual_seed(8)
    x, y = rand(gen, 15, 2), rand(gen, 11, 2)
    a = torch.rand(15, generator=gen, dtype=torch.float64)
    mu = geom.measure(x, weights=a)
    P = geom.sliced_plan(mu, y, n_projections=6, seed=1)
    E = P.expected().to_dense()
    torch.testing.assert_close(P.barycentric_map(), (E @ y) / mu.weights[0][:, None])
    Pm = P.min_plan().to_dense()
    torch.testing.assert_close(P.barycentric_map("min"), (Pm @ y) / mu.weights[0][:, None])


def test_same_seed_same_plan_and_the_scheme_draws_the_directions():
    x, y = torch.randn(40, 3, generator=torch.Generator().manual_seed(0)), torch.randn(30, 3)
    P1 = geom.sliced_plan(x, y, n_projections=5, seed=7)
    P2 = geom.sliced_plan(x, y, n_projections=5, seed=7)
    assert torch.equal(P1.rows, P2.rows) and torch.equal(P1.directions, P2.directions)
    d = geom.sliced_wasserstein(x, y, n_projections=5, seed=7, return_result=True).directions
    assert torch.equal(P1.directions, d)  # the same draws as the SW estimator
    Q = geom.sliced_plan(x, y, n_projections=8, scheme="qmc", seed=7)
    assert Q.directions.shape == (8, 3)


def test_errors_name_the_argument():
    x = torch.randn(10, 3)
    with pytest.raises(ValueError, match="expected the same dimension"):
        geom.sliced_plan(x, torch.randn(10, 2))
    with pytest.raises(ValueError, match="n_projections"):
        geom.sliced_plan(x, x, n_projections=0)
    with pytest.raises(ValueError, match="beta"):
        geom.sliced_plan(x, x, n_projections=2, seed=0).expected(beta=-1)
    with pytest.raises(ValueError, match="which: expected 'expected' or 'min'"):
        geom.sliced_plan(x, x, n_projections=2, seed=0).barycentric_map("best")
    with pytest.raises(ValueError, match="directions"):
        geom.sliced_plan(x, x, directions=torch.randn(4, 2))


def test_unbalanced_sliced_ot_is_balanced_at_infinite_penalty_and_sheds_outliers():
    from geom.plans import unbalanced_sliced_ot

    gen = torch.Generator().manual_seed(0)
    x, y = rand(gen, 60, 2), rand(gen, 60, 2)
    th = torch.nn.functional.normalize(rand(gen, 5, 2), dim=-1)
    inf = float("inf")
    bal = unbalanced_sliced_ot(x, y, (inf, inf), directions=th)
    sw2 = geom.sliced_wasserstein(x, y, directions=th) ** 2
    torch.testing.assert_close(bal.value, sw2, rtol=1e-10, atol=0)
    # 10 far outliers in the target: a small penalty lets the transport drop their mass
    y_out = torch.cat([y[:50], rand(gen, 10, 2) + 30])
    r = unbalanced_sliced_ot(x, y_out, 0.5, directions=th)
    kept = r.target_weights[0]  # (L, M)
    assert (kept[:, 50:].sum(-1) < 0.1 * kept[:, :50].sum(-1) / 5).all()  # outliers keep < 2% of their 1/6
    assert float(r.value) < float(geom.sliced_wasserstein(x, y_out, directions=th) ** 2) / 10
    with pytest.raises(ValueError, match="reg_m"):
        unbalanced_sliced_ot(x, y, -1.0, directions=th)


def test_unbalanced_sliced_ot_stays_below_the_balanced_cost_it_bounds():
    """UOT_theta <= W_2^2(theta#mu, theta#nu) (the balanced plan is feasible, KL 0): Frank-Wolfe must have
    converged for that; with POT's 10 steps this case gives 5.0 against 0.006."""
    from geom.plans import unbalanced_sliced_ot

    gen = torch.Generator().manual_seed(0)
    x, y = rand(gen, 1000, 3), rand(gen, 800, 3)
    th = torch.nn.functional.normalize(rand(gen, 8, 3), dim=-1)
    r = unbalanced_sliced_ot(x, y, 0.5, directions=th)
    balanced = geom.sliced_wasserstein(x, y, directions=th, return_result=True).costs  # (L,) per slice
    assert (r.costs <= balanced * (1 + 1e-6)).all(), (r.costs, balanced)


def test_plans_of_float32_clouds_far_from_the_origin_keep_their_order():
    """Clouds on a 1/64 grid moved by (8192, -8192, 16384), exactly representable in float32: raw
    projections (near 2e4, float32 spacing 2e-3) would misorder gaps of about 1e-2; the plans sort
    centred projections and equal the plans of the same clouds near the origin."""
    g = torch.Generator().manual_seed(0)
    x, y = ((torch.rand(n, 3, generator=g) * 64).round() / 64 for n in (500, 400))
    far = torch.tensor([8192.0, -8192.0, 16384.0])
    assert torch.equal((x + far) - far, x) and torch.equal((y + far) - far, y)  # exact
    th = torch.nn.functional.normalize(torch.randn(16, 3, generator=g), dim=-1)
    near = geom.sliced_plan(x, y, directions=th)
    moved = geom.sliced_plan(x + far, y + far, directions=th)
    assert torch.equal(near.assignment(), moved.assignment())
