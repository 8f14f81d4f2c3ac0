"""``"graph"``: measures on graphs and triangle meshes, compared by intrinsic sliced Wasserstein.

Paper: R. Rustamov and S. Majumdar, *Intrinsic Sliced Wasserstein Distances for Comparing Collections
of Probability Distributions on Manifolds and Graphs*, ICML 2023.

A domain (:class:`GraphDomain`: weighted adjacency, combinatorial Laplacian ``L = D - A`` with mass
``M = I``; :class:`MeshDomain`: cotangent Laplacian with the lumped (barycentric) mass matrix) solves
``L phi = lambda M phi`` once, on first use, and caches its first ``K`` nontrivial eigenpairs
``(lambda_k, phi_k)`` (``M``-orthonormal; the ``n_components`` null eigenvectors, constant on each
connected component, are dropped). The slices of the paper are the eigenfunctions themselves::

    ISW_p^p(mu, nu) = sum_k alpha(lambda_k) W_p^p(phi_k # mu, phi_k # nu)        (paper: p = 2)

with the spectral weighting ``alpha``: ``"biharmonic"`` ``lambda^-2`` (the default, the paper's choice
on graphs), ``"heat"`` ``exp(-t lambda)`` (heat-kernel weights, also in the paper), or ``"power"``
``lambda^-s``. ``normalize=True`` divides the sum by ``sum_k alpha_k`` (a weighted mean of slices).

Measures are distributions over the nodes: ``geom.measure(domain, kind="graph", weights=w)`` with node
weights ``w`` of shape ``(n,)`` or ``(B, n)``, or ``nodes=idx`` for samples of nodes (``(N,)`` or
``(B, N)`` indices). Their support is the spectral embedding ``x -> (sqrt(alpha_k) phi_k(x))_k`` in
R^K (``linear = True``), so projecting on the coordinate axis ``e_k`` gives ``sqrt(alpha_k) phi_k``:

* :func:`intrinsic_sliced_wasserstein` is the paper's ISW, the deterministic sum over the K axes.
* ``geom.sliced_wasserstein(mu, nu)`` with a sphere scheme (``"mc"``, ``"qmc"``) slices the embedding
  along uniform directions of S^(K-1): a random-direction variant (Euclidean SW of the embedded
  measures), not an estimate of ISW. With ``directions=torch.eye(K)`` and ``p = 2`` it returns
  ``ISW_2 / sqrt(K)`` (the mean instead of the sum over slices).

The collection two-sample test embeds each distribution in a Hilbert space by its quantile functions
on every slice, ``e(mu)[k, j] = sqrt(alpha_k / J) F^-1_{phi_k # mu}(j / (J + 1))`` for ``j = 1..J``
(so ``|e(mu) - e(nu)|^2 -> ISW_2^2`` as ``J`` grows), and tests equal means of the two collections:
``method="permutation"`` (statistic ``|mean e(X) - mean e(Y)|^2``, permutation p-value) or
``method="combined"`` (Welch t-test per coordinate, p-values combined by the harmonic mean p-value of
Wilson (2019), the paper's rule, or by the Cauchy combination of Liu and Xie (2020)).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

from typing import TYPE_CHECKING

import numpy as np
import torch

import geom
from geom._checks import as_host_array, check_bool, check_int, check_memory, check_p, check_real, describe
from geom.measures import Measure, normalize_weights
from geom.spectral import SOLVERS, cotangent_laplacian, eigenpairs, n_components
from geom.spectral import laplacian as mesh_laplacian
from geom.spectral import mesh_arrays as _mesh_arrays
from geom.sliced import absolute_costs, finish_slices, make_generator, prepare_slices, relative_costs, scaled_costs

if TYPE_CHECKING:
    import scipy.sparse as sp

__all__ = [
    "CollectionTestResult",
    "GraphDomain",
    "GraphMeasures",
    "MeshDomain",
    "SpectralDomain",
    "collection_test",
    "cotangent_laplacian",
    "hilbert_embedding",
    "intrinsic_sliced_wasserstein",
]

WEIGHTINGS = ("biharmonic", "heat", "power")


class SpectralDomain:
    """A domain with a Laplacian ``L`` (stiffness) and a diagonal mass ``M``: eigenpairs, cached.

    Args:
        stiffness: ``(n, n)`` symmetric positive semi-definite sparse matrix ``L``.
        mass: ``(n,)`` positive diagonal of ``M``.
        n_eigenpairs: number ``K`` of nontrivial eigenpairs; None takes all ``n - n_components``.
        weighting: spectral weighting ``alpha``: ``"biharmonic"`` (``lambda^-2``), ``"heat"``
            (``exp(-t lambda)``) or ``"power"`` (``lambda^-s``).
        t: heat time of ``"heat"``; s: exponent of ``"power"`` (both > 0).
        solver: ``"dense"`` (scipy.linalg.eigh), ``"eigsh"`` (scipy.sparse.linalg.eigsh, shift-invert)
            or ``"auto"`` (dense up to 1000 nodes or when all eigenpairs are asked for).
        seed: seed of the start vector of eigsh.
    """

    def __init__(self, stiffness, mass, *, n_eigenpairs=20, weighting="biharmonic", t=1.0, s=1.0,
                 solver="auto", seed=0):
        import scipy.sparse as sp  # imported on first use: geom's plugin load stays light

        self.stiffness = sp.csr_matrix(stiffness, dtype=np.float64)
        self.mass = np.asarray(mass, dtype=np.float64)
        if not (np.isfinite(self.stiffness.data).all() and np.isfinite(self.mass).all()):
            raise ValueError("stiffness, mass: the Laplacian or the mass matrix is not finite (edge weights or "
                             "coordinates beyond the range of float64); rescale the graph or the mesh")
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting: expected one of {WEIGHTINGS}, got {weighting!r}")
        if solver not in SOLVERS:
            raise ValueError(f"solver: expected one of {SOLVERS}, got {solver!r}")
        self.weighting, self.solver = weighting, solver
        self.t = check_real(t, "t", "> 0", lambda v: v > 0)
        self.s = check_real(s, "s", "> 0", lambda v: v > 0)
        self.seed = check_int(seed, "seed")
        n = self.stiffness.shape[0]
        self.n_components = n_components(self.stiffness)
        available = n - self.n_components
        if n_eigenpairs is None:
            n_eigenpairs = available
        self.n_eigenpairs = check_int(n_eigenpairs, "n_eigenpairs", minimum=1)
        if self.n_eigenpairs > available:
            raise ValueError(f"n_eigenpairs: expected at most n - n_components = {n} - {self.n_components} = "
                             f"{available} nontrivial eigenpairs, got {n_eigenpairs}")
        self._eig = None

    @property
    def n_nodes(self) -> int:
        return self.stiffness.shape[0]

    def _solve(self):
        c = self.n_components  # the null space (one constant per component) and the K asked for
        lam, phi = eigenpairs(self.stiffness, self.mass, c + self.n_eigenpairs, solver=self.solver, seed=self.seed)
        lam, phi = lam[c:], phi[:, c:]  # drop the null space
        if not bool((lam > 0).all()):
            raise ValueError(f"stiffness: expected {c} null eigenvalues (one per component), found more")
        return lam, phi

    @property
    def eigenvalues(self) -> np.ndarray:
        """``(K,)`` nontrivial eigenvalues ``lambda_k``, increasing (computed once, then cached)."""
        if self._eig is None:
            self._eig = self._solve()
        return self._eig[0]

    @property
    def eigenfunctions(self) -> np.ndarray:
        """``(n, K)`` eigenfunctions ``phi_k`` at the nodes, ``M``-orthonormal, largest entry positive."""
        if self._eig is None:
            self._eig = self._solve()
        return self._eig[1]

    @property
    def alpha(self) -> np.ndarray:
        """``(K,)`` spectral weights ``alpha(lambda_k)``: positive and finite, or a ValueError naming the
        weighting (an eigenvalue so small, or ``t`` / ``s`` so large, that a weight leaves float64)."""
        lam = self.eigenvalues
        with np.errstate(over="ignore", under="ignore", divide="ignore"):
            if self.weighting == "biharmonic":
                alpha = lam ** -2.0
            elif self.weighting == "heat":
                alpha = np.exp(-self.t * lam)
            else:
                alpha = lam ** -self.s
        bad = ~(np.isfinite(alpha) & (alpha > 0))
        if bad.any():
            k = int(np.argmax(bad))
            raise ValueError(f"weighting: the {self.weighting!r} weight of eigenvalue {lam[k]:.3g} (t = {self.t:g}, "
                             f"s = {self.s:g}) is {alpha[k]:.3g}, outside the range of float64; rescale the domain "
                             "or choose other weights")
        return alpha

    @property
    def embedding(self) -> np.ndarray:
        """``(n, K)`` spectral embedding ``(sqrt(alpha_k) phi_k(x))_k`` of the nodes."""
        return self.eigenfunctions * np.sqrt(self.alpha)[None, :]

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(n_nodes={self.n_nodes}, n_components={self.n_components}, "
                f"n_eigenpairs={self.n_eigenpairs}, weighting={self.weighting!r})")


def _as_matrix(obj, name: str) -> sp.csr_matrix:
    import scipy.sparse as sp  # imported on first use: geom's plugin load stays light

    if sp.issparse(obj):
        a = sp.csr_matrix(obj)
    else:
        a = as_host_array(obj, name, "an (n, n) array or scipy sparse matrix")
        if a.dtype.kind not in "biuf":
            raise TypeError(f"{name}: expected real numbers, got dtype {a.dtype}")
        if a.ndim != 2:
            raise ValueError(f"{name}: expected a square (n, n) matrix, got shape {a.shape}")
        a = sp.csr_matrix(a.astype(np.float64))
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected real numbers, got dtype {a.dtype}")
    return a.astype(np.float64)


class GraphDomain(SpectralDomain):
    """A weighted undirected graph: ``L = D - A`` (combinatorial Laplacian, as in the paper), ``M = I``.

    Args:
        adjacency: ``(n, n)`` symmetric, non-negative, finite edge weights (numpy, torch or scipy
            sparse); the diagonal (self-loops) is ignored. Disconnected graphs are allowed: each
            component contributes its own eigenfunctions (zero elsewhere); an isolated node has none,
            so two Dirac masses on isolated nodes are at distance 0 (ISW is then a pseudometric).
        **options: ``n_eigenpairs``, ``weighting``, ``t``, ``s``, ``solver``, ``seed`` of
            :class:`SpectralDomain`.

    >>> import numpy as np
    >>> path = np.diag(np.ones(4), 1) + np.diag(np.ones(4), -1)  # 5 nodes
    >>> G = GraphDomain(path, n_eigenpairs=2)
    >>> np.round(G.eigenvalues, 4).tolist()  # 4 sin^2(pi k / 10)
    [0.382, 1.382]
    """

    def __init__(self, adjacency, **options):
        a = _as_matrix(adjacency, "adjacency")
        n = a.shape[0]
        if a.shape[0] != a.shape[1] or n < 2:
            raise ValueError(f"adjacency: expected a square (n, n) matrix with n >= 2, got shape {a.shape}")
        if not np.isfinite(a.data).all():
            raise ValueError("adjacency: expected finite edge weights, got a non-finite value")
        if a.nnz and a.data.min() < 0:
            i, j = (a.multiply(a < 0)).nonzero()
            raise ValueError(f"adjacency: expected non-negative edge weights, got adjacency[{i[0]}, {j[0]}] = "
                             f"{a[i[0], j[0]]:.6g}")
        asym = abs(a - a.T)
        scale = abs(a).max() if a.nnz else 0.0
        if asym.nnz and asym.max() > 1e-10 * scale:
            i, j = (asym > 1e-10 * scale).nonzero()
            raise ValueError(f"adjacency: expected a symmetric matrix, got adjacency[{i[0]}, {j[0]}] = "
                             f"{a[i[0], j[0]]:.6g} but adjacency[{j[0]}, {i[0]}] = {a[j[0], i[0]]:.6g}")
        import scipy.sparse as sp  # imported on first use: geom's plugin load stays light

        a = a - sp.diags(a.diagonal())
        a.eliminate_zeros()
        self.adjacency = a
        laplacian = sp.diags(np.asarray(a.sum(1)).ravel()) - a
        super().__init__(laplacian, np.ones(n), **options)


class MeshDomain(SpectralDomain):
    """A triangle mesh as a discretised manifold: cotangent Laplacian, lumped mass, ``L phi = lambda M phi``.

    Args:
        mesh: ``(V, 3)`` vertices (with ``faces``), or a mesh file, trimesh or open3d mesh
            (read with :func:`geom.io.read_mesh`).
        faces: ``(F, 3)`` vertex indices when ``mesh`` is an array.
        **options: ``n_eigenpairs``, ``weighting``, ``t``, ``s``, ``solver``, ``seed`` of
            :class:`SpectralDomain`. The nodes are the vertices.
        method: ``"cotangent"`` or ``"robust"`` (the intrinsic Delaunay Laplacian of
            :func:`geom.spectral.robust_laplacian`, for non-manifold or badly shaped meshes).
    """

    def __init__(self, mesh, faces=None, *, method="cotangent", **options):
        if faces is None:
            mesh, faces = geom.io.read_mesh(mesh)
        vertices, faces = _mesh_arrays(mesh, faces, "mesh")
        laplacian, mass = mesh_laplacian(vertices, faces, method=method)  # geom.spectral: one implementation
        self.vertices, self.faces = vertices, faces
        super().__init__(laplacian, mass, **options)


def _dtype_of(weights, dtype):
    if dtype is not None:
        return dtype
    if isinstance(weights, torch.Tensor) and weights.is_floating_point():
        return weights.dtype
    if isinstance(weights, np.ndarray) and weights.dtype == np.float64:
        return torch.float64
    return torch.float32


class GraphMeasures(geom.Representation):
    """Distributions over the nodes of a :class:`SpectralDomain`, supported on its spectral embedding.

    ``build(domain, weights=None, nodes=None, dtype=None)``: ``weights`` are node weights ``(n,)`` or
    ``(B, n)`` (default uniform over the nodes); with ``nodes`` (``(N,)`` or ``(B, N)`` node indices,
    repeats allowed) the measure is the empirical measure of those samples, ``weights`` then weigh the
    samples. The support is ``(B, N, K)``: row ``x`` is ``(sqrt(alpha_k) phi_k(x))_k``.
    """

    linear = True
    expects = "a GraphDomain or MeshDomain, with node weights (weights=) or node samples (nodes=)"

    def build(self, obj, *, weights=None, nodes=None, dtype=None):
        if not isinstance(obj, SpectralDomain):
            raise TypeError(f"obj: expected a GraphDomain or MeshDomain (kind 'graph'), got {describe(obj)}")
        if dtype is not None and dtype not in (torch.float32, torch.float64):
            raise TypeError(f"dtype: expected torch.float32, torch.float64 or None, got {describe(dtype)}")
        if weights is not None and not isinstance(weights, torch.Tensor):
            try:
                weights = np.asarray(weights) if not isinstance(weights, np.ndarray) else weights
            except (TypeError, ValueError) as exc:
                raise TypeError(f"weights: expected an array of node weights, got {describe(weights)}") from exc
        dtype = _dtype_of(weights, dtype)
        emb = torch.from_numpy(obj.embedding).to(dtype)  # (n, K)
        n = obj.n_nodes
        if nodes is None:
            ndim = 1 if weights is None else len(weights.shape)
            if ndim not in (1, 2):
                raise ValueError(f"weights: expected node weights of shape ({n},) or (B, {n}), got "
                                 f"{tuple(weights.shape)}")
            batched = ndim == 2
            B = weights.shape[0] if batched else 1
            support = emb[None].expand(B, n, emb.shape[1])  # (B, n, K)
        else:
            idx = as_host_array(nodes, "nodes", "integer node indices of shape (N,) or (B, N)")
            if idx.dtype.kind not in "iu" or idx.ndim not in (1, 2):
                raise TypeError(f"nodes: expected integer node indices of shape (N,) or (B, N), got {describe(nodes)}")
            idx = torch.from_numpy(idx.astype(np.int64))  # indices beyond int64 wrap negative: out of range
            if idx.numel() == 0 or idx.shape[-1] == 0:
                raise ValueError("nodes: expected at least one node index, got none")
            if int(idx.min()) < 0 or int(idx.max()) >= n:
                raise ValueError(f"nodes: expected indices in [0, {n}), got [{int(idx.min())}, {int(idx.max())}]")
            batched = idx.ndim == 2
            support = emb[idx.reshape(-1 if batched else 1, idx.shape[-1])]  # (B, N, K)
        w, uniform = normalize_weights(weights, support, batched=batched)
        return Measure(support, w, kind=self.name or "graph", batched=batched, uniform=uniform)

    def project(self, support, directions):
        return torch.matmul(directions, support.transpose(1, 2))  # (B, L, N)


def _as_measure(obj, domain: SpectralDomain, name: str) -> Measure:
    """Node weights, or a Measure built from ``domain``, -> a Measure of kind ``"graph"``."""
    if isinstance(obj, Measure):
        if obj.support.ndim != 3 or obj.support.shape[-1] != domain.n_eigenpairs:
            raise ValueError(f"{name}: expected a measure on the {domain.n_eigenpairs}-D spectral embedding of "
                             f"domain, got support of shape {tuple(obj.support.shape)}")
        return obj
    try:
        return GraphMeasures().build(domain, weights=obj)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{name}: {str(exc).removeprefix('weights: ')}") from None


def intrinsic_sliced_wasserstein(mu, nu, domain: SpectralDomain, *, p: float = 2, normalize: bool = False,
                                 return_costs: bool = False):
    """The paper's intrinsic sliced Wasserstein distance, exact over the domain's K eigenfunctions.

    ``ISW_p(mu, nu) = (sum_k alpha_k W_p^p(phi_k # mu, phi_k # nu) / Z)^(1/p)`` with ``Z = 1`` (the
    paper) or ``Z = sum_k alpha_k`` (``normalize=True``). Computed with :func:`geom.sliced.scaled_costs`
    on the spectral embedding along the coordinate axes ``e_k`` (which give ``alpha_k^(p/2) W_p^p``),
    rescaled by ``alpha_k^(1 - p/2)``, in logarithms: right for every ``p``. Differentiable with
    respect to the node weights.

    Args:
        mu, nu: node weights ``(n,)`` / ``(B, n)``, or Measures built by
            ``geom.measure(domain, kind="graph", ...)`` (node samples allowed); batches are compared
            item by item (a batch of 1 broadcasts).
        domain: the :class:`GraphDomain` / :class:`MeshDomain` both live on.
        p: order ``>= 1``. normalize: divide by ``sum_k alpha_k``.
        return_costs: also return the ``(B, K)`` terms ``alpha_k W_p^p(phi_k # mu, phi_k # nu)``.

    Returns:
        A scalar (``(B,)`` for batches) tensor; with ``return_costs`` a pair ``(value, costs)``.

    The random-direction variant ``geom.sliced_wasserstein(mu, nu)`` on these measures is the
    Euclidean SW of the embedding; with ``directions=torch.eye(K)``, ``p = 2``, it is ``ISW_2 / sqrt(K)``.
    """
    if not isinstance(domain, SpectralDomain):
        raise TypeError(f"domain: expected a GraphDomain or MeshDomain, got {describe(domain)}")
    p = check_p(p)
    mu, nu = _as_measure(mu, domain, "mu"), _as_measure(nu, domain, "nu")
    normalize = check_bool(normalize, "normalize")
    return_costs = check_bool(return_costs, "return_costs")
    K = domain.n_eigenpairs
    alpha = torch.as_tensor(domain.alpha, dtype=torch.float64, device=mu.device)  # (K,)
    z = alpha.sum() if normalize else alpha.new_ones(())
    # the slices are the coordinate axes e_k of the embedding, which give alpha_k^(p/2) W_p^p(phi_k)
    s = prepare_slices(mu, nu, p=p, directions=torch.eye(K, dtype=torch.float64), scheme=_Sum())
    costs, scale = scaled_costs(s.mu, s.nu, s.directions, p)  # (B, K)
    # alpha_k W_p^p(phi_k) / z = (alpha_k^(1/p - 1/2) z^(-1/p) W_p(phi_k))^p: the weights folded into each
    # slice's scale, then the terms relative to the largest, so that no p leaves the range
    costs, top = relative_costs(costs, scale * alpha.pow(1 / p - 0.5) * z.pow(-1 / p), p)  # (B, K), (B,)
    result = finish_slices(s, costs, top)  # (sum_k alpha_k W_p^p / z)^(1/p)
    if return_costs:
        unit = (top if s.batched else top[0]) * z.pow(1 / p)
        return result.value, absolute_costs(result.scaled_costs, unit[..., None], p)  # alpha_k W_p^p, (B, K)
    return result.value


class _Sum(geom.SlicingScheme):
    """The quadrature of ISW: the sum of the (weighted) slice costs; exact, so the stderr is 0."""

    def directions(self, n, space, *, generator=None):
        raise ValueError("ISW slices along the eigenfunctions: its directions are the coordinate axes")

    def estimate(self, costs, context):
        value = costs.sum(-1)
        return value, torch.zeros_like(value.detach())


def hilbert_embedding(collection, domain: SpectralDomain, *, n_quantiles: int = 20) -> torch.Tensor:
    """Quantile-function embedding of a collection of distributions, ``(C, K * J)`` float64.

    Row ``c`` holds ``sqrt(alpha_k / J) F^-1_{phi_k # mu_c}(j / (J + 1))`` for ``k = 1..K`` (major) and
    ``j = 1..J`` (``J = n_quantiles``), ``F^-1(s) = min{x : F(x) >= s}``; squared Euclidean distances
    between rows approximate ``ISW_2^2`` (the paper's Hilbert embedding on a fixed grid).

    Args:
        collection: ``(C, n)`` node weights, or a batched Measure of kind ``"graph"`` on ``domain``.
        domain: the domain. n_quantiles: grid size ``J``.
    """
    J = check_int(n_quantiles, "n_quantiles", minimum=1)
    m = _as_measure(collection, domain, "collection")
    check_memory(40 * m.batch_size * m.support.shape[-1] * (J + m.n_points), "n_quantiles",
                 f"the quantile embedding of {m.batch_size} distributions on {J} levels")
    x = m.support.detach().to(torch.float64).transpose(1, 2)  # (C, K, N) embedding sqrt(alpha_k) phi_k
    x, order = x.sort(-1)
    w = m.weights.detach().to(torch.float64)[:, None, :].expand_as(x).gather(-1, order)  # (C, K, N)
    cdf = w.cumsum(-1)
    cdf = cdf / cdf[..., -1:]
    levels = torch.arange(1, J + 1, dtype=torch.float64) / (J + 1)  # (J,)
    idx = torch.searchsorted(cdf, levels.expand(*cdf.shape[:-1], J).contiguous() - 1e-12)  # (C, K, J)
    q = x.gather(-1, idx.clamp_max(x.shape[-1] - 1))  # (C, K, J) quantiles
    return (q / math.sqrt(J)).reshape(q.shape[0], -1)


@dataclass
class CollectionTestResult:
    """Outcome of :func:`collection_test`.

    Attributes:
        statistic: ``|mean e(X) - mean e(Y)|^2`` (permutation) or the harmonic mean (``"hmp"``) /
            Cauchy statistic (``"cauchy"``) of the coordinate p-values (combined).
        pvalue: p-value of the null "both collections come from the same meta-distribution".
        method: ``"permutation"`` or ``"combined"``.
        n_permutations: permutations used (permutation test), else None.
        coordinate_pvalues: ``(K, J)`` Welch t-test p-values (combined test; NaN where both collections
            are constant), else None.
    """

    statistic: float
    pvalue: float
    method: str
    n_permutations: int | None = None
    coordinate_pvalues: np.ndarray | None = None


def _combine(pvalues: np.ndarray, rule: str) -> tuple[float, float]:
    """Combine valid p-values: ``"hmp"`` (Wilson 2019, Landau tail) or ``"cauchy"`` (Liu and Xie 2020)."""
    import scipy.stats

    pv = np.clip(pvalues, 1e-300, 1.0)
    L = len(pv)
    if rule == "hmp":
        hmp = L / np.sum(1.0 / pv)
        loc = math.log(L) + 1 - np.euler_gamma - math.log(2 / math.pi)  # asymptotically exact tail
        return float(hmp), float(min(1.0, scipy.stats.landau.sf(1.0 / hmp, loc=loc, scale=math.pi / 2)))
    t = float(np.mean(np.tan((0.5 - np.clip(pv, 1e-15, 1 - 1e-15)) * math.pi)))
    return t, float(0.5 - math.atan(t) / math.pi)


def collection_test(X, Y, domain: SpectralDomain, *, method: str = "permutation", n_quantiles: int = 20,
                    n_permutations: int = 1000, combine: str = "hmp", seed: int | None = None,
                    generator: torch.Generator | None = None, progress: bool | None = None) -> CollectionTestResult:
    """Two-sample test between two collections of distributions on the same domain (the paper's Sec. 4).

    Each distribution is embedded by :func:`hilbert_embedding`; the null hypothesis is equal means of
    the two collections' embeddings.

    Args:
        X, Y: ``(C1, n)``, ``(C2, n)`` node weights, or batched ``"graph"`` Measures; ``C1, C2 >= 2``.
        domain: the domain. n_quantiles: quantile grid size ``J``.
        method: ``"permutation"``: statistic ``|mean e(X) - mean e(Y)|^2``, p-value
            ``(1 + #{T_perm >= T}) / (1 + n_permutations)`` over random relabellings; ``"combined"``:
            a Welch t-test per embedding coordinate, p-values combined by ``combine``.
        n_permutations: permutations of the resampling test.
        combine: ``"hmp"``: harmonic mean p-value with its asymptotically exact Landau tail (Wilson,
            PNAS 2019; the paper's rule), valid under dependence between coordinates; ``"cauchy"``:
            Cauchy combination (Liu and Xie, JASA 2020). Coordinates constant in both collections
            carry no evidence and are left out.
        seed, generator: randomness of the permutations (one of them). progress: tqdm bar over the
            permutations (default: when ``n_permutations >= 10000``).
    """
    import scipy.stats  # imported on first use: geom's plugin load stays light

    if method not in ("permutation", "combined"):
        raise ValueError(f"method: expected 'permutation' or 'combined', got {method!r}")
    if combine not in ("hmp", "cauchy"):
        raise ValueError(f"combine: expected 'hmp' or 'cauchy', got {combine!r}")
    ex = hilbert_embedding(X, domain, n_quantiles=n_quantiles)  # (C1, K * J)
    ey = hilbert_embedding(Y, domain, n_quantiles=n_quantiles)  # (C2, K * J)
    for name, e in (("X", ex), ("Y", ey)):
        if e.shape[0] < 2:
            raise ValueError(f"{name}: expected a collection of at least 2 distributions, got {e.shape[0]}")
    if method == "combined":
        a, b = ex.numpy(), ey.numpy()
        both = np.concatenate([a, b])  # (C, D)
        constant = np.ptp(both, axis=0) <= 1e-12 * max(np.abs(both).max(), 1e-300)  # (D,) no evidence
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            pv = scipy.stats.ttest_ind(a, b, axis=0, equal_var=False).pvalue  # (D,) D = K * J
        pv = np.where(constant, np.nan, pv)
        valid = pv[np.isfinite(pv)]
        stat, pvalue = _combine(valid, combine) if len(valid) else (math.nan, 1.0)
        return CollectionTestResult(stat, pvalue, method, None, pv.reshape(domain.n_eigenpairs, -1))

    P = check_int(n_permutations, "n_permutations", minimum=1)
    generator = make_generator(seed, generator)
    e = torch.cat([ex, ey])  # (C, D)
    C1, C = ex.shape[0], e.shape[0]
    observed = float((ex.mean(0) - ey.mean(0)).pow(2).sum())
    signs = torch.full((C,), -1.0 / (C - C1), dtype=torch.float64)
    signs[:C1] = 1.0 / C1  # (C,) group mean difference as one dot product
    chunk = max(1, min(P, 2000, 2**20 // C))  # permutations per batch
    progress = P >= 10_000 if progress is None else check_bool(progress, "progress")
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=P, desc="permutations", unit="perm")
    exceed = 0
    for start in range(0, P, chunk):
        m = min(chunk, P - start)
        perm = torch.rand(m, C, generator=generator, dtype=torch.float64).argsort(1)  # (m, C) relabellings
        s = torch.empty(m, C, dtype=torch.float64).scatter_(1, perm, signs.expand(m, C))  # (m, C)
        stats = (s @ e).pow(2).sum(1)  # (m,)
        exceed += int((stats >= observed * (1 - 1e-12)).sum())
        if bar is not None:
            bar.update(m)
    if bar is not None:
        bar.close()
    return CollectionTestResult(observed, (1 + exceed) / (1 + P), method, P, None)


@geom.hookimpl
def geom_register_representations(register):
    register("graph", GraphMeasures)
