"""One estimator: every user of the sliced flow goes through the core's prepare/finish path, so every
scheme's directions and estimate apply on every path, in every representation's direction space."""

from __future__ import annotations

import math

import pytest
import torch

import geom
from geom.flows import swf
from geom.mmd import sliced_energy_distance
from geom_plugins.aswd import Augmented
from geom_plugins.dsw import Distributional, VonMisesFisherDSW
from geom_plugins.maxsliced import MaxSliced
from geom_plugins.qmc import QuasiMonteCarlo
from geom_plugins.reservoir import Reservoir
from geom_plugins.sphere import sliced_wasserstein_sphere_uniform

F64 = torch.float64


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _cloud(n, d, seed, shift=0.0):
    return torch.randn(n, d, generator=_gen(seed), dtype=F64) + shift


def _on_sphere(n, d, seed, shift=0.0):
    x = torch.randn(n, d, generator=_gen(seed), dtype=F64)
    x[:, 0] += shift
    return x / x.norm(dim=1, keepdim=True)


def _spd(n, k, seed, spread=1.0):
    a = torch.randn(n, k, k, generator=_gen(seed), dtype=F64)
    return a @ a.transpose(1, 2) * spread + torch.eye(k, dtype=F64)


# Each path: a call (scheme instance, **kw) -> SlicedResult, on data that differ.
PATHS = {
    "points": lambda scheme, **kw: geom.sliced_wasserstein(_cloud(60, 3, 0), _cloud(50, 3, 1, 0.5), scheme=scheme,
                                                           return_result=True, **kw),
    "sphere": lambda scheme, **kw: geom.sliced_wasserstein(
        geom.measure(_on_sphere(60, 3, 2), kind="sphere"), geom.measure(_on_sphere(50, 3, 3, 2.0), kind="sphere"),
        scheme=scheme, return_result=True, **kw),
    "spd": lambda scheme, **kw: geom.sliced_wasserstein(
        geom.measure(_spd(20, 3, 4), kind="spd"), geom.measure(_spd(25, 3, 5, 2.0), kind="spd"), scheme=scheme,
        return_result=True, **kw),
    "sphere-to-uniform": lambda scheme, **kw: sliced_wasserstein_sphere_uniform(
        _on_sphere(60, 3, 6, 2.0), scheme=scheme, return_result=True, **kw),
    "energy": lambda scheme, **kw: sliced_energy_distance(_cloud(60, 3, 7), _cloud(50, 3, 8, 0.5), scheme=scheme,
                                                          return_result=True, **kw),
}
NATIVE = {"points": (3,), "sphere": (3, 2), "spd": (3, 3), "sphere-to-uniform": (3, 2), "energy": (3,)}


@pytest.mark.parametrize("path", sorted(PATHS))
def test_qmc_randomisation_groups_give_a_finite_stderr_on_every_path(path):
    """Two randomisations: the stderr is the spread of the two group means, finite; one: nan. The
    sphere-to-uniform distance skipped the scheme's estimate before, and reported an i.i.d. error."""
    two = PATHS[path](QuasiMonteCarlo(n_randomizations=2), n_projections=32, seed=0)
    one = PATHS[path](QuasiMonteCarlo(), n_projections=32, seed=0)
    assert math.isfinite(two.stderr.item()) and two.stderr.item() > 0
    assert math.isnan(one.stderr.item())
    assert tuple(two.directions.shape) == (32, *NATIVE[path])  # the representation's own shape
    # the value is the mean of the two group means, so differs from the plain mean of unequal groups only
    # by their weights: here 16 + 16, the plain mean of the costs (in units of scale)
    costs = two.scaled_costs
    assert costs.mean().item() == pytest.approx((costs[:16].mean().item() + costs[16:].mean().item()) / 2)


@pytest.mark.parametrize("path", sorted(PATHS))
def test_directions_given_by_the_caller_get_the_plain_mean_on_every_path(path):
    drawn = PATHS[path](QuasiMonteCarlo(n_randomizations=2), n_projections=16, seed=1)
    scheme = QuasiMonteCarlo(n_randomizations=2)
    again = PATHS[path](scheme, directions=drawn.directions)
    assert math.isnan(again.stderr.item())  # not the scheme's draw: no groups to use
    torch.testing.assert_close(again.scaled_costs, drawn.scaled_costs)


