"""Bad input at the public boundary: a ValueError / TypeError / FileNotFoundError naming the argument."""

import math

import numpy as np
import pytest
import torch

import geom

X = np.random.default_rng(0).normal(size=(6, 3))
Y = np.random.default_rng(1).normal(size=(5, 3))


def sw(mu=X, nu=Y, **kwargs):
    kwargs.setdefault("n_projections", 8)
    kwargs.setdefault("seed", 0)
    return geom.sliced_wasserstein(mu, nu, **kwargs)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("make", [np.asarray, torch.tensor, lambda a: a.tolist()])
def test_non_finite_coordinates(bad, make):
    x = X.copy()
    x[3, 1] = bad
    with pytest.raises(ValueError, match=rf"obj: expected finite values, got {bad}"):
        geom.measure(make(x))
    with pytest.raises(ValueError, match="obj: expected finite"):
        sw(make(x), Y)
    with pytest.raises(ValueError, match="obj: expected finite"):
        sw(X, make(x))


@pytest.mark.parametrize("empty", [np.zeros((0, 3)), torch.zeros(0, 3), [], np.zeros((2, 0, 3))])
def test_empty_cloud(empty):
    with pytest.raises(ValueError, match="obj: expected at least one point"):
        geom.measure(empty)


def test_points_without_coordinates():
    with pytest.raises(ValueError, match="obj: expected points with at least one coordinate"):
        geom.measure(np.zeros((4, 0)))


def test_too_many_dimensions():
    with pytest.raises(ValueError, match=r"obj: expected shape \(N, D\) or \(B, N, D\)"):
        geom.measure(np.zeros((2, 3, 4, 5)))


def test_dimension_mismatch():
    with pytest.raises(ValueError, match="mu, nu: expected the same dimension, got 3 and 2"):
        sw(X, Y[:, :2])


def test_batch_size_mismatch():
    with pytest.raises(ValueError, match="mu, nu: expected equal batch sizes, got 2 and 3"):
        sw(np.zeros((2, 4, 3)), np.ones((3, 4, 3)))


def test_negative_weights():
    with pytest.raises(ValueError, match="weights: expected non-negative values, got -1"):
        geom.measure(X, weights=[1, 2, -1, 1, 1, 1])


def test_zero_sum_weights():
    with pytest.raises(ValueError, match="weights: expected a positive sum"):
        geom.measure(X, weights=np.zeros(6))
    with pytest.raises(ValueError, match="weights: expected a positive sum"):
        geom.measure(np.zeros((2, 6, 3)), weights=[[1, 1, 0, 0, 0, 0], [0] * 6])  # one empty batch item


def test_non_finite_weights():
    with pytest.raises(ValueError, match="weights: expected finite values"):
        geom.measure(X, weights=[1, 1, math.nan, 1, 1, 1])


@pytest.mark.parametrize("weights, expected", [
    ([1, 2, 3], r"weights: expected shape \(6,\) to match the support, got \(3,\)"),
    (np.ones((1, 6)), r"weights: expected shape \(6,\) to match the support, got \(1, 6\)"),
])
def test_weights_of_wrong_length(weights, expected):
    with pytest.raises(ValueError, match=expected):
        geom.measure(X, weights=weights)


def test_batch_weights_of_wrong_shape():
    with pytest.raises(ValueError, match=r"weights: expected shape \(2, 4\)"):
        geom.measure(np.zeros((2, 4, 3)), weights=np.ones(4))


def test_weights_that_are_not_numbers():
    with pytest.raises(TypeError, match="weights: expected an array of non-negative numbers"):
        geom.measure(X, weights=["a", "b", "c", "d", "e", "f"])
    with pytest.raises(TypeError, match="weights: expected real numbers"):
        geom.measure(X, weights=np.ones(6, dtype=complex))
    with pytest.raises(TypeError, match="weights: expected real numbers"):
        geom.measure(X, weights=np.ones(6, dtype=bool))


@pytest.mark.parametrize("p", [0.5, 0, -2, math.nan, math.inf])
def test_p_out_of_range(p):
    with pytest.raises(ValueError, match="p: expected a finite number >= 1"):
        sw(p=p)


