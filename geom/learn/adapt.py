"""Unsupervised domain adaptation by the sliced Wasserstein discrepancy (SWD).

Paper: C.-Y. Lee, T. Batra, M. H. Baig, D. Ulbricht, *Sliced Wasserstein Discrepancy for Unsupervised
Domain Adaptation*, CVPR 2019 (built on the maximum classifier discrepancy of K. Saito et al., CVPR 2018).

A feature generator ``G`` and two classifiers ``F1``, ``F2`` (:class:`AdaptNet`). Labelled source
``(x_s, y_s)``, unlabelled target ``x_t``. Per iteration, with ``CE`` the source cross-entropy of
both classifiers and ``SWD`` the discrepancy between their probability outputs on a target batch:

- step A: ``G, F1, F2`` minimise ``CE``;
- step B: ``F1, F2`` (``G`` fixed) minimise ``CE - SWD``: the classifiers disagree as much as
  they can on the target while staying right on the source, which exposes the target samples
  outside the support of the source;
- step C: ``G`` (classifiers fixed) minimises ``SWD``, ``n_generator_steps`` times: the
  generator moves the target features to where both classifiers agree.

``SWD(p1, p2) = SW_2^2({p1(x_t,i)}, {p2(x_t,i)})``, the squared sliced Wasserstein distance between the
two clouds of ``(N, K)`` probability vectors (the paper's mean of squared differences of the sorted
projections, ``E_theta W_2^2``), computed by :class:`geom.losses.SlicedWassersteinLoss` (any scheme).

Baselines with the same networks and optimiser (:data:`METHODS`): ``"source_only"`` (step A alone)
and ``"sw"``, plain feature alignment: ``CE + lam * SW_2(G(x_s), G(x_t))``. Every method predicts
with the mean of the two classifiers' probabilities.

Shifts generated here: :func:`rotated_moons` (scikit-learn's two moons, the target rotated about the
centre of the moons) and :func:`transformed_digits` (scikit-learn's 8x8 digits, the target images
rotated or inverted). Both need scikit-learn (the ``learn`` extra: ``pip install geom[learn]``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from geom._checks import as_real_tensor, check_bool, check_int, check_positive_int, check_real, describe

__all__ = ["INITS", "METHODS", "MOONS_CENTER", "OPTIMIZERS", "AdaptNet", "AdaptResult", "Domains", "accuracy", "rotate", "rotate_images",
           "rotated_moons", "swd_discrepancy", "train_adapt", "transformed_digits"]

METHODS = ("source_only", "sw", "swd")
"""``"source_only"``: step A alone; ``"sw"``: source CE plus SW feature alignment; ``"swd"``: steps A, B, C."""

MOONS_CENTER = (0.5, 0.25)
"""Centre of scikit-learn's two moons (the midpoint of their bounding box), the centre of rotation."""

TRANSFORMS = ("rotate", "invert")
INITS = ("default", "xavier")
"""Initial weights of :class:`AdaptNet`: torch's default of ``nn.Linear``, or Glorot-uniform weights and zero biases."""
OPTIMIZERS = ("adam", "sgd")
"""The optimisers of :func:`train_adapt`: Adam, or plain gradient descent (``torch.optim.SGD``, no momentum)."""


def _sklearn_datasets():
    try:
        import sklearn.datasets
    except ImportError as exc:  # pragma: no cover - the extra is installed in the project's venv
        raise ImportError("geom.learn needs scikit-learn: pip install geom[learn]") from exc
    return sklearn.datasets


@dataclass
class Domains:
    """A labelled source, an unlabelled target for training and a labelled target test set.

    ``xs (Ns, D)``, ``ys (Ns,)``; ``xt (Nt, D)`` with ``yt (Nt,)`` (never used in training); ``xt_test``,
    ``yt_test``: held-out target points; ``n_classes``.
    """

    xs: torch.Tensor
    ys: torch.Tensor
    xt: torch.Tensor
    yt: torch.Tensor
    xt_test: torch.Tensor
    yt_test: torch.Tensor
    n_classes: int


