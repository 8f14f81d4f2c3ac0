"""geom.testing: the contract checks pass on the built-ins and fail, with a helpful message, on broken plugins."""

import math

import numpy as np
import pytest
import torch

import geom
import geom.testing
from geom.registry import _registry, get_scheme

MonteCarlo = get_scheme("mc")
PointCloud = _registry.tables["representations"]["points"][0]


def _unit(t):
    return t / t.norm(dim=1, keepdim=True)


class FixedAxes(geom.SlicingScheme):
    """The README example: cycle through the coordinate axes."""

    def directions(self, n, dim, *, generator=None):
        return torch.eye(dim)[torch.arange(n) % dim]


# --------------------------------------------------------------------------------------------------
# Passing: the built-ins and the README example


def test_builtin_mc_scheme_passes():
    geom.testing.check_scheme(MonteCarlo)


def test_readme_fixedaxes_passes_and_restricted_dims_are_honoured():
    geom.testing.check_scheme(FixedAxes)
    geom.testing.check_scheme(FixedAxes, dims=(3,))


def test_check_scheme_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(4)
    torch.manual_seed(123)
    geom.testing.check_scheme(MonteCarlo)
    with pytest.raises(AssertionError):
        geom.testing.check_scheme(GlobalRng)  # draws from the global RNG, inside the check
    assert torch.equal(torch.rand(4), expected)


@pytest.mark.parametrize(
    "example, options",
    [
        (torch.randn(20, 3, generator=torch.Generator().manual_seed(0)).requires_grad_(), {}),
        (torch.randn(2, 15, 3, generator=torch.Generator().manual_seed(1)).requires_grad_(), {}),
        (np.random.default_rng(2).normal(size=(12, 2)), {}),  # float64, no autograd
        ([[0.0, 1.0, 2.0], [1.0, -1.0, 0.5], [3.0, 0.0, 0.0]], {"weights": [1.0, 2.0, 0.0]}),
    ],
    ids=["tensor-grad", "batched-grad", "numpy-f64", "list-weighted"],
)
def test_builtin_points_representation_passes(example, options):
    geom.testing.check_representation(PointCloud, example, **options)


def test_unregistered_representation_goes_through_its_projection():
    class Unregistered(PointCloud):
        pass

    geom.testing.check_representation(Unregistered, torch.randn(10, 3).requires_grad_())


def test_scheme_options_reach_the_class():
    class Scaled(geom.SlicingScheme):
        def __init__(self, *, flip):
            super().__init__()
            self.flip = flip

        def directions(self, n, dim, *, generator=None):
            theta = _unit(torch.randn(n, dim, generator=generator))
            return -theta if self.flip else theta

    geom.testing.check_scheme(Scaled, flip=True)
    with pytest.raises(AssertionError, match=r"Scaled\(\) raised TypeError"):
        geom.testing.check_scheme(Scaled)


def test_dims_argument_is_validated():
    with pytest.raises(ValueError, match="dims"):
        geom.testing.check_scheme(MonteCarlo, dims=())
    with pytest.raises(ValueError, match="dims"):
        geom.testing.check_scheme(MonteCarlo, dims=(3, 0))
    with pytest.raises(TypeError, match="dims"):
        geom.testing.check_scheme(MonteCarlo, dims=3)


# --------------------------------------------------------------------------------------------------
# Broken schemes: each violation is caught with a message that says what is wrong


class NotAScheme:
    def directions(self, n, dim, *, generator=None):
        return _unit(torch.randn(n, dim, generator=generator))


class NonUnit(geom.SlicingScheme):
    def directions(self, n, dim, *, generator=None):
        return 2.0 * _unit(torch.randn(n, dim, generator=generator))


class Transposed(geom.SlicingScheme):
    def directions(self, n, dim, *, generator=None):
        return _unit(torch.randn(dim, n, generator=generator))


class NanRow(geom.SlicingScheme):
    def directions(self, n, dim, *, generator=None):
        theta = _unit(torch.randn(n, dim, generator=generator))
        theta[-1] = math.nan
        return theta


