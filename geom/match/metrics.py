"""Evaluation of point-to-point maps: geodesic error, PCK curve and AUC, symmetric flips.

Geodesic distances on the target mesh come from the heat method (Crane, Weischedel & Wardetzky 2013)
of ``potpourri3d`` (``pip install 'geom[match]'``), or from Dijkstra on the edge graph (edge lengths,
scipy) where it is absent or ``method="dijkstra"``: an upper bound on the surface distance that
overestimates by a few percent on regular meshes.

Errors are normalised by ``sqrt(area)`` of the target (the convention of the shape-matching
literature); the PCK curve is the fraction of vertices with error at most each threshold in
``[0, 0.1]``, and its AUC is the curve's mean over that range (1 is perfect).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .._checks import check_int
from ..spectral import mesh_arrays
from .fmap import check_p2p

__all__ = ["GeodesicDistance", "MatchScore", "geodesic_error", "pck_curve", "score_map"]

METHODS = ("auto", "heat", "dijkstra")


class GeodesicDistance:
    """Geodesic distances from chosen sources on a mesh, by the heat method or Dijkstra (``method``)."""

    def __init__(self, vertices, faces, *, method: str = "auto"):
        if method not in METHODS:
            raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
        self.vertices, self.faces = mesh_arrays(vertices, faces)
        if method == "auto":
            try:
                import potpourri3d  # noqa: F401
                method = "heat"
            except ImportError:
                method = "dijkstra"
        self.method = method
        if method == "heat":
            try:
                import potpourri3d as pp3d
            except ImportError as exc:
                raise ImportError("method='heat': geodesics by the heat method need potpourri3d: "
                                  "pip install 'geom[match]'") from exc
            self._solver = pp3d.MeshHeatMethodDistanceSolver(self.vertices, self.faces)
        else:
            f = self.faces
            i = np.concatenate([f[:, 0], f[:, 1], f[:, 2]])
            j = np.concatenate([f[:, 1], f[:, 2], f[:, 0]])
            w = np.linalg.norm(self.vertices[i] - self.vertices[j], axis=1)
            V = len(self.vertices)
            g = sp.coo_matrix((w, (i, j)), shape=(V, V)).tocsr()
            self._graph = g.maximum(g.T)

    def from_source(self, s: int) -> np.ndarray:
        """``(V,)`` distances from vertex ``s``."""
        if self.method == "heat":
            return np.asarray(self._solver.compute_distance(int(s)), dtype=np.float64)
        import scipy.sparse.csgraph as cg

        return cg.dijkstra(self._graph, indices=int(s))

    def pairs(self, src, dst, progress=None) -> np.ndarray:
        """``(n,)`` distances ``d(src_k, dst_k)``: one solve per distinct source."""
        src, dst = np.asarray(src, np.int64), np.asarray(dst, np.int64)
        out = np.empty(len(src))
        order = np.argsort(src, kind="stable")
        uniq, start = np.unique(src[order], return_index=True)
        bounds = np.append(start, len(src))
        for u, a, b in zip(uniq, bounds[:-1], bounds[1:]):
            idx = order[a:b]
            out[idx] = self.from_source(u)[dst[idx]]
            if progress is not None:
                progress(1)
        return out


def pck_curve(errors, thresholds=None) -> tuple[np.ndarray, np.ndarray, float]:
    """``(thresholds, fraction of errors <= each, AUC)``; thresholds default to 101 in ``[0, 0.1]``."""
    e = np.asarray(errors, dtype=np.float64)
    if e.ndim != 1 or len(e) == 0 or np.isnan(e).any():
        raise ValueError(f"errors: expected a non-empty 1-D array of numbers, got shape {e.shape}")
    t = np.linspace(0, 0.1, 101) if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    curve = (e[None, :] <= t[:, None]).mean(1)
    auc = float(np.trapezoid(curve, t) / (t[-1] - t[0])) if len(t) > 1 else float(curve[0])
    return t, curve, auc


@dataclass
class MatchScore:
    """Geodesic errors of a map (normalised by ``sqrt(area)`` of the target) and their summaries."""

    errors: np.ndarray  # (n_eval,)
    sources: np.ndarray  # (n_eval,) the evaluated source vertices
    mean: float
    thresholds: np.ndarray
    pck: np.ndarray
    auc: float
    flip_rate: float | None

    def to_json(self) -> dict:
        return {"mean_geodesic_error": self.mean, "auc": self.auc, "flip_rate": self.flip_rate,
                "n_evaluated": int(len(self.errors)), "pck_thresholds": self.thresholds.tolist(),
                "pck": self.pck.tolist()}


def geodesic_error(pred, truth, vertices_b, faces_b, *, sources=None, method: str = "auto", geodesic=None,
                   progress=None) -> np.ndarray:
    """``(n,)`` ``d_B(pred[x], truth[x]) / sqrt(area_B)`` for each source ``x`` (all, or ``sources``)."""
    v, f = mesh_arrays(vertices_b, faces_b, "vertices_b")
    pred = check_p2p(pred, len(np.asarray(pred).reshape(-1)), len(v), "pred")
    truth = check_p2p(truth, len(pred), len(v), "ground_truth")
    idx = np.arange(len(pred)) if sources is None else np.asarray(sources, np.int64)
    area = np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1).sum() / 2
    geo = geodesic or GeodesicDistance(v, f, method=method)
    return geo.pairs(truth[idx], pred[idx], progress) / np.sqrt(area)


def score_map(pred, truth, vertices_b, faces_b, *, n_eval: int | None = None, seed: int = 0, symmetry=None,
              method: str = "auto", progress=None) -> MatchScore:
    """Geodesic error, PCK and AUC of ``pred`` against ``truth`` (both ``(n_A,)`` indices into B), on all
    source vertices or ``n_eval`` of them drawn with ``seed``; ``symmetry`` ``(n_B,)`` (an intrinsic
    symmetry of B as a vertex map) adds the rate of symmetric flips: sources whose prediction lies
    nearer the symmetric image of the truth than the truth, and farther than 0.05 from it."""
    n = len(np.asarray(pred).reshape(-1))
    if n_eval is not None and check_int(n_eval, "n_eval", minimum=1) < n:
        sources = np.sort(np.random.default_rng(seed).choice(n, n_eval, replace=False))
    else:
        sources = np.arange(n)
    v, f = mesh_arrays(vertices_b, faces_b, "vertices_b")
    geo = GeodesicDistance(v, f, method=method)
    err = geodesic_error(pred, truth, v, f, sources=sources, geodesic=geo, progress=progress)
    flip = None
    if symmetry is not None:
        sym = check_p2p(symmetry, len(v), len(v), "symmetry")
        err_sym = geodesic_error(pred, sym[truth], v, f, sources=sources, geodesic=geo)
        flip = float(((err_sym < err) & (err > 0.05)).mean())
    t, curve, auc = pck_curve(err)
    return MatchScore(err, sources, float(err.mean()), t, curve, auc, flip)
