"""A point-cloud autoencoder trained with sliced losses: a PointNet encoder and an MLP decoder.

The model (:class:`PointNetAutoencoder`) follows the autoencoders of *Quasi-Monte Carlo for 3D Sliced
Wasserstein* (Nguyen, Bariletto, Ho, ICLR 2024) and *Self-Attention Amortized Distributional
Projection Optimization for Sliced Wasserstein Point-Cloud Reconstruction* (Nguyen, Nguyen, Ho, ICML
2023), scaled down to train on a laptop CPU: a shared per-point MLP and a max pool give a
permutation-invariant latent code; an MLP maps the code to ``n_points`` points.

Training (:func:`train_step`, :func:`train`) takes any loss module of :mod:`geom.losses` (sliced
Wasserstein with any scheme, the sliced energy distance, Chamfer), or any callable
``loss(reconstruction (B, n, 3), target (B, N, 3))`` returning a scalar or ``(B,)`` values (averaged).
Mini-batches come from :class:`CloudBatches`, whose order in epoch ``e`` depends on ``(seed, e)`` only,
so a run stopped between two steps continues exactly where it stopped.

Evaluation (:func:`evaluate`): per test item, the Chamfer distance (:func:`geom.chamfer_distance`), the
exact EMD on seeded subsamples (:func:`emd_scores`, POT's network simplex), SW_2 with many directions
and a fixed seed (:func:`sw_scores`, :func:`geom.sliced_wasserstein`), and the accuracy of a linear
classifier of the latent codes (:func:`probe_accuracy`, scikit-learn). Figures:
:func:`plot_reconstructions` and :func:`plot_interpolation`.

Data: :func:`load_clouds` reads a registered dataset of shapes (the generated ``"shapes"``, or
``"modelnet"`` / ``"shapenet"`` from a ``root``) into ``(M, N, 3)`` tensors, split into train and test.

>>> import torch
>>> model = PointNetAutoencoder(n_points=64, latent=8, seed=0)
>>> model(torch.zeros(2, 100, 3)).shape
torch.Size([2, 64, 3])
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import nn

import geom
from geom import _keops
from geom._checks import check_bool, check_int, check_positive_int, check_real, describe
from geom._files import save_figure

__all__ = ["LOSSES", "CloudBatches", "PointNetAutoencoder", "TrainResult", "build_loss", "chamfer_scores", "emd_scores",
           "encode", "evaluate", "load_clouds", "plot_interpolation", "plot_reconstructions", "principal_axes",
           "probe_accuracy", "reconstruct", "sw_scores", "train", "train_step"]

_EXTRA = "pip install geom[learn]"
"""How to install what the evaluation imports (POT, scikit-learn)."""


def _check_clouds(x, name: str, dim: int | None = None) -> torch.Tensor:
    """``x`` as a floating ``(B, N, d)`` tensor of finite numbers (``d == dim`` when given)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a floating tensor of shape (B, N, {dim or 'd'}), got {describe(x)}")
    if x.ndim != 3 or not x.is_floating_point() or (dim is not None and x.shape[-1] != dim) or 0 in x.shape:
        raise ValueError(f"{name}: expected a floating tensor of shape (B, N, {dim or 'd'}) with B, N >= 1, got "
                         f"{describe(x)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name}: expected finite coordinates, got {int((~torch.isfinite(x)).sum())} non-finite")
    return x


def _sizes(value, name: str) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(f"{name}: expected a sequence of positive layer widths, got {describe(value)}")
    return tuple(check_positive_int(v, f"{name}[{i}]") for i, v in enumerate(value))


# ---------------------------------------------------------------------------------------------- the model


