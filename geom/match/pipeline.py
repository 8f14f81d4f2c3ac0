"""``geom.match.match``: one call from two shapes to a point-to-point map, by one of four methods.

==============  =========================================================================================
method          what it does
==============  =========================================================================================
``fmap``        WKS descriptors -> least-squares functional map (Laplacian commutativity, orientation)
                -> ZoomOut to ``n_eigen`` -> nearest neighbours in the spectral embedding
``fmap-sw``     the same start from each of several sizes ``k_init``, then the paper's SW loss on
                the spectral embeddings aligns ``C`` (:func:`geom.match.sw.sw_align`) and ZoomOut
                grows it to ``n_eigen / 2``, where the start whose embeddings have the lowest SW
                wins (:func:`geom.match.sw.embedding_sw`) and alone grows on to ``n_eigen``; entropic refinement (log-domain Sinkhorn,
                eps annealing, :func:`geom.match.refine.entropic_refine`) finishes it, kept
                where the point map's own embedding ``Phi_A Phi_A^+ Phi_B[T]`` comes closer to B's
``sliced-plan`` the descriptors' map aligns the embeddings, then the expected sliced plan between
                ``Phi_A C`` and ``Phi_B`` (:func:`geom.sliced_plan`) gives each vertex its target
``rigid``       rotation + translation (+ scale) by SW from several starts, then nearest vertices
==============  =========================================================================================

Mesh-only methods (all but ``rigid``) need faces for their Laplacian and a connected shape; ``rigid``
works on point clouds.

Why several starts for ``fmap-sw``: how many eigenfunctions the descriptors can fix depends on the
pair. A coarse remesh (300 vertices) is matched well only from ``k_init = 6`` (its higher
eigenfunctions differ between the triangulations), a 5000-vertex arm only from 10 or 20 (at 6 its
low eigenfunctions leave it ambiguous); the SW between the final embeddings picked the best start of
(6, 10, 20) on every generated pair of the benchmark (``tools/match_bench.py``). Refinement likewise
helps most pairs (bunny 0.0018 -> 0.0007 mean geodesic error) and hurts a few (the 502-vertex knight,
0.0065 -> 0.0094, where one vertex's share of the area is large); the same score kept the better map
on each of the five generated pairs where it was measured.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .._checks import check_int
from .. import spectral
from ..plans import sliced_plan
from .fmap import descriptor_fmap, p2p_to_fmap, zoomout
from .refine import entropic_refine
from .rigid import rigid_register
from .sw import embedding_sw, sw_align

__all__ = ["K_INIT", "METHODS", "MatchResult", "match", "progress_steps"]

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


K_INIT = {"fmap": 20, "fmap-sw": (6, 10, 20), "sliced-plan": 20}


def _starts(k_init, n_eigen: int) -> tuple[int, ...]:
    ks = (k_init,) if isinstance(k_init, (int, np.integer)) or not hasattr(k_init, "__iter__") else tuple(k_init)
    if not ks:
        raise ValueError("k_init: expected an int or a non-empty sequence of ints, got an empty sequence")
    return tuple(dict.fromkeys(min(check_int(k, "k_init", minimum=2), n_eigen) for k in ks))


def progress_steps(method: str, *, k_init=None, sw_steps: int = 100, n_eigen: int = 60) -> int:
    """How many steps :func:`match` reports to its ``progress`` callable (a progress bar's total)."""
    if method == "rigid":
        return 24
    starts = len(_starts(K_INIT[method] if k_init is None else k_init, n_eigen))
    per_start = {"fmap": 0, "fmap-sw": sw_steps, "sliced-plan": 0}[method]
    return 2 + starts * per_start + {"fmap": 1, "fmap-sw": 1 + 3, "sliced-plan": 0}[method]


def match(source, target, *, method: str = "fmap", n_eigen: int = 60, k_init=None, n_descr: int = 10,
          w_orient: float = 0.1, zoom_step: int = 4, sw_steps: int = 100, seed: int = 0, progress=None) -> MatchResult:
    """Point-to-point map from ``source`` to ``target``: each a ``(vertices, faces)`` pair (or an
    ``(N, 3)`` array for ``rigid``). See the module for the methods.

    Args:
        n_eigen: eigenfunctions of the final map (ZoomOut's target).
        k_init: eigenfunctions of the first map, or a sequence of them: each is a start, and the map
            whose final embeddings have the lowest SW (:func:`geom.match.sw.embedding_sw`) wins. None:
            :data:`K_INIT` of the method (20; ``(6, 10, 20)`` for ``fmap-sw``).
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
    starts = _starts(K_INIT[method] if k_init is None else k_init, n_eigen)
    every = max(1, 100 // check_int(n_descr, "n_descr", minimum=1))
    sa = spectral.spectrum(va, fa, n_eigen=n_eigen, seed=seed)
    tell("eigenpairs", 1)
    sb = spectral.spectrum(vb, fb, n_eigen=n_eigen, seed=seed)
    tell("eigenpairs", 1)
    da = spectral.wks(sa.evals, sa.evecs, n_energies=100)[:, ::every]
    db = spectral.wks(sb.evals, sb.evecs, n_energies=100)[:, ::every]
    info = {"n_eigen": n_eigen, "k_init": list(starts), "n_descriptors": int(da.shape[1])}
    runs = []
    k_mid = n_eigen if len(starts) == 1 else max(max(starts), n_eigen // 2)
    for k in starts:
        C = descriptor_fmap(sa, sb, da, db, k=k, w_orient=w_orient)
        if method == "sliced-plan":
            x = torch.from_numpy(sa.evecs[:, :k] @ C)
            y = torch.from_numpy(sb.evecs[:, :k])
            import geom

            plan = sliced_plan(geom.measure(x, weights=torch.from_numpy(sa.mass)),
                               geom.measure(y, weights=torch.from_numpy(sb.mass)), n_projections=64, seed=seed)
            T = plan.assignment("expected").numpy()
            runs.append((C, T, {}))
            continue
        run = {}
        if method == "fmap-sw":
            C, losses = sw_align(C, sa, sb, n_steps=sw_steps, seed=seed, progress=lambda n=1: tell("sw steps", n))
            run["sw_loss_first_last"] = [losses[0], losses[-1]] if losses else []
        C = zoomout(C, sa, sb, k_mid, step=zoom_step, return_p2p=False)
        runs.append((C, None, run))
    if len(runs) > 1:  # starts compared at k_mid (the same ranking as at n_eigen on every benchmark pair)
        scores = [embedding_sw(C, sa, sb, seed=seed) for C, _, _ in runs]
        best = int(np.argmin(scores))
        info.update(start_scores=scores, k_compared=k_mid, k_chosen=starts[best])
    else:
        best = 0
    C, T, run = runs[best]
    info.update(run)
    if method != "sliced-plan":
        C, T = zoomout(C, sa, sb, n_eigen, step=zoom_step)  # the chosen start only, the rest of the way
        tell("zoomout", 1)
    if method == "fmap-sw":  # refinement kept where it brings the point map's embedding closer
        C_ref, T_ref = entropic_refine(C, sa, sb, progress=lambda n=1: tell("sinkhorn eps", n))
        before, after = (embedding_sw(p2p_to_fmap(t, sa, sb), sa, sb, seed=seed) for t in (T, T_ref))
        info.update(refined=bool(after < before), map_scores={"zoomout": before, "refined": after})
        if after < before:
            C, T = C_ref, T_ref
    return MatchResult(T, method, C, info)
