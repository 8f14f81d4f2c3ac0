"""Rigid registration by sliced Wasserstein: rotation, translation and optionally scale.

``min_{R, t, s} SW_2^2(s R x + t, y)`` over rotations (parametrised by a unit quaternion), from
several starts (the 24 rotations of the cube, the identity first, and a random one per extra start
from ``seed``), all run together as one batch of the estimator (Adam acts on each start's own
parameters, so they stay independent); the best final loss wins and is then refined on every point. The SW term is invariant to the
order of the points, so no correspondence is needed; the point-to-point map is then each moved source
vertex's nearest target vertex. The translation starts at the difference of the centroids and the
scale at the ratio of the RMS radii.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch

from .._checks import check_bool, check_int, check_real
from ..measures import measure
from ..sliced import sliced_wasserstein
from ..spectral import points_array
from ._nn import nearest

__all__ = ["RigidResult", "cube_rotations", "rigid_register"]


@dataclass
class RigidResult:
    rotation: np.ndarray  # (3, 3)
    translation: np.ndarray  # (3,)
    scale: float
    loss: float
    p2p: np.ndarray  # (n_source,) nearest target vertex of each moved source vertex

    def apply(self, x) -> np.ndarray:
        return self.scale * np.asarray(x, np.float64) @ self.rotation.T + self.translation


def cube_rotations() -> np.ndarray:
    """``(24, 3, 3)`` the rotations of the cube (signed permutation matrices of determinant 1), identity first."""
    out = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            R = np.zeros((3, 3))
            R[np.arange(3), perm] = signs
            if np.linalg.det(R) > 0:
                out.append(R)
    out.sort(key=lambda R: -np.trace(R))
    return np.stack(out)


def _quat_to_rot(q: torch.Tensor) -> torch.Tensor:
    """``(..., 3, 3)`` rotations of quaternions ``(..., 4)`` (w, x, y, z; any norm)."""
    w, x, y, z = (q / q.norm(dim=-1, keepdim=True)).unbind(-1)
    return torch.stack([
        torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        torch.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        torch.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def _rot_to_quat(R: np.ndarray) -> np.ndarray:
    import scipy.spatial.transform as tr

    x, y, z, w = tr.Rotation.from_matrix(R).as_quat()
    return np.array([w, x, y, z])


def rigid_register(source, target, *, scale: bool = False, n_starts: int = 24, n_steps: int = 40, final_steps: int = 150,
                   lr: float = 2e-2, n_projections: int = 64, n_samples: int = 512, seed: int = 0,
                   progress=None) -> RigidResult:
    """Register ``source (N, 3)`` onto ``target (M, 3)`` by SW (see the module); ``n_starts`` up to 24
    cube rotations, then random ones."""
    x = points_array(source, "source")
    y = points_array(target, "target")
    scale = check_bool(scale, "scale")
    n_starts, n_steps = check_int(n_starts, "n_starts", minimum=1), check_int(n_steps, "n_steps", minimum=0)
    lr = check_real(lr, "lr", "> 0", lambda v: v > 0)
    rng = np.random.default_rng(check_int(seed, "seed"))
    gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
    cx, cy = x.mean(0), y.mean(0)
    rx, ry = np.sqrt(((x - cx) ** 2).sum(1).mean()), np.sqrt(((y - cy) ** 2).sum(1).mean())
    unit = max(ry, 1e-300)  # work in units of the target's radius
    xc = torch.from_numpy((x - cx) / unit)
    nu = measure(torch.from_numpy((y - cy) / unit))
    starts = list(cube_rotations()[:n_starts])
    import scipy.spatial.transform as tr

    while len(starts) < n_starts:
        starts.append(tr.Rotation.random(random_state=rng).as_matrix())
    n_samples = check_int(n_samples, "n_samples", minimum=3)
    sub_x = torch.from_numpy(rng.choice(len(x), min(n_samples, len(x)), replace=False))
    sub_y = torch.from_numpy(rng.choice(len(y), min(n_samples, len(y)), replace=False))
    nu_sub = measure(nu.support[0][sub_y])

    def run(q0, t0, s0, pts, target, steps):
        """Adam on ``S`` starts at once: ``q0 (S, 4)``, ``t0 (S, 3)``, ``s0 (S,)``; the final losses and parameters."""
        q = q0.clone().requires_grad_(True)
        t = t0.clone().requires_grad_(True)
        log_s = s0.clone().requires_grad_(scale)
        opt = torch.optim.Adam([q, t] + ([log_s] if scale else []), lr=lr)
        batch = measure(target.support.expand(len(q0), -1, -1))  # (S, M, 3) the same target for every start
        for step in range(steps + 1):
            opt.zero_grad()
            moved = log_s.exp()[:, None, None] * pts @ _quat_to_rot(q).transpose(1, 2) + t[:, None]  # (S, n, 3)
            loss = sliced_wasserstein(measure(moved), batch, p=2, n_projections=n_projections, generator=gen) ** 2
            if step == steps:
                return loss.detach(), q.detach(), t.detach(), log_s.detach()
            loss.sum().backward()  # each start's loss depends on its own parameters only
            opt.step()

    S = len(starts)
    s_init = torch.full((S,), float(np.log(ry / max(rx, 1e-300))) if scale else 0.0, dtype=torch.float64)
    q0 = torch.from_numpy(np.stack([_rot_to_quat(R0) for R0 in starts]))
    losses, q, t, log_s = run(q0, torch.zeros(S, 3, dtype=torch.float64), s_init, xc[sub_x], nu_sub, n_steps)
    if progress is not None:
        progress(S)
    b = int(torch.argmin(losses))
    loss, q, t, log_s = run(q[b:b + 1], t[b:b + 1], log_s[b:b + 1], xc, nu, check_int(final_steps, "final_steps"))
    q, t, log_s, loss = q[0], t[0], log_s[0], float(loss[0])  # the best start, refined on all points
    best = (loss, _quat_to_rot(q).numpy(), t.numpy() * unit, float(log_s.exp()))
    value, R, t, s = best
    if not scale:
        s = 1.0
    translation = cy + t - s * R @ cx  # y ~ s R (x - cx) + cy + t
    res = RigidResult(R, translation, s, value, np.empty(0, np.int64))
    res.p2p = nearest(res.apply(x), y, backend="gram")
    return res
