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

__all__ = ["sw_align"]


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