class PointNetAutoencoder(nn.Module):
    """PointNet encoder (shared per-point MLP, max pool) and MLP decoder to ``n_points`` points.

    ``encode``: ``(B, N, dim) -> (B, latent)``, each point through ``dim -> encoder[0] -> ... ->
    encoder[-1]`` (ReLU after every layer), the max over the points, then a linear map to ``latent``:
    invariant to the order of the points and defined for any ``N``. ``decode``: ``(B, latent) ->
    (B, n_points, dim)`` through ``latent -> decoder[0] -> ... -> n_points * dim`` (ReLU between the
    layers, none after the last). No batch normalisation: an item's code does not depend on the batch.

    Args:
        n_points: points of a reconstruction.
        latent: size of the code.
        encoder: widths of the per-point layers (default ``(64, 128, 256)``).
        decoder: widths of the hidden layers of the decoder (default ``(256, 256)``).
        dim: dimension of the points (default 3).
        seed: seed of the initial weights (PyTorch's default uniform ranges ``+-1/sqrt(fan_in)``, drawn
            from a generator of this seed, so torch's global generator is neither used nor changed).

    The defaults have about 0.3 M parameters and train an epoch of the generated shapes (a few
    hundred clouds of 256 points) in about a second on one CPU core.
    """

    def __init__(self, n_points: int = 256, latent: int = 64, *, encoder=(32, 64, 128), decoder=(256, 256),
                 dim: int = 3, seed: int = 0):
        super().__init__()
        self.n_points = check_positive_int(n_points, "n_points")
        self.latent = check_positive_int(latent, "latent")
        self.dim = check_positive_int(dim, "dim")
        enc, dec = _sizes(encoder, "encoder"), _sizes(decoder, "decoder")
        if not enc:
            raise ValueError("encoder: expected at least one layer width, got an empty sequence")
        seed = check_int(seed, "seed")
        with torch.random.fork_rng(devices=[]):  # nn.Linear's own initialisation draws from the global generator
            widths = (self.dim, *enc)
            self.point_mlp = nn.Sequential(*[m for a, b in zip(widths, widths[1:])
                                             for m in (nn.Linear(a, b), nn.ReLU())])
            self.to_latent = nn.Linear(enc[-1], self.latent)
            widths = (self.latent, *dec, self.n_points * self.dim)
            layers = []
            for i, (a, b) in enumerate(zip(widths, widths[1:])):
                layers += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(widths) - 2 else [])
            self.decoder = nn.Sequential(*layers)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, nn.Linear):
                    bound = 1.0 / math.sqrt(module.in_features)
                    nn.init.uniform_(module.weight, -bound, bound, generator=gen)
                    nn.init.uniform_(module.bias, -bound, bound, generator=gen)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, N, dim) -> (B, latent)`` codes."""
        _check_clouds(x, "x", self.dim)
        return self.to_latent(self.point_mlp(x).amax(dim=1))  # (B, N, C) -> (B, C) -> (B, latent)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, latent) -> (B, n_points, dim)`` clouds."""
        if not isinstance(z, torch.Tensor) or z.ndim != 2 or z.shape[1] != self.latent or not z.is_floating_point():
            raise ValueError(f"z: expected a floating tensor of shape (B, {self.latent}), got {describe(z)}")
        return self.decoder(z).view(len(z), self.n_points, self.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, N, dim) -> (B, n_points, dim)`` reconstructions."""
        return self.decode(self.encode(x))


# ---------------------------------------------------------------------------------------------- data


class CloudBatches:
    """Seeded mini-batches of a fixed set of clouds.

    Epoch ``e`` visits the clouds in the order ``torch.randperm(M)`` of a generator seeded from
    ``(seed, e)`` (in their stored order with ``shuffle=False``), ``batch_size`` at a time (the last
    batch is smaller unless ``drop_last``). The order of an epoch depends on nothing else, so a run can
    stop after any batch and continue from ``(epoch, batch)``.

    Args:
        clouds: ``(M, N, d)`` floating tensor.
        batch_size: clouds per batch.
        seed: seed of the orders.
        shuffle: draw a new order each epoch (default True).
        drop_last: drop a last batch smaller than ``batch_size`` (default False).
    """

    def __init__(self, clouds: torch.Tensor, batch_size: int = 32, *, seed: int = 0, shuffle: bool = True,
                 drop_last: bool = False):
        self.clouds = _check_clouds(clouds, "clouds")
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.seed = check_int(seed, "seed")
        self.shuffle, self.drop_last = check_bool(shuffle, "shuffle"), check_bool(drop_last, "drop_last")
        if drop_last and self.batch_size > len(self.clouds):
            raise ValueError(f"batch_size: with drop_last=True expected at most the {len(self.clouds)} clouds, got "
                             f"{self.batch_size}")

    def __len__(self) -> int:
        """Batches per epoch."""
        m, b = len(self.clouds), self.batch_size
        return m // b if self.drop_last else -(-m // b)

    def order(self, epoch: int) -> torch.Tensor:
        """``(M,)`` indices of the clouds in the order of epoch ``epoch``."""
        epoch = check_int(epoch, "epoch")
        if not self.shuffle:
            return torch.arange(len(self.clouds))
        seed = int(np.random.SeedSequence([self.seed, epoch]).generate_state(1, np.uint64)[0])
        return torch.randperm(len(self.clouds), generator=torch.Generator().manual_seed(seed))

    def batches(self, epoch: int, start: int = 0):
        """The batches ``start, start + 1, ...`` of epoch ``epoch``: ``(b, N, d)`` tensors."""
        order = self.order(epoch)
        for k in range(check_int(start, "start"), len(self)):
            yield self.clouds[order[k * self.batch_size:(k + 1) * self.batch_size]]


def _stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> np.ndarray:
    """``(M,)`` bool mask of the test items: a seeded ``test_fraction`` of each class (at least one of a
    class of two or more, none of a class of one)."""
    rng = np.random.default_rng(seed)
    test = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == c))
        if len(rows) > 1:
            test[rows[: min(len(rows) - 1, max(1, round(test_fraction * len(rows))))]] = True
    return test


def principal_axes(clouds: torch.Tensor) -> torch.Tensor:
    """``(M, N, 3)`` clouds, each centred at its mean and turned into its principal axes.

    Point ``k`` of cloud ``i`` becomes ``(x_k - mean) @ R_i`` with ``R_i`` the rotation whose columns are the
    eigenvectors of the cloud's covariance by decreasing eigenvalue, each first two signed so that the
    third moment of the cloud along it is non-negative, the third their cross product (so ``det R_i = 1``:
    a rotation, never a reflection). Shapes that differ by a rotation come out alike up to the symmetries
    their moments cannot tell apart (equal eigenvalues, zero third moments). Computed in float64.
    """
    x = _check_clouds(clouds, "clouds", 3)
    xc = x.double() - x.double().mean(1, keepdim=True)  # (M, N, 3)
    cov = xc.transpose(1, 2) @ xc / x.shape[1]  # (M, 3, 3)
    _, vectors = torch.linalg.eigh(cov)  # ascending eigenvalues
    axes = vectors.flip(-1)[..., :2]  # (M, 3, 2): the two largest
    skew = ((xc @ axes) ** 3).mean(1)  # (M, 2) third moments along them
    axes = axes * torch.where(skew < 0, -1.0, 1.0).to(axes.dtype)[:, None, :]
    rotation = torch.cat([axes, torch.linalg.cross(axes[..., 0], axes[..., 1])[..., None]], -1)  # (M, 3, 3)
    return (xc @ rotation).to(x.dtype)


def load_clouds(name: str = "shapes", *, root=None, n_points: int = 256, seed: int = 0, test_fraction: float = 0.25,
                align: str | None = None, progress: bool = False, **options) -> dict:
    """A registered dataset of shapes as ``(M, N, 3)`` point clouds, split into train and test.

    Args:
        name: a dataset whose items are point clouds: ``"shapes"`` (generated, :class:`geom_datasets.generators.Shapes`;
            ``options`` such as ``n_per_class``, ``noise``), ``"modelnet"``, ``"shapenet"`` (read from ``root``).
        root: the dataset's folder (datasets read from disk).
        n_points: points per cloud.
        seed: seed of the dataset's sampling and of the split.
        test_fraction: for datasets without splits (``"shapes"``), the seeded share of each class held out.
            Datasets with a ``split`` option give their own ``"train"`` and ``"test"`` items.
        align: ``"pca"`` to centre every cloud and turn it into its principal axes (:func:`principal_axes`:
            the generated shapes come randomly rotated, and a small model learns their shapes much faster in
            a canonical pose, as the aligned ShapeNet and ModelNet of the papers are), or None (default):
            the clouds as the dataset gives them.
        progress: a progress bar (tqdm, stderr) while the items are read.
        **options: further options of the dataset.

    Returns:
        ``{"train": (clouds (M, N, 3) float32, labels (M,) int64), "test": (..., ...), "classes": [...]}``.
    """
    n_points = check_positive_int(n_points, "n_points")
    seed = check_int(seed, "seed")
    if align not in (None, "pca"):
        raise ValueError(f"align: expected 'pca' or None, got {align!r}")
    test_fraction = check_real(test_fraction, "test_fraction", "in (0, 1)", lambda v: 0 < v < 1)
    from geom.registry import get_dataset

    cls = get_dataset(name)
    if not getattr(cls, "items_are_shapes", False):
        raise ValueError(f"name: expected a dataset of shapes (items are point clouds), got {name!r}")
    options = dict(options, n_points=n_points, seed=seed)
    if "kind" in cls.options:
        options.setdefault("kind", "points")

    def read(data, what: str):
        items = range(len(data))
        if progress:
            import sys

            from tqdm import tqdm

            items = tqdm(items, desc=f"reading {name}{what}", unit="item", file=sys.stderr, dynamic_ncols=True)
        clouds, labels = [], []
        for i in items:
            x, y = data[i]
            if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[1] != 3:
                raise ValueError(f"name: dataset {name!r} item {i} is {describe(x)}; expected an (N, 3) point cloud")
            clouds.append(x.float())
            labels.append(int(y))
        if not clouds:
            raise ValueError(f"name: dataset {name!r}{what} has no items")
        x = torch.stack(clouds)
        return principal_axes(x) if align == "pca" else x, torch.tensor(labels, dtype=torch.int64)

    if "split" in cls.options:
        parts = {s: read(geom.load_dataset(name, root=root, split=s, **options), f" ({s})") for s in ("train", "test")}
        classes = list(geom.load_dataset(name, root=root, split="train", **options).classes)
    else:
        data = geom.load_dataset(name, root=root, **options)
        x, y = read(data, "")
        test = torch.from_numpy(_stratified_split(y.numpy(), test_fraction, seed))
        parts = {"train": (x[~test], y[~test]), "test": (x[test], y[test])}
        classes = list(data.classes)
    return dict(parts, classes=classes)


# ---------------------------------------------------------------------------------------------- training


LOSSES = {
    "sw": ("SlicedWassersteinLoss", "mc"),
    "sw-qmc": ("SlicedWassersteinLoss", "qmc"),
    "sw-vmf": ("SlicedWassersteinLoss", "vmf-dsw"),
    "sw-max": ("SlicedWassersteinLoss", "max"),
    "sw-amortized": ("SlicedWassersteinLoss", "amortized-vmf-dsw"),
    "energy": ("SlicedEnergyLoss", "mc"),
    "chamfer": ("ChamferLoss", None),
}
"""Loss names of :func:`build_loss` -> (the :mod:`geom.losses` module, its default scheme): ``sw`` is SW_2
with Monte Carlo directions, ``sw-qmc`` with randomized QMC (RQSW: a Haar-rotated Coulomb point set
per call), ``sw-vmf`` v-DSW (the vMF location climbed per call, warm-started), ``sw-max`` max-sliced SW,
``sw-amortized`` amortized v-DSW (the vMF location predicted per pair by a network trained jointly: give
``loss.scheme_parameters()`` to the optimizer), ``energy`` the sliced energy distance, ``chamfer`` the
Chamfer distance."""


def build_loss(name: str = "sw", *, scheme=None, n_projections: int = 100, seed: int = 0,
               **scheme_options) -> nn.Module:
    """The :mod:`geom.losses` module of :data:`LOSSES` ``name`` (batch mean of the per-item values).

    ``scheme`` (a registered name or a :class:`geom.SlicingScheme` instance) replaces the default scheme of
    ``sw`` and ``energy`` (``sw-qmc``, ``sw-vmf`` and ``sw-max`` name theirs; another one is refused, and
    ``chamfer`` has none). A scheme with a network (an amortized projection) trains it through
    ``loss.scheme_parameters()``: give those to the optimizer too. ``n_projections`` directions are
    drawn per call from a generator of ``seed``; ``scheme_options`` go to the scheme.
    """
    import geom.losses

    if not isinstance(name, str) or name not in LOSSES:
        raise ValueError(f"name: expected one of {', '.join(LOSSES)}, got {name!r}")
    cls, default = LOSSES[name]
    if default is None:
        if scheme is not None or scheme_options:
            raise ValueError(f"scheme: the {name} loss has no slicing scheme, got scheme={scheme!r} and options "
                             f"{sorted(scheme_options)}")
        return getattr(geom.losses, cls)()
    if scheme is not None and scheme != default and name not in ("sw", "energy"):
        raise ValueError(f"scheme: loss {name!r} slices with {default!r}; for another scheme use loss 'sw' with it, "
                         f"got scheme={scheme!r}")
    return getattr(geom.losses, cls)(scheme=scheme or default, n_projections=n_projections, seed=seed,
                                     **scheme_options)


def _loss_value(loss, reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The scalar training loss: ``loss(reconstruction, target)``, averaged over the batch when it gives ``(B,)``."""
    value = loss(reconstruction, target)
    if not isinstance(value, torch.Tensor) or value.ndim > 1 or (value.ndim == 1 and len(value) != len(target)):
        raise TypeError(f"loss: expected a scalar or ({len(target)},) tensor from loss(reconstruction, target), got "
                        f"{describe(value)}")
    return value.mean() if value.ndim else value


