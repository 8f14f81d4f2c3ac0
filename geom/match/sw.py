"""The paper's unsupervised loss: sliced Wasserstein between spectral embeddings drives the map C.

Paper: *Integrating Efficient Optimal Transport and Functional Maps For Unsupervised Shape
Correspondence Learning* (CVPR 2024). There SW aligns learned features; here, with no network, the
same loss aligns the shapes' spectral embeddings through the functional map itself::

    E(C) = SW_2^2( sum_i a_i delta_{Phi_A[i] C},  sum_j b_j delta_{Phi_B[j]} )
           + w_lap |C Lambda_B - Lambda_A C|^2 + w_orth |C^T C - I|^2

(``a, b``: lumped areas, normalised) minimised by Adam from the descriptors' map, with gradients to
``C`` through :func:`geom.sliced_wasserstein` (fresh directions each step, drawn from ``seed``).
With ``n_samples`` set, each step compares ``n_samples`` vertices of each shape drawn with
probability proportional to their area (an unbiased, uniformly weighted sample of each measure, so
the estimator takes its equal-size fast path): the cost of a step no longer grows with the meshes.

The same SW, between the final embeddings, scores a map without ground truth
(:func:`embedding_sw`): :func:`geom.match.match` runs ``fmap-sw`` from several initial sizes of ``C``
and keeps the map whose embeddings are closest.
A map ``C`` that carries A's embedding onto B's makes ``Phi_A C`` and ``Phi_B`` the same point set,
so the SW term vanishes at the true map; the commutativity and orthogonality terms keep ``C`` near
an isometry's map.
"""

from __future__ import annotations

import numpy as np
import torch

from .._checks import check_int, check_real
from ..measures import measure
from ..sliced import sliced_wasserstein
from ..spectral import Spectrum
from .fmap import check_descriptors

__all__ = ["descriptor_map", "embedding_sw", "sw_align", "sw_descriptor_weights"]


def sw_align(C, spec_a: Spectrum, spec_b: Spectrum, *, n_steps: int = 200, lr: float = 1e-2,
             n_projections: int = 64, w_lap: float = 1e-2, w_orth: float = 1.0, n_samples: int | None = 1024, seed: int = 0,
             progress=None) -> tuple[np.ndarray, list[float]]:
    """``(C, losses)``: the ``(k, k)`` map after ``n_steps`` of Adam on ``E(C)`` from ``C``."""
    C0 = np.asarray(C, dtype=np.float64)
    if C0.ndim != 2 or C0.shape[0] != C0.shape[1]:
        raise ValueError(f"C: expected a square (k, k) functional map, got shape {C0.shape}")
    k = C0.shape[0]
    n_steps = check_int(n_steps, "n_steps", minimum=0)
    lr = check_real(lr, "lr", "> 0", lambda v: v > 0)
    w_lap = check_real(w_lap, "w_lap", ">= 0", lambda v: v >= 0)
    w_orth = check_real(w_orth, "w_orth", ">= 0", lambda v: v >= 0)
    gen = torch.Generator().manual_seed(check_int(seed, "seed"))
    phi_a = torch.from_numpy(spec_a.evecs[:, :k]).float()  # float32 slices: the loss needs no more digits
    # each embedding scaled so that its rows have unit mean squared norm: lr does not depend on the area
    scale = float(np.sqrt(spec_b.area / k))
    emb_b = torch.from_numpy(spec_b.evecs[:, :k] * scale).float()
    b = torch.from_numpy(spec_b.mass).float()
    nu = measure(emb_b, weights=b)
    if n_samples is not None:
        n_samples = check_int(n_samples, "n_samples", minimum=2)
    a = torch.from_numpy(spec_a.mass).float()
    top = max(float(spec_a.evals[k - 1]), float(spec_b.evals[k - 1]), 1e-300)
    la, lb = torch.from_numpy(spec_a.evals[:k] / top), torch.from_numpy(spec_b.evals[:k] / top)
    Ct = torch.tensor(C0, requires_grad=True)
    opt = torch.optim.Adam([Ct], lr=lr)
    eye = torch.eye(k, dtype=torch.float64)
    losses = []
    for _ in range(n_steps):
        opt.zero_grad()
        if n_samples is None:
            mu, target = measure(phi_a @ Ct.float() * scale, weights=a), nu
        else:  # area-proportional samples of both shapes
            ia = torch.multinomial(a, n_samples, replacement=True, generator=gen)
            ib = torch.multinomial(b, n_samples, replacement=True, generator=gen)
            mu, target = measure(phi_a[ia] @ Ct.float() * scale), measure(emb_b[ib])
        sw = sliced_wasserstein(mu, target, p=2, n_projections=n_projections, generator=gen) ** 2
        lap = (Ct * (lb[None] - la[:, None])).square().sum()
        orth = (Ct.T @ Ct - eye).square().sum()
        loss = sw + w_lap * lap + w_orth * orth
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if progress is not None:
            progress(1)
    return Ct.detach().numpy(), losses