class NumpyDirections(geom.SlicingScheme):
    def directions(self, n, dim, *, generator=None):
        return np.eye(dim)[np.arange(n) % dim]


class IntegerDirections(geom.SlicingScheme):
    def directions(self, n, dim, *, generator=None):
        return torch.eye(dim, dtype=torch.int64)[torch.arange(n) % dim]


class NoGeneratorKeyword(geom.SlicingScheme):
    def directions(self, n, dim):
        return torch.eye(dim)[torch.arange(n) % dim]


class GlobalRng(geom.SlicingScheme):
    """Ignores the generator and draws from torch's unseeded global RNG."""

    def directions(self, n, dim, *, generator=None):
        return _unit(torch.randn(n, dim))


class ReseedsGlobalRng(geom.SlicingScheme):
    """Reproducible, but by reseeding torch's global RNG behind the caller's back."""

    def directions(self, n, dim, *, generator=None):
        torch.manual_seed(0)
        return _unit(torch.randn(n, dim))


class ScalarEstimate(MonteCarlo):
    def estimate(self, costs, context):
        return costs.mean(), costs.std()


class ValueOnlyEstimate(MonteCarlo):
    def estimate(self, costs, context):
        return costs.mean(-1)


class NanEstimate(MonteCarlo):
    def estimate(self, costs, context):
        value, stderr = super().estimate(costs, context)
        return value * math.nan, stderr


class NegativeStderr(MonteCarlo):
    def estimate(self, costs, context):
        value, stderr = super().estimate(costs, context)
        return value, -torch.ones_like(value)


class BiasedEstimate(MonteCarlo):
    def estimate(self, costs, context):
        value, stderr = super().estimate(costs, context)
        return value + 1.0, stderr


class DetachedEstimate(MonteCarlo):
    def estimate(self, costs, context):
        value, stderr = super().estimate(costs, context)
        return value.detach(), stderr


class OnlyThree(geom.SlicingScheme):
    def directions(self, n, dim, *, generator=None):
        if dim != 3:
            raise ValueError(f"dim: expected 3, got {dim}")
        return _unit(torch.randn(n, dim, generator=generator))