def train_step(model: nn.Module, batch: torch.Tensor, loss, optimizer: torch.optim.Optimizer) -> float:
    """One step: ``loss(model(batch), batch)`` (its batch mean), backward, ``optimizer.step()``; returns its value.

    ValueError when the loss is not finite (the weights are left as they were).
    """
    if not callable(loss):
        raise TypeError(f"loss: expected a loss module or callable loss(reconstruction, target), got {describe(loss)}")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer: expected a torch.optim.Optimizer, got {describe(optimizer)}")
    _check_clouds(batch, "batch")
    model.train()
    optimizer.zero_grad(set_to_none=True)
    value = _loss_value(loss, model(batch), batch)
    if not bool(torch.isfinite(value.detach())):
        raise ValueError(f"loss: became {float(value.detach())} on a batch of {len(batch)} clouds; lower the "
                         f"learning rate")
    value.backward()
    optimizer.step()
    return float(value.detach())


@dataclasses.dataclass
class TrainResult:
    """What :func:`train` did.

    Attributes:
        values: the loss of each step.
        epochs, batches: the epoch and the batch index of each step.
        epoch_seconds: wall time of each epoch finished in this call.
        position: the ``(epoch, batch)`` to continue from.
        stopped: the callback asked to stop.
    """

    values: list[float] = dataclasses.field(default_factory=list)
    epochs: list[int] = dataclasses.field(default_factory=list)
    batches: list[int] = dataclasses.field(default_factory=list)
    epoch_seconds: list[float] = dataclasses.field(default_factory=list)
    position: tuple[int, int] = (0, 0)
    stopped: bool = False