@pytest.mark.parametrize("p", ["2", None, True, [2]])
def test_p_not_a_number(p):
    with pytest.raises(TypeError, match="p: expected a number >= 1"):
        sw(p=p)


@pytest.mark.parametrize("n", [0, -3])
def test_n_projections_below_one(n):
    with pytest.raises(ValueError, match="n_projections: expected a positive integer"):
        sw(n_projections=n)


@pytest.mark.parametrize("n", [2.5, "8", True, 8.0])
def test_n_projections_not_an_integer(n):
    with pytest.raises(TypeError, match="n_projections: expected a positive integer"):
        sw(n_projections=n)


@pytest.mark.parametrize("directions", [np.ones((4, 2)), np.ones(3), np.zeros((0, 3)), np.ones((2, 3, 1))])
def test_directions_of_wrong_shape(directions):
    with pytest.raises(ValueError, match=r"directions: expected shape \(L, 3\) with L >= 1"):
        sw(directions=directions)


def test_directions_not_unit():
    with pytest.raises(ValueError, match="directions: expected unit rows, got row 1 with norm 2"):
        sw(directions=[[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    with pytest.raises(ValueError, match="directions: expected unit rows, got row 0 with norm 0"):
        sw(directions=np.zeros((1, 3)))


def test_directions_not_finite():
    with pytest.raises(ValueError, match="directions: expected finite values"):
        sw(directions=[[math.nan, 0.0, 0.0]])


def test_directions_not_numbers():
    with pytest.raises(TypeError, match=r"directions: expected an \(L, 3\) array of unit rows"):
        sw(directions=[["a", "b", "c"]])


def test_unknown_scheme_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"scheme: unknown scheme 'no-such-scheme'; registered schemes: .*\bmc\b"):
        sw(scheme="no-such-scheme")


def test_scheme_of_wrong_type():
    with pytest.raises(TypeError, match="scheme: expected a registered name or a SlicingScheme instance"):
        sw(scheme=42)


def test_unknown_scheme_option():
    with pytest.raises(TypeError, match=r"unknown options \['bogus'\]"):
        sw(bogus=1)


def test_unknown_kind_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"kind: unknown representation 'no-such-kind'; registered .*\bpoints\b"):
        geom.measure(X, kind="no-such-kind")
    with pytest.raises(TypeError, match="kind: expected a registered representation name"):
        geom.measure(X, kind=3)


@pytest.mark.parametrize("obj", [object(), {"points": [[0.0, 1.0]]}, None, 3.5])
def test_unsupported_python_object(obj):
    with pytest.raises(TypeError, match="obj: expected .*got " + type(obj).__name__):
        geom.measure(obj)
    with pytest.raises(TypeError, match="obj: expected"):
        sw(obj, Y)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="obj: no such file"):
        geom.measure(tmp_path / "absent.ply")


@pytest.mark.parametrize("obj", [np.ones((3, 2), dtype=complex), torch.ones(3, 2, dtype=torch.complex64),
                                 np.ones((3, 2), dtype=bool), torch.ones(3, 2, dtype=torch.bool)])
def test_complex_and_bool_coordinates(obj):
    with pytest.raises(TypeError, match="obj: expected (a numeric array|real coordinates), got dtype"):
        geom.measure(obj)


@pytest.mark.parametrize("obj", [np.array(["a", "b"]), [[0.0, "x"]], [[0.0, 1.0], [2.0]]])
def test_non_numeric_arrays(obj):
    with pytest.raises(TypeError, match="obj: expected"):
        geom.measure(obj)


def test_options_with_array_input():
    with pytest.raises(TypeError, match=r"unknown options for kind 'points' with array input: \['n_samples'\]"):
        geom.measure(X, n_samples=10)


def test_seed_and_generator_both_given():
    with pytest.raises(ValueError, match="seed, generator: pass one of them, not both"):
        sw(seed=1, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("seed", [1.5, "1", True])
def test_seed_not_an_int(seed):
    with pytest.raises(TypeError, match="seed: expected an int"):
        sw(seed=seed)


def test_generator_of_wrong_type():
    with pytest.raises(TypeError, match="generator: expected a torch.Generator"):
        sw(seed=None, generator=np.random.default_rng(0))