def rotate(x, degrees: float, center=(0.0, 0.0)) -> torch.Tensor:
    """``(N, 2)`` points rotated counter-clockwise by ``degrees`` about ``center``:
    ``R (x - c) + c``, ``R = [[cos a, -sin a], [sin a, cos a]]`` (float64 arithmetic, the input's dtype back)."""
    x = as_real_tensor(x, "x", "an (N, 2) array of points")
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"x: expected an (N, 2) array of points, got shape {tuple(x.shape)}")
    a = math.radians(check_real(degrees, "degrees", "(finite)"))
    c = as_real_tensor(center, "center", "a point (2,)").double()
    if c.shape != (2,):
        raise ValueError(f"center: expected a point of shape (2,), got shape {tuple(c.shape)}")
    r = torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]], dtype=torch.float64)
    return ((x.double() - c) @ r.T + c).to(x.dtype)


def rotated_moons(n_source: int = 400, n_target: int = 400, n_test: int = 1000, *, degrees: float = 40.0,
                  noise: float = 0.1, seed: int = 0) -> Domains:
    """Two moons (scikit-learn) as the source; the target is another draw of them rotated by ``degrees``
    about :data:`MOONS_CENTER`.

    Args:
        n_source, n_target, n_test: points of the source, of the unlabelled target and of the target test set.
        degrees: the rotation of the target (counter-clockwise).
        noise: standard deviation of the Gaussian noise of ``make_moons``.
        seed: the draws (the source, target and test draws are independent; ``degrees`` does not change
            them: the target of ``degrees = a`` is :func:`rotate` of the target of ``degrees = 0``).
    """
    sizes = [check_positive_int(n, name) for n, name in ((n_source, "n_source"), (n_target, "n_target"),
                                                          (n_test, "n_test"))]
    degrees = check_real(degrees, "degrees", "(finite)")
    noise = check_real(noise, "noise", ">= 0", lambda v: v >= 0)
    seed = check_int(seed, "seed")
    ds = _sklearn_datasets()
    draws = []
    for i, n in enumerate(sizes):
        x, y = ds.make_moons(n, noise=noise, random_state=(3 * seed + i) % 2**32)
        draws.append((torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.int64)))
    (xs, ys), (xt, yt), (xq, yq) = draws
    return Domains(xs, ys, rotate(xt, degrees, MOONS_CENTER), yt, rotate(xq, degrees, MOONS_CENTER), yq, 2)


def rotate_images(images, degrees: float, size: int = 8) -> torch.Tensor:
    """``(N, size*size)`` row-major images rotated counter-clockwise by ``degrees`` about their centre
    (bilinear, zeros outside; a multiple of 90 degrees permutes the pixels exactly)."""
    x = as_real_tensor(images, "images", "an (N, size*size) array of images")
    size = check_positive_int(size, "size")
    if x.ndim != 2 or x.shape[1] != size * size:
        raise ValueError(f"images: expected an (N, {size * size}) array, got shape {tuple(x.shape)}")
    a = math.radians(check_real(degrees, "degrees", "(finite)"))
    c, s = (float(round(v)) if abs(v - round(v)) < 1e-12 else v for v in (math.cos(a), math.sin(a)))  # exact quarter turns
    # affine_grid maps each output pixel (x right, y down, in [-1, 1]) to the input point it samples
    theta = torch.tensor([[c, -s, 0.0], [s, c, 0.0]], dtype=torch.float64)
    grid = F.affine_grid(theta[None].expand(x.shape[0], 2, 3), [x.shape[0], 1, size, size], align_corners=False)
    out = F.grid_sample(x.double().reshape(-1, 1, size, size), grid, mode="bilinear", padding_mode="zeros",
                        align_corners=False)
    return out.reshape(x.shape[0], -1).to(x.dtype)