@pytest.mark.parametrize("path", sorted(PATHS))
def test_the_reservoir_learns_on_every_path(path):
    scheme = Reservoir(reservoir_size=4)
    PATHS[path](scheme, n_projections=16, seed=2)
    assert scheme.step == 1 and scheme.reservoir.shape[0] == 4
    members = scheme.reservoir.clone()
    r = PATHS[path](scheme, n_projections=16, seed=3)
    assert scheme.step == 2
    flat = r.directions.detach().reshape(16, -1).double()
    assert torch.allclose(flat[:4], members, atol=1e-6)  # the members come first, in the native shape
    PATHS[path](scheme, directions=r.directions)  # the caller's directions: no update
    assert scheme.step == 2


def test_the_reservoir_learns_inside_the_swf():
    scheme = Reservoir(reservoir_size=4)
    swf(_cloud(40, 2, 9), _cloud(40, 2, 10, 3.0), steps=3, step_size=0.5, n_projections=16, scheme=scheme, seed=0)
    assert scheme.step == 3


def test_schemes_built_on_the_euclidean_sphere_say_so_elsewhere():
    sphere = geom.measure(_on_sphere(20, 3, 11), kind="sphere")
    cases = [
        (VonMisesFisherDSW(n_steps=1), "von Mises-Fisher law needs directions on the Euclidean sphere"),
        (QuasiMonteCarlo(point_set="spiral"), "point_set 'spiral' needs directions on the Euclidean sphere"),
        (QuasiMonteCarlo(point_set="equal_area"), "point_set 'equal_area' needs directions on the Euclidean sphere"),
        (Reservoir(mixture=0.5), r"mixture > 0 .* needs directions on the Euclidean sphere"),
    ]
    for scheme, message in cases:
        with pytest.raises(ValueError, match=message + r".*\(L, 3, 2\) orthonormal frames"):
            geom.sliced_wasserstein(sphere, sphere, scheme=scheme, n_projections=8, seed=0)
    with pytest.raises(ValueError, match="scheme 'cv': control variates need linear projections"):
        sliced_wasserstein_sphere_uniform(sphere, scheme="cv", n_projections=8, seed=0)
    with pytest.raises(ValueError, match="needs directions with the uniform law"):
        sliced_wasserstein_sphere_uniform(sphere, scheme="max", n_projections=8, seed=0)


class _FirstContract(geom.SlicingScheme):
    """A third-party scheme of the first release: ``directions(n, dim)`` returns unit rows."""

    def directions(self, n, dim, *, generator=None):
        return torch.eye(dim, dtype=F64)[torch.arange(n) % dim]


class _Stretched(geom.DirectionSpace):
    """Unit rows from Gaussian vectors stretched along the first axis: not scale-invariant."""

    shape, gaussian_dim = (3,), 3

    def from_gaussian(self, z):
        z = z + torch.tensor([1.0, 0.0, 0.0], dtype=z.dtype)  # depends on the length of z
        return z / z.norm(dim=-1, keepdim=True)

    def coordinates(self, directions):
        return directions - torch.tensor([1.0, 0.0, 0.0], dtype=directions.dtype)  # from_gaussian gives them back

    def _validate(self, directions, name):
        pass


def test_qmc_energy_sets_need_a_scale_invariant_map_from_gaussian_coordinates():
    with pytest.raises(ValueError, match="point_set: 'max_distance' spreads points on a sphere"):
        QuasiMonteCarlo(point_set="max_distance").directions(8, _Stretched(), generator=_gen(0))
    theta = QuasiMonteCarlo().directions(8, _Stretched(), generator=_gen(0))  # the default there: Sobol
    assert theta.shape == (8, 3)
    torch.testing.assert_close(_Stretched().from_gaussian(_Stretched().coordinates(theta)), theta)


def test_a_scheme_of_the_first_contract_still_works_on_unit_rows_and_is_refused_on_frames():
    x, y = _cloud(10, 3, 12), _cloud(10, 3, 13)
    with pytest.warns(DeprecationWarning, match="directions.*deprecated"):
        value = geom.sliced_wasserstein(x, y, scheme=_FirstContract(), n_projections=3)
    assert value.item() == pytest.approx(geom.sliced_wasserstein(x, y, directions=torch.eye(3, dtype=F64)).item())
    sphere = geom.measure(_on_sphere(20, 3, 14), kind="sphere")
    with pytest.raises(ValueError, match=r"_FirstContract: directions\(n, dim\) of the first plugin contract needs "
                                         r"directions on the Euclidean sphere"):
        geom.sliced_wasserstein(sphere, sphere, scheme=_FirstContract(), n_projections=3)


