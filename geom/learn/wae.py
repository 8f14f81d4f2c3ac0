"""A Wasserstein autoencoder with a sliced penalty (SWAE) on scikit-learn's 8x8 digits.

Papers: I. Tolstikhin, O. Bousquet, S. Gelly, B. Schoelkopf, *Wasserstein Auto-Encoders*, ICLR 2018
(WAE: reconstruction plus ``lam * D(Q_Z, P_Z)``, a divergence between the encoded training
distribution ``Q_Z`` and the prior ``P_Z``); S. Kolouri et al., *Sliced-Wasserstein Autoencoder* (the
divergence as a sliced Wasserstein distance, so no adversary and no kernel); B.-H. Tran et al., *Model
Selection for Bayesian Autoencoders* (the distributional SW, scheme ``"dsw"``, as the divergence).

The objective per batch ``x`` of ``n`` images, with ``z = E(x)`` and ``n`` fresh prior samples ``z'``::

    L(x) = 1/n sum_i |D(E(x_i)) - x_i|^2  +  lam * SW_p({z_i}, {z'_j})

The squared error is summed over the 64 pixels (values in [0, 1]); ``SW_p`` is
:class:`geom.losses.SlicedWassersteinLoss` with any registered scheme, i.e. the one sliced estimator
(the loss keeps its scheme instance, so a learned scheme's state lasts across the steps).

Evaluation (:func:`evaluate`):

- ``recon``: test reconstruction error (per image, summed over pixels);
- ``nn_accuracy``: leave-one-out accuracy of the two-sample 1-NN classifier between decoded prior
  samples and real test digits (D. Lopez-Paz, M. Oquab, *Revisiting classifier two-sample tests*;
  0.5 when the two samples are indistinguishable, 1.0 when every point's neighbour is from its own sample);
- ``latent_sw``: ``SW_2`` between the encoded test digits and as many prior samples (Monte Carlo, 1000
  directions, the same for every model), next to ``latent_sw_floor``, the same distance between two
  independent prior samples of that size (what a perfect encoder would score on average);
- ``latent_ks``: the largest Kolmogorov-Smirnov statistic of one latent coordinate against the prior's
  marginal, and ``latent_mean`` / ``latent_cov``: ``|mean|`` and ``|cov - Sigma|_F`` against the prior's.

Data: :func:`load_digits` (scikit-learn, the ``learn`` extra: ``pip install geom[learn]``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

import geom
from geom._checks import as_real_tensor, check_bool, check_int, check_positive_int, check_real, describe

__all__ = ["PRIORS", "WAE", "WAEResult", "evaluate", "ks_statistics", "load_digits", "one_nn_accuracy", "prior_sample",
           "sliced_penalty", "train_wae"]

PRIORS = ("gaussian", "uniform")
"""Latent priors: ``"gaussian"`` N(0, I_d); ``"uniform"`` on the cube [-sqrt 3, sqrt 3]^d (unit variance)."""

_SQRT3 = math.sqrt(3.0)


def _sklearn():
    try:
        import sklearn.datasets
        import sklearn.model_selection
    except ImportError as exc:  # pragma: no cover - the extra is installed in the project's venv
        raise ImportError("geom.learn needs scikit-learn: pip install geom[learn]") from exc
    return sklearn


def load_digits(*, test_fraction: float = 0.2, seed: int = 0):
    """scikit-learn's 1797 8x8 digits, scaled to [0, 1], split stratified by class.

    Args:
        test_fraction: share of the images held out, in (0, 1).
        seed: the split.

    Returns:
        ``(x_train, y_train, x_test, y_test)``: float32 ``(N, 64)`` images (row-major 8x8) and int64 ``(N,)`` labels.
    """
    test_fraction = check_real(test_fraction, "test_fraction", "in (0, 1)", lambda v: 0 < v < 1)
    seed = check_int(seed, "seed")
    sk = _sklearn()
    data = sk.datasets.load_digits()
    x = torch.as_tensor(data.data, dtype=torch.float32) / 16.0
    y = torch.as_tensor(data.target, dtype=torch.int64)
    train, test = sk.model_selection.train_test_split(torch.arange(len(y)).numpy(), test_size=test_fraction,
                                                      random_state=seed, stratify=y.numpy())
    train, test = torch.as_tensor(train), torch.as_tensor(test)
    return x[train], y[train], x[test], y[test]


def _check_prior(prior) -> str:
    if prior not in PRIORS:
        raise ValueError(f"prior: expected one of {', '.join(map(repr, PRIORS))}, got {prior!r}")
    return prior


def prior_sample(n: int, dim: int, prior: str = "gaussian", *, generator: torch.Generator | None = None,
                 dtype=torch.float32) -> torch.Tensor:
    """``(n, dim)`` samples of the latent prior (see :data:`PRIORS`) from ``generator``."""
    n, dim, prior = check_positive_int(n, "n"), check_positive_int(dim, "dim"), _check_prior(prior)
    if prior == "gaussian":
        return torch.randn(n, dim, generator=generator, dtype=dtype)
    return (2.0 * torch.rand(n, dim, generator=generator, dtype=dtype) - 1.0) * _SQRT3


def _prior_cdf(t: torch.Tensor, prior: str) -> torch.Tensor:
    """The prior's marginal CDF (float64)."""
    t = t.double()
    if prior == "gaussian":
        return 0.5 * torch.special.erfc(-t / math.sqrt(2.0))
    return ((t + _SQRT3) / (2.0 * _SQRT3)).clamp(0.0, 1.0)


