"""``geom.match.match``: one call from two shapes to a point-to-point map, by one of four methods.

==============  =========================================================================================
method          what it does
==============  =========================================================================================
``fmap``        WKS descriptors -> least-squares functional map (Laplacian commutativity, orientation)
                -> ZoomOut to ``n_eigen`` -> nearest neighbours in the spectral embedding
``fmap-sw``     the same start, then the paper's SW loss on the spectral embeddings aligns ``C``
                (:func:`geom.match.sw.sw_align`), ZoomOut, and entropic refinement (log-domain
                Sinkhorn, eps annealing, :func:`geom.match.refine.entropic_refine`)
``sliced-plan`` the descriptors' map aligns the embeddings, then the expected sliced plan between
                ``Phi_A C`` and ``Phi_B`` (:func:`geom.sliced_plan`) gives each vertex its target
``rigid``       rotation + translation (+ scale) by SW from several starts, then nearest vertices
==============  =========================================================================================

Mesh-only methods (all but ``rigid``) need faces for their Laplacian and a connected shape; ``rigid``
works on point clouds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .._checks import check_int
from .. import spectral
from ..plans import sliced_plan
from .fmap import descriptor_fmap, zoomout
from .refine import entropic_refine
from .rigid import rigid_register
from .sw import sw_align

__all__ = ["METHODS", "MatchResult", "match"]

METHODS = ("fmap", "fmap-sw", "sliced-plan", "rigid")


@dataclass
class MatchResult:
    p2p: np.ndarray  # (n_source,) target vertex of each source vertex
    method: str
    fmap: np.ndarray | None = None  # (k, k) pull-back functional map, where the method has one
    info: dict = field(default_factory=dict)


def _shape(obj, name: str):
    if isinstance(obj, tuple) and len(obj) == 2:
        v, f = obj
    else:
        v, f = obj, None
    return v, f


def match(source, target, *, method: str = "fmap", n_eigen: int = 60, k_init: int = 20, n_descr: int = 10,
          w_orient: float = 0.1, zoom_step: int = 4, sw_steps: int = 100, seed: int = 0, progress=None) -> MatchResult:
    """Point-to-point map from ``source`` to ``target``: each a ``(vertices, faces)`` pair (or an
    ``(N, 3)`` array for ``rigid``). See the module for the methods.

    Args:
        n_eigen: eigenfunctions of the final map (ZoomOut's target); ``k_init`` those of the first map.
        n_descr: WKS descriptors (of 100 energies, every ``100 / n_descr``-th).
        w_orient: weight of the orientation-preserving term.
        zoom_step: eigenfunctions added per ZoomOut iteration.
        sw_steps: Adam steps of the SW alignment (``fmap-sw``).
        seed: the seed of every random choice (directions, starts).
        progress: a callable ``(stage: str, steps: int)`` told of long work, or None.
    """
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    tell = progress or (lambda stage, n=1: None)
    va, fa = _shape(source, "source")
    vb, fb = _shape(target, "target")
    if method == "rigid":
        r = rigid_register(va, vb, seed=seed, progress=lambda n=1: tell("rigid starts", n))
        return MatchResult(r.p2p, method, None, {"rotation": r.rotation.tolist(), "translation": r.translation.tolist(),
                                                  "scale": r.scale, "loss": r.loss})
    for f, name in ((fa, "source"), (fb, "target")):
        if f is None or len(np.asarray(f)) == 0:
            raise ValueError(f"{name}: method {method!r} needs a triangle mesh, got a point cloud without faces; "
                             "use method='rigid' for point clouds")
    n_eigen = check_int(n_eigen, "n_eigen", minimum=2)
    k_init = min(check_int(k_init, "k_init", minimum=2), n_eigen)
    sa = spectral.spectrum(va, fa, n_eigen=n_eigen, seed=seed)
    tell("eigenpairs", 1)
    sb = spectral.spectrum(vb, fb, n_eigen=n_eigen, seed=seed)
    tell("eigenpairs", 1)
    every = max(1, 100 // check_int(n_descr, "n_descr", minimum=1))
    da = spectral.wks(sa.evals, sa.evecs, n_energies=100)[:, ::every]
    db = spectral.wks(sb.evals, sb.evecs, n_energies=100)[:, ::every]
    C = descriptor_fmap(sa, sb, da, db, k=k_init, w_orient=w_orient)
    info = {"n_eigen": n_eigen, "k_init": k_init, "n_descriptors": int(da.shape[1])}
    if method == "sliced-plan":
        k = k_init
        x = torch.from_numpy(sa.evecs[:, :k] @ C)
        y = torch.from_numpy(sb.evecs[:, :k])
        import geom

        plan = sliced_plan(geom.measure(x, weights=torch.from_numpy(sa.mass)),
                           geom.measure(y, weights=torch.from_numpy(sb.mass)), n_projections=64, seed=seed)
        return MatchResult(plan.assignment("expected").numpy(), method, C, info)
    if method == "fmap-sw":
        C, losses = sw_align(C, sa, sb, n_steps=sw_steps, seed=seed, progress=lambda n=1: tell("sw steps", n))
        info["sw_loss_first_last"] = [losses[0], losses[-1]] if losses else []
    C, T = zoomout(C, sa, sb, n_eigen, step=zoom_step)
    tell("zoomout", 1)
    if method == "fmap-sw":
        C, T = entropic_refine(C, sa, sb, progress=lambda n=1: tell("sinkhorn eps", n))
    return MatchResult(T, method, C, info)