def transformed_digits(transform: str = "rotate", *, degrees: float = 30.0, target_fraction: float = 0.5,
                       test_fraction: float = 0.3, seed: int = 0) -> Domains:
    """scikit-learn's 8x8 digits in [0, 1]: a stratified split into source images and target images, the
    target ones transformed (``"rotate"`` by ``degrees``, or ``"invert"``: ``1 - x``); the target images
    are split again into the unlabelled training target and the target test set.

    Args:
        transform: ``"rotate"`` or ``"invert"``.
        degrees: the rotation of ``"rotate"``.
        target_fraction: share of the images that form the target domain.
        test_fraction: share of the target images held out for the test.
        seed: the splits.
    """
    if transform not in TRANSFORMS:
        raise ValueError(f"transform: expected one of {', '.join(map(repr, TRANSFORMS))}, got {transform!r}")
    degrees = check_real(degrees, "degrees", "(finite)")
    target_fraction = check_real(target_fraction, "target_fraction", "in (0, 1)", lambda v: 0 < v < 1)
    test_fraction = check_real(test_fraction, "test_fraction", "in (0, 1)", lambda v: 0 < v < 1)
    seed = check_int(seed, "seed")
    _sklearn_datasets()
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = torch.as_tensor(data.data, dtype=torch.float32) / 16.0
    y = torch.as_tensor(data.target, dtype=torch.int64)
    idx = torch.arange(len(y)).numpy()
    src, tgt = train_test_split(idx, test_size=target_fraction, random_state=seed, stratify=y.numpy())
    tgt, test = train_test_split(tgt, test_size=test_fraction, random_state=seed + 1, stratify=y.numpy()[tgt])
    shift = (lambda im: rotate_images(im, degrees)) if transform == "rotate" else (lambda im: 1.0 - im)
    src, tgt, test = (torch.as_tensor(i) for i in (src, tgt, test))
    return Domains(x[src], y[src], shift(x[tgt]), y[tgt], shift(x[test]), y[test], 10)


def _mlp(sizes) -> nn.Sequential:
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


class AdaptNet(nn.Module):
    """Feature generator ``G: in_dim -> hidden -> hidden -> feat_dim`` (ReLU features) and two classifiers
    ``F1, F2: feat_dim -> hidden -> hidden -> n_classes`` (logits), started from different weights.

    Args:
        in_dim, n_classes: data dimension and number of classes.
        hidden, feat_dim: widths.
        seed: the initial weights (torch's global RNG is left as it was).
        init: ``"default"`` (torch's ``nn.Linear``) or ``"xavier"`` (Glorot-uniform weights, zero biases).
    """

    def __init__(self, in_dim: int, n_classes: int, hidden: int = 64, feat_dim: int = 32, seed: int = 0,
                 init: str = "default"):
        super().__init__()
        in_dim, n_classes = check_positive_int(in_dim, "in_dim"), check_int(n_classes, "n_classes", minimum=2)
        hidden, feat_dim = check_positive_int(hidden, "hidden"), check_positive_int(feat_dim, "feat_dim")
        if init not in INITS:
            raise ValueError(f"init: expected one of {', '.join(map(repr, INITS))}, got {init!r}")
        self.in_dim, self.n_classes = in_dim, n_classes
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(check_int(seed, "seed"))
            self.G = nn.Sequential(_mlp([in_dim, hidden, hidden, feat_dim]), nn.ReLU())
            self.F1 = _mlp([feat_dim, hidden, hidden, n_classes])
            self.F2 = _mlp([feat_dim, hidden, hidden, n_classes])
            if init == "xavier":
                for layer in self.modules():
                    if isinstance(layer, nn.Linear):
                        nn.init.xavier_uniform_(layer.weight)
                        nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(features (N, feat_dim), logits of F1 (N, K), logits of F2 (N, K))``."""
        if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[1] != self.in_dim or not x.is_floating_point():
            raise TypeError(f"x: expected a floating (N, {self.in_dim}) tensor, got {describe(x)}")
        f = self.G(x)
        return f, self.F1(f), self.F2(f)

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, K)`` mean of the two classifiers' probabilities."""
        _, a, b = self(x)
        return 0.5 * (a.softmax(1) + b.softmax(1))