def _mlp(sizes, last=None) -> nn.Sequential:
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    if last is not None:
        layers.append(last)
    return nn.Sequential(*layers)


class WAE(nn.Module):
    """MLP encoder ``64 -> hidden -> hidden -> latent_dim`` and decoder back, sigmoid pixels.

    Args:
        latent_dim: dimension of the latent space.
        hidden: width of the hidden layers.
        in_dim: pixels per image.
        prior: the latent prior (:data:`PRIORS`), used by :meth:`sample`.
        seed: the initial weights (torch's global RNG is left as it was).
    """

    def __init__(self, latent_dim: int = 8, hidden: int = 128, in_dim: int = 64, prior: str = "gaussian",
                 seed: int = 0):
        super().__init__()
        self.latent_dim = check_positive_int(latent_dim, "latent_dim")
        hidden, in_dim = check_positive_int(hidden, "hidden"), check_positive_int(in_dim, "in_dim")
        self.in_dim, self.prior = in_dim, _check_prior(prior)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(check_int(seed, "seed"))
            self.encoder = _mlp([in_dim, hidden, hidden, self.latent_dim])
            self.decoder = _mlp([self.latent_dim, hidden, hidden, in_dim], nn.Sigmoid())

    def _check(self, x, name: str, width: int) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[1] != width or not x.is_floating_point():
            raise TypeError(f"{name}: expected a floating (N, {width}) tensor, got {describe(x)}")
        return x

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, in_dim)`` images -> ``(N, latent_dim)`` latents."""
        return self.encoder(self._check(x, "x", self.in_dim))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``(N, latent_dim)`` latents -> ``(N, in_dim)`` images in (0, 1)."""
        return self.decoder(self._check(z, "z", self.latent_dim))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(reconstruction (N, in_dim), latents (N, latent_dim))``."""
        z = self.encode(x)
        return self.decoder(z), z

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``(n, in_dim)`` images decoded from ``n`` prior samples."""
        return self.decoder(prior_sample(n, self.latent_dim, self.prior, generator=generator))


def sliced_penalty(z: torch.Tensor, prior_z: torch.Tensor, loss, lam: float = 1.0, *,
                   directions: torch.Tensor | None = None) -> torch.Tensor:
    """The WAE penalty ``lam * SW_p(z, prior_z)``: ``loss`` (a :class:`geom.losses.SlicedWassersteinLoss`)
    on ``(N, d)`` latents and ``(M, d)`` prior samples; ``directions (L, d)`` override the loss's draw."""
    from geom.losses import SlicedWassersteinLoss

    if not isinstance(loss, SlicedWassersteinLoss):
        raise TypeError(f"loss: expected a geom.losses.SlicedWassersteinLoss, got {describe(loss)}")
    lam = check_real(lam, "lam", ">= 0", lambda v: v >= 0)
    return lam * loss(z, prior_z, directions=directions)


