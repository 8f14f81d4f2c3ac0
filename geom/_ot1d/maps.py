"""Transport maps on the line: where the monotone coupling sends each atom (the flows' 1-D step)."""

from __future__ import annotations

import torch

from .pool import sort_rows

__all__ = ["transport_map"]


def transport_map(u: torch.Tensor, a: torch.Tensor, v: torch.Tensor, b: torch.Tensor, *, same_uniform: bool = False):
    """Where the 1-D optimal transport map sends each particle, row by row.

    Args:
        u: ``(L, N)`` projections of the particles, masses ``a (N,)``.
        v: ``(L, M)`` projections of the target, masses ``b (M,)``.
        same_uniform: ``N == M`` with uniform masses (the k-th smallest goes to the k-th smallest).

    Returns:
        ``T (L, N)``: the mean of the target quantile function over the particle's mass interval
        ``[F(u_i^-), F(u_i)]`` (``F`` the particles' CDF), i.e. the barycentric projection of the
        monotone coupling, which is ``Q_nu(F(u_i))`` when each particle meets one target atom; and
        ``costs (L,)``: ``W_2^2`` of each row.
    """
    L, N = u.shape
    us, pu = sort_rows(u, True)  # (L, N)
    vs, pv = sort_rows(v, not same_uniform)  # (L, M)
    us, vs = us.to(u.device, torch.float64), vs.to(u.device, torch.float64)
    pu = pu.to(u.device)
    if same_uniform:
        T_sorted = vs
        costs = (vs - us).square().mean(-1)
    else:
        a64, b64 = a.to(torch.float64), b.to(torch.float64)
        a_s, b_s = a64[pu], b64[pv.to(u.device)]  # (L, N), (L, M) masses in sorted order
        A = a_s.cumsum(-1)
        A = A / A[:, -1:]  # particle levels F(u_i)
        B = b_s.cumsum(-1)
        B = B / B[:, -1:]
        C = (b_s * vs).cumsum(-1)  # int_0^{B_j} Q_nu
        Bp = torch.cat([B.new_zeros(L, 1), B[:, :-1]], -1)  # B_{j-1}
        Cp = torch.cat([C.new_zeros(L, 1), C[:, :-1]], -1)

        def integral(s):  # int_0^s Q_nu, piecewise linear in s
            j = torch.searchsorted(B, s).clamp_(max=B.shape[1] - 1)
            return Cp.gather(-1, j) + vs.gather(-1, j) * (s - Bp.gather(-1, j)), j

        hi, j = integral(A)
        lo, _ = integral(torch.cat([A.new_zeros(L, 1), A[:, :-1]], -1))
        mass = A - torch.cat([A.new_zeros(L, 1), A[:, :-1]], -1)  # (L, N)
        T_sorted = torch.where(mass > 0, (hi - lo) / mass.clamp_min(1e-300), vs.gather(-1, j))
        # W_2^2 = int F^-1^2 - 2 int F^-1 G^-1 + int G^-1^2, with int F^-1 G^-1 = sum_i u_i mass_i T_i.
        costs = ((mass * us * (us - 2 * T_sorted)).sum(-1) + (b_s * vs * vs).sum(-1) / B[:, -1]).clamp_min(0)
    T = torch.empty_like(T_sorted).scatter_(-1, pu, T_sorted)  # back to the particles' order
    return T, costs
