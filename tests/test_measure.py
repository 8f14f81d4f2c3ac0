"""geom.measure: the one door from raw input to a Measure (dtypes, autograd, batches, weights)."""

import numpy as np
import pytest
import torch

import geom


def test_numpy_float64_stays_float64_and_keeps_values():
    x = np.random.default_rng(0).normal(size=(7, 3))
    mu = geom.measure(x)
    assert isinstance(mu, geom.Measure)
    assert mu.support.dtype == torch.float64 and mu.weights.dtype == torch.float64
    assert mu.support.shape == (1, 7, 3) and mu.weights.shape == (1, 7)
    assert (mu.batch_size, mu.n_points, mu.dim) == (1, 7, 3)
    assert np.array_equal(mu.support[0].numpy(), x)
    assert mu.kind == "points" and not mu.batched and mu.uniform
    torch.testing.assert_close(mu.weights, torch.full((1, 7), 1 / 7, dtype=torch.float64))


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.int64, np.int32, np.uint8])
def test_numpy_other_dtypes_become_float32(dtype):
    x = (np.arange(12).reshape(4, 3) % 5).astype(dtype)
    mu = geom.measure(x)
    assert mu.dtype == torch.float32 and mu.weights.dtype == torch.float32
    assert np.array_equal(mu.support[0].numpy(), x.astype(np.float32))


def test_non_contiguous_numpy_input():
    base = np.random.default_rng(1).normal(size=(3, 10))
    x = base.T[::2]  # (5, 3), strided view
    mu = geom.measure(x)
    assert np.array_equal(mu.support[0].numpy(), x)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_torch_tensor_keeps_dtype_and_autograd(dtype):
    x = torch.randn(6, 2, dtype=dtype, generator=torch.Generator().manual_seed(0), requires_grad=True)
    mu = geom.measure(x)
    assert mu.dtype == dtype and mu.support.requires_grad
    (mu.support ** 2).sum().backward()
    torch.testing.assert_close(x.grad, 2 * x.detach())


def test_gradient_of_sliced_wasserstein_reaches_the_original_tensor():
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0]], requires_grad=True)
    y = torch.tensor([[0.0, 2.0], [1.0, 2.0]])
    value = geom.sliced_wasserstein(geom.measure(x), y, directions=[[0.0, 1.0]])
    value.backward()
    # SW_2 = 2 along the second axis: d/dx_i = -(y_i - x_i) / (N * SW) = [0, -1/2] per point
    assert value.item() == pytest.approx(2.0)
    torch.testing.assert_close(x.grad, torch.tensor([[0.0, -0.5], [0.0, -0.5]]))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.int64])
def test_torch_low_precision_and_integers_become_float32(dtype):
    mu = geom.measure(torch.ones(3, 2, dtype=dtype))
    assert mu.dtype == torch.float32
    assert torch.equal(mu.support[0], torch.ones(3, 2))


def test_nested_lists_and_tuples():
    mu = geom.measure([[0, 1, 2], [3, 4, 5]])
    assert mu.dtype == torch.float32 and mu.support.shape == (1, 2, 3)
    assert mu.support[0].tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    nu = geom.measure(((0.5, 1.0), (2.0, 3.0), (4.0, 5.0)))
    assert nu.support.shape == (1, 3, 2) and nu.support[0, 2].tolist() == [4.0, 5.0]


@pytest.mark.parametrize("make", [list, np.asarray, torch.tensor])
def test_one_dimensional_input_is_points_on_the_line(make):
    mu = geom.measure(make([3.0, -1.0, 2.0]))
    assert mu.support.shape == (1, 3, 1) and mu.dim == 1
    assert mu.support[0, :, 0].tolist() == [3.0, -1.0, 2.0]


def test_batches_with_zero_weight_padding():
    support = torch.randn(2, 5, 3, generator=torch.Generator().manual_seed(0))
    weights = torch.tensor([[1.0, 1.0, 1.0, 0.0, 0.0], [2.0, 1.0, 1.0, 3.0, 1.0]])
    mu = geom.measure(support, weights=weights)
    assert mu.batched and mu.batch_size == 2 and mu.n_points == 5 and not mu.uniform
    torch.testing.assert_close(mu.weights[0], torch.tensor([1 / 3, 1 / 3, 1 / 3, 0.0, 0.0]))
    torch.testing.assert_close(mu.weights[1], weights[1] / 8)
    torch.testing.assert_close(mu.weights.sum(-1), torch.ones(2))
    plain = geom.measure(support)
    assert plain.batched and plain.uniform and plain.weights.shape == (2, 5)