def train(model: nn.Module, loader, loss, epochs: int, optimizer: torch.optim.Optimizer, *, progress=False,
          start: tuple[int, int] = (0, 0), callback: Callable[[int, int, float], bool] | None = None) -> TrainResult:
    """Train ``model`` for ``epochs`` epochs of ``loader`` with ``loss`` and ``optimizer``.

    Args:
        model: a module mapping ``(B, N, d)`` clouds to reconstructions (:class:`PointNetAutoencoder`).
        loader: a :class:`CloudBatches` (seeded, resumable), or any iterable of ``(B, N, d)`` tensors or of
            ``(tensor, labels)`` pairs (a ``torch.utils.data.DataLoader``), iterated once per epoch.
        loss: a :mod:`geom.losses` module, or any ``loss(reconstruction, target)``; the loss keeps its own
            randomness (its seed), so that the same seeds give the same run.
        epochs: epochs in all (counting those before ``start``).
        optimizer: the optimizer of ``model``'s parameters.
        progress: True for a tqdm bar on stderr, or a tqdm bar to advance (``update`` per step).
        start: ``(epoch, batch)`` to begin at (a :class:`CloudBatches` loader only, for a batch > 0).
        callback: ``callback(epoch, batch, value)`` after every step; False stops after that step.

    Returns:
        A :class:`TrainResult`.
    """
    epochs = check_int(epochs, "epochs")
    if not (isinstance(start, tuple) and len(start) == 2):
        raise TypeError(f"start: expected an (epoch, batch) pair, got {describe(start)}")
    epoch0, batch0 = check_int(start[0], "start[0]"), check_int(start[1], "start[1]")
    resumable = isinstance(loader, CloudBatches)
    if batch0 and not resumable:
        raise ValueError(f"start: continuing inside an epoch (batch {batch0}) needs a CloudBatches loader, got "
                         f"{type(loader).__name__}")
    if not resumable and not isinstance(loader, Iterable):
        raise TypeError(f"loader: expected CloudBatches or an iterable of batches, got {describe(loader)}")
    bar, own_bar = progress, False
    if progress is True:
        import sys

        from tqdm import tqdm

        per_epoch = len(loader) if hasattr(loader, "__len__") else None
        total = None if per_epoch is None else epochs * per_epoch
        bar = tqdm(total=total, initial=0 if per_epoch is None else epoch0 * per_epoch + batch0, desc="training",
                   unit="step", file=sys.stderr, dynamic_ncols=True)
        own_bar = True
    elif progress is False or progress is None:
        bar = None
    result = TrainResult(position=(epoch0, batch0))
    try:
        for epoch in range(epoch0, epochs):
            t0 = time.perf_counter()
            first = batch0 if epoch == epoch0 else 0
            batches = loader.batches(epoch, first) if resumable else iter(loader)
            for k, batch in enumerate(batches, start=first):
                if isinstance(batch, (tuple, list)):
                    batch = batch[0]
                value = train_step(model, batch, loss, optimizer)
                result.values.append(value)
                result.epochs.append(epoch)
                result.batches.append(k)
                result.position = (epoch, k + 1)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix_str(f"epoch={epoch + 1} loss={value:.4g}", refresh=False)
                if callback is not None and callback(epoch, k, value) is False:
                    result.stopped = True
                    if resumable and k + 1 == len(loader):
                        result.position = (epoch + 1, 0)
                    return result
            result.epoch_seconds.append(time.perf_counter() - t0)
            result.position = (epoch + 1, 0)
    finally:
        if own_bar:
            bar.close()
    return result