def embedding_sw(C, spec_a: Spectrum, spec_b: Spectrum, *, n_projections: int = 256, seed: int = 0) -> float:
    """``SW_2^2(Phi_A C, Phi_B) / E_b |Phi_B|^2``: how far a ``(k, k)`` map leaves A's embedding from
    B's (each weighted by its lumped areas), relative to the embedding's size, so that scores of maps
    of one pair compare across ``k``. Zero when ``C`` carries one embedding exactly onto the other."""
    C = np.asarray(C, dtype=np.float64)
    if C.ndim != 2 or C.shape[0] != C.shape[1] or C.shape[0] > min(spec_a.evecs.shape[1], spec_b.evecs.shape[1]):
        raise ValueError(f"C: expected a square map of at most {min(spec_a.evecs.shape[1], spec_b.evecs.shape[1])} "
                         f"eigenfunctions, got shape {C.shape}")
    k = C.shape[0]
    x, y = torch.from_numpy(spec_a.evecs[:, :k] @ C), torch.from_numpy(spec_b.evecs[:, :k])
    a, b = torch.from_numpy(spec_a.mass), torch.from_numpy(spec_b.mass)
    sw = sliced_wasserstein(measure(x, weights=a), measure(y, weights=b), p=2, n_projections=n_projections, seed=seed)
    return float(sw**2 / ((b / b.sum()) * y.square().sum(1)).sum())


def descriptor_map(weights, spec_a: Spectrum, spec_b: Spectrum, coef_a, coef_b, k: int, w_lap: float = 1e-2):
    """``(k, k)`` torch map solving ``min_C sum_q w_q |C b_q - a_q|^2 + w_lap |C Lambda_B - Lambda_A C|^2``
    for descriptor coefficients ``a_q, b_q`` (columns of ``coef_a, coef_b``, ``(k, Q)``), differentiable
    in the weights ``(Q,)``: one ridge system per row of ``C``, solved by ``torch.linalg.solve``."""
    top = max(float(spec_a.evals[k - 1]), float(spec_b.evals[k - 1]), 1e-300)
    la = torch.from_numpy(spec_a.evals[:k] / top)
    lb = torch.from_numpy(spec_b.evals[:k] / top)
    pa, pb = torch.as_tensor(coef_a, dtype=torch.float64), torch.as_tensor(coef_b, dtype=torch.float64)
    H = (pb * weights) @ pb.T  # (k, k) sum_q w_q b_q b_q^T
    systems = H[None] + w_lap * torch.diag_embed((lb[None] - la[:, None]) ** 2)  # (k, k, k), one per row i
    rhs = (pa * weights) @ pb.T  # (k, k) row i: sum_q w_q a_iq b_q
    return torch.linalg.solve(systems + 1e-12 * torch.eye(k, dtype=torch.float64), rhs)


def sw_descriptor_weights(spec_a: Spectrum, spec_b: Spectrum, desc_a, desc_b, k: int = 20, *, n_steps: int = 100,
                          lr: float = 5e-2, n_projections: int = 64, w_lap: float = 1e-2, n_samples: int | None = 1024,
                          seed: int = 0, progress=None) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """``(weights (Q,), C (k, k), losses)``: descriptor weights learned by the same SW loss, unsupervised.

    The map is the descriptors' least-squares map with each descriptor weighted (:func:`descriptor_map`);
    the weights ``w = Q softmax(theta)`` (positive, mean 1: the Laplacian term keeps its weight) follow
    Adam on ``SW_2^2(Phi_A C(w), Phi_B)``, with gradients through the solve. Descriptors that disagree
    between the shapes pull the embeddings apart and lose weight.
    """
    da, db = check_descriptors(desc_a, desc_b, spec_a, spec_b)
    k = check_int(k, "k", minimum=1)
    if k > min(spec_a.evecs.shape[1], spec_b.evecs.shape[1]):
        raise ValueError(f"k: expected at most the {min(spec_a.evecs.shape[1], spec_b.evecs.shape[1])} eigenpairs "
                         f"computed, got {k}")
    n_steps = check_int(n_steps, "n_steps", minimum=0)
    lr = check_real(lr, "lr", "> 0", lambda v: v > 0)
    norm = lambda d, m: d / np.sqrt((m[:, None] * d**2).sum(0)).clip(1e-300)  # noqa: E731 unit M-norm columns
    coef_a = spec_a.evecs[:, :k].T @ (spec_a.mass[:, None] * norm(da, spec_a.mass))  # (k, Q)
    coef_b = spec_b.evecs[:, :k].T @ (spec_b.mass[:, None] * norm(db, spec_b.mass))
    gen = torch.Generator().manual_seed(check_int(seed, "seed"))
    Q = da.shape[1]
    theta = torch.zeros(Q, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([theta], lr=lr)
    scale = float(np.sqrt(spec_b.area / k))
    phi_a = torch.from_numpy(spec_a.evecs[:, :k])
    emb_b = torch.from_numpy(spec_b.evecs[:, :k] * scale)
    a, b = torch.from_numpy(spec_a.mass), torch.from_numpy(spec_b.mass)
    losses = []
    for _ in range(n_steps):
        opt.zero_grad()
        C = descriptor_map(Q * torch.softmax(theta, 0), spec_a, spec_b, coef_a, coef_b, k, w_lap)
        if n_samples is None:
            mu, nu = measure(phi_a @ C * scale, weights=a), measure(emb_b, weights=b)
        else:
            ia = torch.multinomial(a, n_samples, replacement=True, generator=gen)
            ib = torch.multinomial(b, n_samples, replacement=True, generator=gen)
            mu, nu = measure(phi_a[ia] @ C * scale), measure(emb_b[ib])
        loss = sliced_wasserstein(mu, nu, p=2, n_projections=n_projections, generator=gen) ** 2
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if progress is not None:
            progress(1)
    with torch.no_grad():
        w = Q * torch.softmax(theta, 0)
        C = descriptor_map(w, spec_a, spec_b, coef_a, coef_b, k, w_lap)
    return w.numpy(), C.numpy(), losses