@pytest.mark.parametrize("space", [geom.UnitSphere(4), geom.Frames(4), geom.SymmetricDirections(3)])
def test_every_direction_space_samples_checks_and_inverts_its_own_directions(space):
    theta = space.sample(50, _gen(15))
    assert theta.shape == (50, *space.shape) and theta.dtype == F64
    assert torch.equal(space.check(theta, "directions"), theta)
    torch.testing.assert_close(space.from_gaussian(space.coordinates(theta)), theta, rtol=0, atol=1e-12)
    assert torch.equal(space.sample(50, _gen(15)), theta) and not torch.equal(space.sample(50, _gen(16)), theta)
    with pytest.raises(ValueError, match=r"directions: expected shape \(L, " + ", ".join(map(str, space.shape))):
        space.check(theta.reshape(50, -1)[:, :-1], "directions")
    with pytest.raises(ValueError, match="directions: expected finite values"):
        space.check(torch.full_like(theta, math.nan), "directions")
    with pytest.raises(ValueError, match="directions: expected (unit|orthonormal)"):
        space.check(2 * theta, "directions")
    with pytest.raises(TypeError, match="directions: expected an \\(L, "):
        space.check("abc", "directions")


def test_a_direction_space_must_give_the_gaussian_coordinates_of_its_directions():
    class NoCoordinates(geom.DirectionSpace):
        def from_gaussian(self, z):
            return z / z.norm(dim=-1, keepdim=True)

        def _validate(self, directions, name):
            pass

    with pytest.raises(TypeError, match="abstract"):
        NoCoordinates()


def test_an_int_space_means_unit_rows():
    scheme = geom.registry.get_scheme("mc")()
    assert torch.equal(scheme.directions(5, 3, generator=_gen(17)), scheme.directions(5, geom.UnitSphere(3),
                                                                                         generator=_gen(17)))
    with pytest.raises(TypeError, match="space: expected a geom.DirectionSpace or a dimension"):
        scheme.directions(5, "three", generator=_gen(17))


def test_qmc_spreads_its_points_over_the_frames_being_sliced():
    """qmc's default in the frames (an even, Haar-rotated set of Gaussian coordinates, through the frames'
    own map) beats Monte Carlo on the distance to the uniform law: the root-mean-square error over 40
    seeds at L = 64, against a reference of 2e5 Monte Carlo slices, is below 0.6 of Monte Carlo's
    (measured 0.43; the plain Sobol set gives 0.72)."""
    x = _on_sphere(80, 3, 18, 1.5)
    ref = sliced_wasserstein_sphere_uniform(x, n_projections=200_000, seed=99).item()

    def rmse(make):
        errs = [sliced_wasserstein_sphere_uniform(x, scheme=make(), n_projections=64, seed=s).item() - ref
                for s in range(40)]
        return math.sqrt(sum(e * e for e in errs) / len(errs))

    mc, qmc = rmse(lambda: "mc"), rmse(QuasiMonteCarlo)
    assert qmc < 0.6 * mc, (qmc, mc)


@pytest.mark.parametrize("make", [lambda: MaxSliced(n_steps=0), lambda: Distributional(n_steps=0),
                                  lambda: VonMisesFisherDSW(n_steps=0), lambda: Augmented(n_steps=0)],
                         ids=["max", "dsw", "vmf-dsw", "aswd"])
def test_zero_ascent_steps_are_valid_for_every_learnable_scheme(make):
    x, y = _cloud(40, 3, 19), _cloud(30, 3, 20, 1.0)
    scheme = make()
    r = geom.sliced_wasserstein(x, y, scheme=scheme, n_projections=8, seed=0, return_result=True)
    assert math.isfinite(r.value.item()) and r.value.item() > 0
    before = {k: v.clone() for k, v in scheme.state_dict().items() if isinstance(v, torch.Tensor)}
    geom.sliced_wasserstein(x, y, scheme=scheme, n_projections=8, seed=1)
    for k, v in before.items():  # nothing learned: the parameters a fit would move stay put
        if k in ("weight_", "bias_", "location_"):
            assert torch.equal(scheme.state_dict()[k], v), k


def test_max_sliced_at_zero_steps_is_the_best_of_its_starts():
    x, y = _cloud(40, 3, 21), _cloud(30, 3, 22, 1.0)
    scheme = MaxSliced(n_steps=0, n_starts=5, warm_start=False)
    value = geom.sliced_wasserstein(x, y, scheme=scheme, n_projections=1, seed=3)
    starts = torch.randn(5, 3, generator=_gen(3), dtype=F64)  # the starts drawn from the generator
    starts = starts / starts.norm(dim=1, keepdim=True)
    best = geom.sliced.slice_distances(geom.measure(x), geom.measure(y), starts, 2.0).max().item()
    assert value.item() == pytest.approx(best, rel=1e-12)