def _sliced_loss(scheme, n_projections: int, seed: int, options: dict) -> nn.Module:
    from geom.losses import SlicedWassersteinLoss

    return SlicedWassersteinLoss(scheme=scheme, n_projections=n_projections, p=2, seed=seed, **options)


@dataclass
class WAEResult:
    """A trained model and its training curves (per epoch: mean reconstruction error and penalty)."""

    model: WAE
    loss: nn.Module
    recon: list[float] = field(default_factory=list)
    penalty: list[float] = field(default_factory=list)


def train_wae(x_train, *, latent_dim: int = 8, hidden: int = 128, prior: str = "gaussian", scheme="mc",
              n_projections: int = 64, lam: float = 1.0, epochs: int = 60, batch_size: int = 128,
              lr: float = 1e-3, seed: int = 0, progress: bool = False, **scheme_options) -> WAEResult:
    """Train a :class:`WAE` with the sliced penalty on ``(N, 64)`` images in [0, 1].

    Args:
        x_train: ``(N, in_dim)`` images.
        latent_dim, hidden, prior: the model (:class:`WAE`).
        scheme, n_projections, **scheme_options: the sliced penalty (any registered scheme or instance).
        lam: weight of the penalty (0: a plain autoencoder).
        epochs, batch_size, lr: Adam over shuffled batches.
        seed: weights, batch order, prior samples and slicing directions.
        progress: a tqdm bar over the epochs.
    """
    x = as_real_tensor(x_train, "x_train", "an (N, in_dim) array of images")
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"x_train: expected an (N, in_dim) array with N >= 2, got shape {tuple(x.shape)}")
    epochs, batch_size = check_positive_int(epochs, "epochs"), check_positive_int(batch_size, "batch_size")
    lr = check_real(lr, "lr", "> 0", lambda v: v > 0)
    lam = check_real(lam, "lam", ">= 0", lambda v: v >= 0)
    seed, progress = check_int(seed, "seed"), check_bool(progress, "progress")
    model = WAE(latent_dim, hidden, x.shape[1], prior, seed=seed)
    loss = _sliced_loss(scheme, n_projections, seed + 1, scheme_options)
    gen = torch.Generator().manual_seed(seed + 2)  # batches and prior samples
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    result = WAEResult(model, loss)
    epochs_iter = range(epochs)
    if progress:
        from tqdm import tqdm

        epochs_iter = tqdm(epochs_iter, desc=f"wae {scheme if isinstance(scheme, str) else type(scheme).__name__}",
                           unit="epoch")
    for _ in epochs_iter:
        order = torch.randperm(x.shape[0], generator=gen)
        total_r = total_p = 0.0
        for start in range(0, x.shape[0], batch_size):
            xb = x[order[start:start + batch_size]]
            if xb.shape[0] < 2:
                continue
            recon, z = model(xb)
            r = (recon - xb).square().sum(1).mean()
            pz = prior_sample(xb.shape[0], latent_dim, prior, generator=gen)
            pen = sliced_penalty(z, pz, loss, lam) if lam > 0 else z.new_zeros(())
            opt.zero_grad()
            (r + pen).backward()
            opt.step()
            total_r += float(r.detach()) * xb.shape[0]
            total_p += float(pen.detach()) * xb.shape[0]
        result.recon.append(total_r / x.shape[0])
        result.penalty.append(total_p / x.shape[0])
    return result


