"""One-dimensional optimal transport, the core of every sliced distance (private package).

=============  ==================================================================================
module         what it holds
=============  ==================================================================================
``pool``       the sort pool: numpy sorts of rows on threads, packed value-index keys
``line``       costs on the line: the fused, chunked kernel of linear projections and the
               kernel of projected rows, exact for weights and N != M, gradients from the sort
``circle``     costs on the circle R/Z (the sphere's great circles), exact for every p
``maps``       transport maps on the line (the flows' 1-D step)
``energy``     the 1-D energy distance of pooled projections (the sliced energy distance)
=============  ==================================================================================

:data:`COSTS` picks the kernel of projected rows by the representation's ``domain``.
"""

from __future__ import annotations

from .circle import circle_costs, scaled_circle_costs
from .energy import SlicedEnergy
from .line import LinearSlicedCost, ProjectedCost, absolute_costs, centred, direction_chunks, rows_cost
from .maps import transport_map
from .pool import argsort_projections, run_tasks, sort_rows

__all__ = ["COSTS", "LinearSlicedCost", "ProjectedCost", "SlicedEnergy", "absolute_costs", "argsort_projections",
           "centred", "circle_costs",
           "direction_chunks", "projected_costs", "rows_cost", "run_tasks", "scaled_circle_costs", "sort_rows",
           "transport_map"]


def _line(u, v, a, b, p, uniform):
    return ProjectedCost.apply(u, v, a, b, p, uniform)


def _circle(u, v, a, b, p, uniform):  # positions on R/Z of length 1; the uniform pairing does not apply
    return scaled_circle_costs(u, v, a, b, p)


#: domain -> kernel ``(u (B, L, N), v (B, L, M), a (B, N), b (B, M), p, uniform) -> (costs, scale) (B, L)``
COSTS = {"line": _line, "circle": _circle}


def projected_costs(domain: str, u, v, a, b, p: float, uniform: bool):
    """Per-slice ``(costs, scale)`` of projected rows on ``domain`` (``W_p^p = scale^p costs``)."""
    try:
        kernel = COSTS[domain]
    except KeyError:
        raise ValueError(f"domain: expected one of {sorted(COSTS)}, got {domain!r}") from None
    return kernel(u, v, a, b, p, uniform)
