"""Shape correspondence: functional maps, sliced and entropic transport between spectral embeddings.

=================  ===========================================================================
module             what it holds
=================  ===========================================================================
``fmap``           descriptors -> functional map (commutativity, orientation), ZoomOut, C <-> p2p
``sw``             the paper's SW loss between spectral embeddings, driving C or descriptor weights
``refine``         entropic refinement: log-domain Sinkhorn (KeOps or dense), eps annealing
``rigid``          rigid registration by SW with several starts
``pipeline``       :func:`match`: two shapes -> a point-to-point map by one of the methods
``metrics``        geodesic error (heat method or Dijkstra), PCK / AUC, symmetric flips
``pairs``          generated pairs with exact ground truth (permutation + bend)
=================  ===========================================================================

Spectral geometry (Laplacians, eigenpairs, HKS / WKS) lives in :mod:`geom.spectral`.
"""

from .fmap import descriptor_fmap, fmap_to_p2p, orientation_operators, p2p_to_fmap, zoomout
from .metrics import GeodesicDistance, MatchScore, geodesic_error, pck_curve, score_map
from .pairs import partial_pair, permuted_bent_pair, reflection_symmetry, remeshed_pair
from .pipeline import METHODS, MatchResult, match
from .refine import entropic_refine, log_sinkhorn
from .rigid import RigidResult, rigid_register
from .sw import descriptor_map, embedding_sw, sw_align, sw_descriptor_weights

__all__ = ["METHODS", "GeodesicDistance", "MatchResult", "MatchScore", "RigidResult", "descriptor_fmap", "descriptor_map",
           "embedding_sw", "entropic_refine", "fmap_to_p2p", "geodesic_error", "log_sinkhorn", "match", "orientation_operators", "partial_pair",
           "p2p_to_fmap", "pck_curve", "permuted_bent_pair", "reflection_symmetry", "remeshed_pair", "rigid_register", "score_map",
           "sw_align", "sw_descriptor_weights", "zoomout"]