def one_nn_accuracy(a, b) -> float:
    """Leave-one-out accuracy of the 1-nearest-neighbour classifier telling ``a`` from ``b``.

    The two-sample test statistic of Lopez-Paz and Oquab: every point of ``a`` ``(N, D)`` and ``b`` ``(M, D)``
    is labelled by the sample its Euclidean nearest other point belongs to. About 0.5 when the two
    samples come from one law (for ``N = M``), 1.0 when they are far apart, below 0.5 when the points
    of ``b`` copy points of ``a`` (memorisation).
    """
    a = as_real_tensor(a, "a", "an (N, D) array").double()
    b = as_real_tensor(b, "b", "an (M, D) array").double()
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(a.shape[0], b.shape[0]) < 1:
        raise ValueError(f"a, b: expected (N, D) and (M, D) arrays with N, M >= 1, got shapes {tuple(a.shape)} "
                         f"and {tuple(b.shape)}")
    points = torch.cat([a, b])
    labels = torch.cat([torch.zeros(a.shape[0], dtype=torch.bool), torch.ones(b.shape[0], dtype=torch.bool)])
    d = torch.cdist(points, points)
    d.fill_diagonal_(math.inf)
    nearest = d.argmin(1)
    return float((labels[nearest] == labels).double().mean())


def ks_statistics(z, prior: str = "gaussian") -> torch.Tensor:
    """``(d,)`` float64 Kolmogorov-Smirnov statistics ``sup_t |F_n(t) - F(t)|`` of each coordinate of the
    ``(N, d)`` latents ``z`` against the prior's marginal CDF ``F`` (see :data:`PRIORS`)."""
    z = as_real_tensor(z, "z", "an (N, d) array of latents").detach()
    if z.ndim != 2 or z.shape[0] < 1:
        raise ValueError(f"z: expected an (N, d) array with N >= 1, got shape {tuple(z.shape)}")
    prior, n = _check_prior(prior), z.shape[0]
    cdf = _prior_cdf(z.double().sort(0).values, prior)  # (N, d) at the per-coordinate order statistics
    steps = torch.arange(n + 1, dtype=torch.float64) / n
    return torch.maximum(steps[1:, None] - cdf, cdf - steps[:-1, None]).amax(0)


@torch.no_grad()
def evaluate(model: WAE, x_test, *, seed: int = 0, n_projections: int = 1000) -> dict:
    """Reconstruction, 1-NN accuracy of the samples and the latents' match to the prior (see the module).

    Args:
        model: a trained :class:`WAE`.
        x_test: ``(N, in_dim)`` held-out images.
        seed: prior samples and the directions of ``latent_sw``.
        n_projections: Monte Carlo directions of ``latent_sw`` (the same scheme for every model).

    Returns:
        ``{"recon", "nn_accuracy", "latent_sw", "latent_sw_floor", "latent_ks", "latent_mean", "latent_cov"}``.
    """
    if not isinstance(model, WAE):
        raise TypeError(f"model: expected a geom.learn.wae.WAE, got {describe(model)}")
    x = model._check(as_real_tensor(x_test, "x_test", "an (N, in_dim) array of images"), "x_test", model.in_dim)
    seed, n_projections = check_int(seed, "seed"), check_positive_int(n_projections, "n_projections")
    gen = torch.Generator().manual_seed(seed)
    n, d = x.shape[0], model.latent_dim
    recon, z = model(x)
    samples = model.sample(n, generator=gen)
    pz, pz2 = (prior_sample(n, d, model.prior, generator=gen) for _ in range(2))
    sw = geom.sliced_wasserstein(z, pz, scheme="mc", n_projections=n_projections, seed=seed)
    floor = geom.sliced_wasserstein(pz2, pz, scheme="mc", n_projections=n_projections, seed=seed)
    cov = torch.cov(z.double().T).reshape(d, d)
    return {
        "recon": float((recon - x).square().sum(1).mean()),
        "nn_accuracy": one_nn_accuracy(samples, x),
        "latent_sw": float(sw),
        "latent_sw_floor": float(floor),
        "latent_ks": float(ks_statistics(z, model.prior).max()),
        "latent_mean": float(z.double().mean(0).norm()),
        "latent_cov": float((cov - torch.eye(d, dtype=torch.float64)).norm()),
    }