def test_weights_are_normalised_and_uniformity_detected():
    x = np.zeros((4, 2))
    mu = geom.measure(x, weights=[1, 3, 0, 4])
    assert mu.weights.dtype == torch.float64
    assert mu.weights[0].tolist() == [0.125, 0.375, 0.0, 0.5]
    assert not mu.uniform
    assert geom.measure(x, weights=np.full(4, 7.0)).uniform  # equal weights are uniform whatever the scale
    w = torch.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
    normalised = geom.measure(x, weights=w).weights  # autograd carries through the normalisation
    normalised[0, 0].backward()
    torch.testing.assert_close(w.grad, torch.tensor([0.09, -0.01, -0.01, -0.01]))  # d(w_0 / sum w) / dw at sum 10
    assert w.tolist() == [1.0, 2.0, 3.0, 4.0]  # the caller's array is not normalised in place


def test_to_casts_support_and_weights_and_keeps_autograd():
    x = torch.randn(5, 3, requires_grad=True, generator=torch.Generator().manual_seed(0))
    mu = geom.measure(x, weights=[1, 2, 3, 4, 5])
    mu64 = mu.to(torch.float64)
    assert mu64.dtype == torch.float64 and mu64.weights.dtype == torch.float64
    assert (mu64.kind, mu64.batched, mu64.uniform) == (mu.kind, mu.batched, mu.uniform)
    torch.testing.assert_close(mu64.weights, mu.weights.double())
    mu64.support.sum().backward()
    torch.testing.assert_close(x.grad, torch.ones(5, 3))
    back = mu64.to(device="cpu", dtype=torch.float32)
    assert back.dtype == torch.float32 and back.device.type == "cpu"


def test_to_device(device):
    mu = geom.measure(np.ones((3, 2)), weights=[1, 1, 2]).to(device)
    assert mu.device.type == device.type and mu.weights.device.type == device.type
    assert mu.dtype == torch.float64


def test_repr():
    assert repr(geom.measure(np.zeros((5, 3), np.float32))) == (
        "Measure(kind='points', support=5x3, dtype=torch.float32, device=cpu)"
    )
    assert repr(geom.measure(np.zeros((2, 4, 3)))) == (
        "Measure(kind='points', support=2x4x3, dtype=torch.float64, device=cpu)"
    )


def test_measure_passes_through_unchanged():
    mu = geom.measure(np.ones((3, 2)))
    assert geom.measure(mu) is mu
    assert geom.measure(mu, kind="points") is mu


def test_measure_with_new_weights_or_kind_is_refused():
    mu = geom.measure(np.ones((3, 2)))
    with pytest.raises(ValueError, match="obj"):
        geom.measure(mu, weights=[1, 2, 3])
    with pytest.raises(ValueError, match="obj"):
        geom.measure(mu, kind="something-else")


def test_sliced_wasserstein_accepts_every_input_form():
    """Arrays, tensors, lists and Measures of the same points give the same value."""
    pts = [[0.0, 0.0], [1.0, 0.5], [2.0, -1.0]]
    other = [[0.5, 0.5], [1.0, 1.5]]
    theta = torch.tensor([[0.6, 0.8], [1.0, 0.0]])
    want = geom.sliced_wasserstein(torch.tensor(pts), torch.tensor(other), directions=theta)
    for a in (pts, np.asarray(pts, np.float32), geom.measure(pts)):
        for b in (other, np.asarray(other, np.float32), geom.measure(other)):
            got = geom.sliced_wasserstein(a, b, directions=theta)
            assert got.dtype == torch.float32
            torch.testing.assert_close(got, want)


def _batch() -> geom.Measure:
    x = torch.arange(24.0).reshape(4, 3, 2).requires_grad_()
    return geom.measure(x, weights=torch.tensor([[1.0, 1, 2], [1, 1, 1], [0, 1, 1], [3, 1, 0]]))


def test_detach_cuts_the_graph_and_keeps_everything_else():
    mu = _batch()
    d = mu.detach()
    assert mu.support.requires_grad and not d.support.requires_grad and not d.weights.requires_grad
    assert torch.equal(d.support, mu.support.detach()) and torch.equal(d.weights, mu.weights)
    assert (d.kind, d.batched, d.uniform) == (mu.kind, mu.batched, mu.uniform)