@pytest.mark.parametrize(
    "cls, pattern",
    [
        (NotAScheme, r"expected a subclass of geom\.SlicingScheme"),
        (NonUnit, r"directions\(n=1, dim=1, generator=g\) returned row 0 with norm 2; expected unit rows"),
        (Transposed, r"directions\(n=2, dim=1, generator=g\) returned shape \(1, 2\); expected \(2, 1\)"),
        (NanRow, r"directions\(n=1, dim=1, generator=g\) returned non-finite values"),
        (NumpyDirections, r"returned ndarray of shape \(1, 1\).*expected a torch\.Tensor"),
        (IntegerDirections, r"returned dtype torch\.int64; expected a real floating dtype"),
        (NoGeneratorKeyword, r"directions\(n=1, dim=1, generator=g\) raised TypeError"),
        (GlobalRng, r"not reproducible: two instances given two generators seeded with \d+"),
        (ReseedsGlobalRng, r"changed torch's global random state"),
        (ScalarEstimate, r"value from estimate\(costs of shape \(3, 16\), context\) has shape \(\); expected \(3,\)"),
        (ValueOnlyEstimate, r"estimate\(.*\) returned Tensor of shape \(3,\).*expected a pair \(value, stderr\)"),
        (NanEstimate, r"the value from estimate\(.*\) = \[nan, nan, nan\]; expected finite values"),
        (NegativeStderr, r"the stderr from estimate\(.*\) = \[-1\.0, -1\.0, -1\.0\]; expected non-negative"),
        (BiasedEstimate, r"geom\.sliced_wasserstein\(x, x, .*\) = 1\.0; expected 0"),
        (DetachedEstimate, r"does not depend on the support"),
        (OnlyThree, r"directions\(n=1, dim=1, generator=g\) raised ValueError: dim: expected 3, got 1"),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else "",
)
def test_broken_scheme_fails_with_a_helpful_message(cls, pattern):
    with pytest.raises(AssertionError, match=pattern) as info:
        geom.testing.check_scheme(cls)
    assert str(info.value).startswith(f"check_scheme({cls.__qualname__}): ")


def test_scheme_limited_to_some_dims_passes_when_told():
    geom.testing.check_scheme(OnlyThree, dims=(3,))


# --------------------------------------------------------------------------------------------------
# Broken representations


class NotARepresentation:
    linear = True


class UnnormalisedWeights(PointCloud):
    def build(self, obj, *, weights=None, **options):
        m = super().build(obj, weights=weights, **options)
        return geom.Measure(m.support, 2 * m.weights, kind=m.kind, batched=m.batched, uniform=m.uniform)


class NegativeWeights(PointCloud):
    def build(self, obj, *, weights=None, **options):
        m = super().build(obj, weights=weights, **options)
        w = m.weights.clone()
        w[:, 0], w[:, 1] = -w[:, 0], w[:, 1] + 2 * w[:, 0]  # still sums to 1
        return geom.Measure(m.support, w, kind=m.kind, batched=m.batched, uniform=False)


class ReturnsSupport(PointCloud):
    def build(self, obj, *, weights=None, **options):
        return super().build(obj, weights=weights, **options).support


class PointsLast(PointCloud):
    def project(self, support, directions):
        return support @ directions.T  # (B, N, L): the wrong order


class FalselyLinear(PointCloud):
    def project(self, support, directions):
        return super().project(support, directions).tanh()


class Detaching(PointCloud):
    linear = False

    def project(self, support, directions):
        return super().project(support.detach(), directions)


class Jittery(PointCloud):
    """Projections that change from call to call: SW(mu, mu) is not 0."""

    linear = False

    def project(self, support, directions):
        u = super().project(support, directions)
        return u + torch.rand(u.shape, dtype=u.dtype)


@pytest.mark.parametrize(
    "cls, pattern",
    [
        (NotARepresentation, r"expected a subclass of geom\.Representation"),
        (UnnormalisedWeights, r"weights summing to \[2\] per measure; expected 1"),
        (NegativeWeights, r"weights with negative or non-finite values"),
        (ReturnsSupport, r"build\(\) returned Tensor of shape \(1, 20, 3\).*; expected a geom\.Measure"),
        (PointsLast, r"project\(support \(1, 20, 3\), directions \(8, 3\)\) returned Tensor of shape \(1, 20, 8\)"),
        (FalselyLinear, r"linear = True promises project\(x, theta\) == x @ theta\.T"),
        (Detaching, r"not differentiable with respect to the support"),
        (Jittery, r"SW_2 \(through project\(\)\)\(measure, measure\) = [0-9.e-]+; expected 0"),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else "",
)
def test_broken_representation_fails_with_a_helpful_message(cls, pattern):
    example = torch.randn(20, 3, generator=torch.Generator().manual_seed(5)).requires_grad_()
    with pytest.raises(AssertionError, match=pattern) as info:
        geom.testing.check_representation(cls, example)
    assert str(info.value).startswith(f"check_representation({cls.__qualname__}): ")


def test_registered_representation_must_build_its_own_kind(restore_registry):
    class WrongKind(PointCloud):
        def build(self, obj, *, weights=None, **options):
            m = super().build(obj, weights=weights, **options)
            return geom.Measure(m.support, m.weights, kind="points", batched=m.batched, uniform=m.uniform)

    geom.register_representation("contract-test-kind", WrongKind)
    with pytest.raises(AssertionError, match=r"kind 'points'; expected 'contract-test-kind'"):
        geom.testing.check_representation(WrongKind, torch.randn(6, 3))


def test_registered_representation_is_checked_through_the_core(restore_registry):
    """Registered, Jittery's distances go through geom.sliced_wasserstein (and still fail)."""
    geom.register_representation("contract-test-jitter", Jittery)
    pattern = r"geom\.sliced_wasserstein\(measure, measure\) = [0-9.e-]+; expected 0"
    with pytest.raises(AssertionError, match=pattern):
        geom.testing.check_representation(Jittery, torch.randn(6, 3))