def accuracy(model: AdaptNet, x, y) -> float:
    """Share of ``(N, D)`` points ``x`` whose predicted class (:meth:`AdaptNet.predict_proba`) is ``y``."""
    if not isinstance(model, AdaptNet):
        raise TypeError(f"model: expected a geom.learn.adapt.AdaptNet, got {describe(model)}")
    x = as_real_tensor(x, "x", "an (N, D) array")
    y = torch.as_tensor(y)
    if y.shape != x.shape[:1]:
        raise ValueError(f"y: expected {x.shape[0]} labels, got shape {tuple(y.shape)}")
    return float((model.predict_proba(x).argmax(1) == y).double().mean())


def swd_discrepancy(p1: torch.Tensor, p2: torch.Tensor, loss, *, directions: torch.Tensor | None = None) -> torch.Tensor:
    """``SW_2^2`` between the ``(N, K)`` probability outputs ``p1`` and ``p2`` of the two classifiers on
    one target batch, as two point clouds in R^K; ``loss`` is a :class:`geom.losses.SlicedWassersteinLoss`
    with ``p = 2``; ``directions (L, K)`` override its draw. Zero for identical outputs; symmetric in the
    two (given the directions)."""
    from geom.losses import SlicedWassersteinLoss

    if not isinstance(loss, SlicedWassersteinLoss) or loss.p != 2:
        raise TypeError(f"loss: expected a geom.losses.SlicedWassersteinLoss with p = 2, got {describe(loss)}")
    for name, p in (("p1", p1), ("p2", p2)):
        if not isinstance(p, torch.Tensor) or p.ndim != 2 or not p.is_floating_point():
            raise TypeError(f"{name}: expected a floating (N, K) tensor of probabilities, got {describe(p)}")
    if p1.shape[1] != p2.shape[1]:
        raise ValueError(f"p1, p2: expected the same number of classes, got {p1.shape[1]} and {p2.shape[1]}")
    return loss(p1, p2, directions=directions).square()


def _sliced_loss(scheme, n_projections, seed, options):
    from geom.losses import SlicedWassersteinLoss

    return SlicedWassersteinLoss(scheme=scheme, n_projections=n_projections, p=2, seed=seed, **options)


@dataclass
class AdaptResult:
    """A trained model, its method, and per logged step the source CE and the target discrepancy (SWD
    for ``"swd"``, feature SW for ``"sw"``, nan for ``"source_only"``)."""

    model: AdaptNet
    method: str
    loss: nn.Module | None
    ce: list[float] = field(default_factory=list)
    discrepancy: list[float] = field(default_factory=list)