def test_expand_broadcasts_a_batch_of_one_only():
    mu = geom.measure(np.arange(6.0).reshape(3, 2))
    big = mu.expand(5)
    assert big.batched and big.support.shape == (5, 3, 2) and big.weights.shape == (5, 3)
    assert big.support.data_ptr() == mu.support.data_ptr()  # a view
    assert all(torch.equal(big.support[k], mu.support[0]) for k in range(5))
    assert mu.expand(1) is mu
    with pytest.raises(ValueError, match="batch_size: a batch of 4 measures cannot be expanded to 2"):
        _batch().expand(2)
    with pytest.raises(TypeError, match="batch_size: expected a positive int, got int 0"):
        mu.expand(0)


def test_indexing_by_int_slice_list_mask_and_negative():
    mu = _batch()
    one = mu[1]
    assert not one.batched and one.support.shape == (1, 3, 2) and torch.equal(one.support[0], mu.support[1])
    assert torch.equal(mu[-1].support, mu[3].support) and torch.equal(mu[-4].weights, mu[0].weights)
    assert torch.equal(mu[1:3].support, mu.support[1:3]) and mu[1:3].batched
    assert torch.equal(mu[[3, 0]].weights, mu.weights[[3, 0]])
    assert torch.equal(mu[[-1]].support, mu.support[3:])
    mask = mu[torch.tensor([True, False, True, False])]
    assert mask.batch_size == 2 and torch.equal(mask.support, mu.support[[0, 2]])
    assert len(mu) == 4 and len(mu[np.array([1, 2, 2])]) == 3


@pytest.mark.parametrize("index, error, message", [
    (4, IndexError, r"index: expected an item index in \[-4, 4\), got 4"),
    (-5, IndexError, r"index: expected an item index in \[-4, 4\), got -5"),
    ([0, 4], IndexError, r"index: expected item indices in \[-4, 4\), got \[0, 4\]"),
    ([True, False], IndexError, r"index: expected 4 booleans, got shape \(2,\)"),
    (slice(4, None), IndexError, "index: selects no item"),
    ([0.5], TypeError, "index: expected an int, a slice or a 1-D array of integer indices"),
    ("a", TypeError, "index: expected an int, a slice or indices, got str"),
])
def test_bad_indices_are_named(index, error, message):
    with pytest.raises(error, match=message):
        _batch()[index]


def test_replace_support_keeps_weights_and_autograd():
    mu = _batch()
    y = (mu.support.detach() * 2).requires_grad_()
    nu = mu.replace(support=y)
    assert nu.support is y and torch.equal(nu.weights, mu.weights) and nu.uniform == mu.uniform
    nu.support.sum().backward()
    assert torch.equal(y.grad, torch.ones_like(y))
    single = geom.measure(np.zeros((3, 2)))
    assert single.replace(support=np.ones((3, 2))).support.shape == (1, 3, 2)  # unbatched shape accepted


def test_replace_weights_are_renormalised():
    mu = geom.measure(np.zeros((3, 2)))
    nu = mu.replace(weights=[2, 0, 6])
    assert nu.weights.tolist() == [[0.25, 0.0, 0.75]] and not nu.uniform and torch.equal(nu.support, mu.support)
    assert nu.replace(weights=[5, 5, 5]).uniform


def test_replace_shape_errors_name_the_argument():
    mu = _batch()
    with pytest.raises(ValueError, match=r"support: expected shape \(4, 3, \.\.\.\) \(the points of the measure\), got \(4, 2, 2\)"):
        mu.replace(support=torch.zeros(4, 2, 2))
    lifted = mu.replace(support=torch.zeros(4, 3, 5))  # more coordinates per point: a lifting
    assert lifted.support.shape == (4, 3, 5) and torch.equal(lifted.weights, mu.weights)
    with pytest.raises(ValueError, match=r"weights: expected shape \(4, 3\) to match the support, got \(3,\)"):
        mu.replace(weights=[1, 1, 1])
    with pytest.raises(ValueError, match=r"support: expected shape \(3, \.\.\.\)"):
        geom.measure(np.zeros((3, 2))).replace(support=np.zeros((4, 2)))
    with pytest.raises(ValueError, match="support: expected finite values"):
        mu.replace(support=torch.full((4, 3, 2), float("nan")))