# ---------------------------------------------------------------------------------------------- evaluation


@torch.no_grad()
def reconstruct(model: nn.Module, clouds: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
    """``(M, N, d) -> (M, n_points, d)`` reconstructions, without gradients, in batches."""
    _check_clouds(clouds, "clouds")
    batch_size = check_positive_int(batch_size, "batch_size")
    model.eval()
    return torch.cat([model(clouds[i:i + batch_size]) for i in range(0, len(clouds), batch_size)])


@torch.no_grad()
def encode(model: nn.Module, clouds: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
    """``(M, N, d) -> (M, latent)`` codes, without gradients, in batches."""
    _check_clouds(clouds, "clouds")
    batch_size = check_positive_int(batch_size, "batch_size")
    model.eval()
    return torch.cat([model.encode(clouds[i:i + batch_size]) for i in range(0, len(clouds), batch_size)])


def _pair(x, y) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = _check_clouds(x, "x"), _check_clouds(y, "y")
    if len(x) != len(y) or x.shape[-1] != y.shape[-1]:
        raise ValueError(f"x, y: expected batches of as many clouds in one dimension, got shapes {tuple(x.shape)} "
                         f"and {tuple(y.shape)}")
    return x, y


@torch.no_grad()
def chamfer_scores(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``(M,)`` Chamfer distances (:func:`geom.chamfer_distance`: mean squared nearest-neighbour
    distances both ways) between ``x[i] (N, d)`` and ``y[i] (K, d)``."""
    x, y = _pair(x, y)
    return geom.chamfer_distance(x, y).reshape(len(x))


@torch.no_grad()
def sw_scores(x: torch.Tensor, y: torch.Tensor, *, n_projections: int = 1024, seed: int = 0) -> torch.Tensor:
    """``(M,)`` SW_2 between ``x[i]`` and ``y[i]`` (:func:`geom.sliced_wasserstein`, Monte Carlo, ``n_projections``
    directions of a fixed ``seed``: every model is scored on the same directions)."""
    x, y = _pair(x, y)
    return geom.sliced_wasserstein(x, y, p=2, n_projections=n_projections, scheme="mc", seed=seed).reshape(len(x))


def emd_scores(x: torch.Tensor, y: torch.Tensor, *, n_points: int = 256, seed: int = 0) -> torch.Tensor:
    """``(M,)`` exact earth mover's distances between seeded subsamples of ``x[i]`` and ``y[i]``.

    Each cloud is subsampled without replacement to ``n = min(n_points, N, K)`` points (item ``i``'s
    subsamples drawn from ``numpy.random.default_rng((seed, i))``); the EMD is the optimal transport
    cost between the two uniform measures on ``n`` points with the Euclidean ground cost, ``min_P sum_ij
    P_ij |x_i - y_j|`` (the mean distance under the best one-to-one matching, the EMD of point-cloud
    papers), solved exactly by POT's network simplex (``ot.emd2``) in float64.

    ImportError (naming the ``learn`` extra) when POT is missing.
    """
    _keops.import_quietly()  # POT imports pykeops through geomloss, which would print a CUDA warning
    try:
        import ot
    except ImportError:
        raise ImportError(f"emd_scores needs POT (the exact transport solver): {_EXTRA}") from None
    x, y = _pair(x, y)
    n_points = check_positive_int(n_points, "n_points")
    seed = check_int(seed, "seed")
    n = min(n_points, x.shape[1], y.shape[1])
    w = np.full(n, 1.0 / n)
    out = np.empty(len(x))
    for i in range(len(x)):
        rng = np.random.default_rng((seed, i))
        a = x[i].detach().cpu().double().numpy()[rng.choice(x.shape[1], n, replace=False)]  # (n, d)
        b = y[i].detach().cpu().double().numpy()[rng.choice(y.shape[1], n, replace=False)]  # (n, d)
        out[i] = ot.emd2(w, w, ot.dist(a, b, metric="euclidean"), numItermax=10_000_000)
    return torch.from_numpy(out)


def probe_accuracy(train_codes, train_labels, test_codes, test_labels, *, kind: str = "svm", seed: int = 0) -> float:
    """Accuracy on the test codes of a linear classifier of the latent codes fitted on the train codes.

    ``kind="svm"``: a linear SVM (scikit-learn ``LinearSVC``), ``"logistic"``: logistic regression; both
    after standardising each coordinate with the train codes' mean and deviation. ImportError (naming
    the ``learn`` extra) when scikit-learn is missing.
    """
    try:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
        from sklearn.svm import LinearSVC
    except ImportError:
        raise ImportError(f"probe_accuracy needs scikit-learn (the linear probe): {_EXTRA}") from None
    if kind not in ("svm", "logistic"):
        raise ValueError(f"kind: expected 'svm' or 'logistic', got {kind!r}")
    arrays = []
    for name, v, ndim in (("train_codes", train_codes, 2), ("train_labels", train_labels, 1),
                          ("test_codes", test_codes, 2), ("test_labels", test_labels, 1)):
        a = np.asarray(v.detach().cpu() if isinstance(v, torch.Tensor) else v)
        if a.ndim != ndim or len(a) == 0:
            raise ValueError(f"{name}: expected a non-empty array with {ndim} dimension{'s' * (ndim > 1)}, got "
                             f"{describe(v)}")
        arrays.append(a)
    (zx, yx, zt, yt) = arrays
    if len(zx) != len(yx) or len(zt) != len(yt) or zx.shape[1] != zt.shape[1]:
        raise ValueError(f"train_codes, train_labels, test_codes, test_labels: expected matching sizes, got "
                         f"{zx.shape}, {yx.shape}, {zt.shape}, {yt.shape}")
    if len(np.unique(yx)) < 2:
        raise ValueError(f"train_labels: a classifier needs at least two classes, got {np.unique(yx).tolist()}")
    seed = check_int(seed, "seed")
    clf = LinearSVC(C=1.0, max_iter=20_000, random_state=seed) if kind == "svm" else \
        LogisticRegression(max_iter=5000, random_state=seed)
    model = make_pipeline(StandardScaler(), clf).fit(zx, yx)
    return float((model.predict(zt) == yt).mean())


def evaluate(model: nn.Module, clouds: torch.Tensor, *, labels=None, train=None, emd_points: int = 256,
             sw_projections: int = 1024, seed: int = 0, probe: str = "svm") -> dict:
    """Scores of ``model`` on the test ``clouds (M, N, d)``: their means and the per-item values.

    Returns ``{"chamfer", "emd", "sw"}`` (means over the items) and ``"per_item"`` (the ``(M,)`` arrays),
    plus ``"probe_accuracy"`` when ``labels (M,)`` and ``train = (train clouds, train labels)`` are given
    (a linear classifier of the codes, :func:`probe_accuracy`). ``seed`` fixes the EMD subsamples and
    the SW directions.
    """
    recon = reconstruct(model, clouds)
    per_item = dict(chamfer=chamfer_scores(recon, clouds),
                    emd=emd_scores(recon, clouds, n_points=emd_points, seed=seed),
                    sw=sw_scores(recon, clouds, n_projections=sw_projections, seed=seed))
    out = {k: float(v.double().mean()) for k, v in per_item.items()}
    out["per_item"] = {k: v.double().tolist() for k, v in per_item.items()}
    if (labels is None) != (train is None):
        raise ValueError("labels, train: the probe needs both the test labels and train=(clouds, labels)")
    if labels is not None:
        if not (isinstance(train, (tuple, list)) and len(train) == 2):
            raise TypeError(f"train: expected a (clouds, labels) pair, got {describe(train)}")
        out["probe_accuracy"] = probe_accuracy(encode(model, train[0]), train[1], encode(model, clouds), labels,
                                               kind=probe, seed=seed)
    return out


# ---------------------------------------------------------------------------------------------- figures


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> None:
    """``fig`` as PNG into ``path``: a binary file handle, or a path written atomically
    (:func:`geom._files.save_figure`)."""
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.93, wspace=0.02, hspace=0.1)  # tight_layout: slow
    if hasattr(path, "write"):
        fig.savefig(path, format="png", dpi=80)
    else:
        save_figure(fig, path, dpi=80)
    _pyplot().close(fig)


def _scatter(ax, x: np.ndarray, colour: str, title: str, half: float) -> None:
    ax.scatter(x[:, 0], x[:, 1], x[:, 2], s=2, c=x[:, 2], cmap=colour, depthshade=False)
    for axis in "xyz":
        getattr(ax, f"set_{axis}lim")(-half, half)
    ax.set_box_aspect((1, 1, 1))
    ax.view_init(elev=45, azim=-60)
    ax.set_axis_off()
    ax.set_title(title, fontsize=8)


def plot_reconstructions(inputs: torch.Tensor, reconstructions, path, *, titles=None) -> None:
    """A figure at ``path``: the inputs ``(K, N, 3)`` on the top row, their reconstructions ``(K, n, 3)``
    under them (one axis box for all, the points coloured by height).

    ``reconstructions``: one ``(K, n, 3)`` tensor, or a dict ``{row label: (K, n, 3) tensor}`` for one row
    per model (say, per training loss). ``titles``: the ``K`` column titles (the inputs' classes).
    ``path``: a file name (written atomically) or a binary file handle.
    """
    rows = dict(reconstructions) if isinstance(reconstructions, dict) else {"reconstruction": reconstructions}
    if not rows:
        raise ValueError("reconstructions: expected a tensor or a non-empty dict of tensors, got an empty dict")
    x = _check_clouds(inputs, "inputs", 3)
    ys = {label: _pair(x, y)[1] for label, y in rows.items()}
    titles = list(titles) if titles is not None else [str(i) for i in range(len(x))]
    if len(titles) != len(x):
        raise ValueError(f"titles: expected {len(x)} titles, got {len(titles)}")
    plt = _pyplot()
    k, r = len(x), len(ys) + 1
    half = float(torch.cat([x.reshape(-1, 3)] + [y.detach().reshape(-1, 3) for y in ys.values()]).abs().max()) * 1.05
    fig = plt.figure(figsize=(2.2 * k, 2.3 * r))
    for i in range(k):
        _scatter(fig.add_subplot(r, k, i + 1, projection="3d"), x[i].cpu().numpy(), "viridis", f"input: {titles[i]}",
                 half)
        for j, (label, y) in enumerate(ys.items(), start=1):
            _scatter(fig.add_subplot(r, k, j * k + i + 1, projection="3d"), y[i].detach().cpu().numpy(), "plasma",
                     label, half)
    _save(fig, path)


@torch.no_grad()
def plot_interpolation(model: PointNetAutoencoder, a: torch.Tensor, b: torch.Tensor, path, *, n_steps: int = 7,
                       titles=("A", "B")) -> torch.Tensor:
    """A figure at ``path``: the decodings of ``(1 - t) z_a + t z_b`` for ``n_steps`` values of ``t`` in
    [0, 1] between the codes of clouds ``a`` and ``b`` (``(N, 3)`` each), the two inputs at the ends.
    Returns the ``(n_steps, n_points, 3)`` decoded clouds."""
    n_steps = check_int(n_steps, "n_steps", minimum=2)
    if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.ndim == 2 and a.shape == b.shape):
        raise ValueError(f"a, b: expected two clouds of one shape (N, 3), got {describe(a)} and {describe(b)}")
    pair = _check_clouds(torch.stack([a, b]), "a, b", model.dim)  # (2, N, d)
    model.eval()
    z = model.encode(pair)  # (2, latent)
    t = torch.linspace(0, 1, n_steps, dtype=z.dtype)[:, None]
    clouds = model.decode((1 - t) * z[0] + t * z[1])  # (n_steps, n_points, 3)
    plt = _pyplot()
    half = float(torch.cat([pair.reshape(-1, 3), clouds.reshape(-1, 3)]).abs().max()) * 1.05
    fig = plt.figure(figsize=(2.2 * (n_steps + 2), 2.5))
    panels = [(pair[0], "viridis", f"input {titles[0]}")] + \
        [(clouds[i], "plasma", f"t = {float(t[i]):.2f}") for i in range(n_steps)] + \
        [(pair[1], "viridis", f"input {titles[1]}")]
    for i, (x, colour, title) in enumerate(panels):
        _scatter(fig.add_subplot(1, len(panels), i + 1, projection="3d"), x.cpu().numpy(), colour, title, half)
    _save(fig, path)
    return clouds