def _batch(x: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    """Indices of a batch drawn with replacement; all of ``x`` (full batch) when ``size >= len(x)``."""
    if size >= x.shape[0]:
        return torch.arange(x.shape[0])
    return torch.randint(x.shape[0], (size,), generator=gen)


def train_adapt(domains: Domains, method: str = "swd", *, hidden: int = 64, feat_dim: int = 32, steps: int = 1500,
                batch_size: int = 128, lr: float = 1e-3, n_generator_steps: int = 4, ascent: float = 1.0, lam: float = 1.0,
                warmup: int = 0, optimizer: str = "adam", init: str = "default", scheme="mc", n_projections: int = 128,
                seed: int = 0, progress: bool = False, log_every: int = 50, callback=None,
                **scheme_options) -> AdaptResult:
    """Train :class:`AdaptNet` on ``domains`` with one of :data:`METHODS` (see the module).

    Args:
        domains: the source and the (unlabelled) target.
        method: ``"source_only"``, ``"sw"`` or ``"swd"``.
        hidden, feat_dim: the networks' widths (the same for every method).
        steps: iterations (each draws one source and one target batch with replacement).
        batch_size, lr: batches (the whole source and target when ``batch_size`` is at least their size) and
            the step size of the optimiser (one for ``G``, one for ``F1, F2``).
        n_generator_steps: repetitions of step C per iteration (``"swd"``).
        ascent: weight of the discrepancy in step B, ``CE - ascent * SWD`` (``"swd"``; the paper: 1).
        lam: weight of the feature SW (``"sw"``).
        warmup: first iterations of step A alone (``"sw"`` and ``"swd"``).
        optimizer: ``"adam"`` or ``"sgd"`` (plain gradient descent, as the SWD paper's two-moons demo).
        init: the networks' initial weights, ``"default"`` or ``"xavier"`` (:class:`AdaptNet`).
        scheme, n_projections, **scheme_options: the sliced loss (any registered scheme or instance).
        seed: weights, batches and slicing directions.
        progress: a tqdm bar over the iterations.
        log_every: iterations between entries of the curves.
        callback: called as ``callback(step, model)`` after each logged iteration (for learning curves).
    """
    if not isinstance(domains, Domains):
        raise TypeError(f"domains: expected a geom.learn.adapt.Domains, got {describe(domains)}")
    if method not in METHODS:
        raise ValueError(f"method: expected one of {', '.join(map(repr, METHODS))}, got {method!r}")
    steps, batch_size = check_positive_int(steps, "steps"), check_positive_int(batch_size, "batch_size")
    n_generator_steps = check_positive_int(n_generator_steps, "n_generator_steps")
    lr = check_real(lr, "lr", "> 0", lambda v: v > 0)
    lam = check_real(lam, "lam", ">= 0", lambda v: v >= 0)
    ascent = check_real(ascent, "ascent", "> 0", lambda v: v > 0)
    warmup, log_every = check_int(warmup, "warmup"), check_positive_int(log_every, "log_every")
    seed, progress = check_int(seed, "seed"), check_bool(progress, "progress")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer: expected one of {', '.join(map(repr, OPTIMIZERS))}, got {optimizer!r}")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback: expected a callable (step, model) or None, got {describe(callback)}")
    xs, ys, xt = domains.xs, domains.ys, domains.xt
    model = AdaptNet(xs.shape[1], domains.n_classes, hidden, feat_dim, seed=seed, init=init)
    loss = None if method == "source_only" else _sliced_loss(scheme, n_projections, seed + 1, scheme_options)
    gen = torch.Generator().manual_seed(seed + 2)
    make = torch.optim.Adam if optimizer == "adam" else torch.optim.SGD
    opt_g = make(model.G.parameters(), lr=lr)
    opt_f = make([*model.F1.parameters(), *model.F2.parameters()], lr=lr)
    result = AdaptResult(model, method, loss)

    def source_ce(xb, yb):
        _, a, b = model(xb)
        return F.cross_entropy(a, yb) + F.cross_entropy(b, yb)

    def discrepancy(xb):
        _, a, b = model(xb)
        return swd_discrepancy(a.softmax(1), b.softmax(1), loss)

    it = range(steps)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc=f"adapt {method}", unit="step")
    for step in it:
        i, j = _batch(xs, batch_size, gen), _batch(xt, batch_size, gen)
        xb, yb, tb = xs[i], ys[i], xt[j]
        adapting = method != "source_only" and step >= warmup
        # step A (with the feature SW for "sw")
        ce = source_ce(xb, yb)
        total, disc = ce, None
        if adapting and method == "sw":
            disc = loss(model.G(xb), model.G(tb))
            total = ce + lam * disc
        opt_g.zero_grad()
        opt_f.zero_grad()
        total.backward()
        opt_g.step()
        opt_f.step()
        if adapting and method == "swd":
            # step B: classifiers keep the source and maximise the discrepancy on the target
            opt_f.zero_grad()
            (source_ce(xb, yb) - ascent * discrepancy(tb)).backward()
            opt_f.step()
            # step C: the generator minimises the discrepancy
            for _ in range(n_generator_steps):
                opt_g.zero_grad()
                disc = discrepancy(tb)
                disc.backward()
                opt_g.step()
        if step % log_every == 0 or step == steps - 1:
            result.ce.append(float(ce.detach()))
            result.discrepancy.append(math.nan if disc is None else float(disc.detach()))
            if callback is not None:
                callback(step, model)
    return result
