"""Collections at scale: quantile embeddings, SW matrices, exact kNN, SW kernels and two-sample tests.

A per-pair :func:`geom.sliced_wasserstein` sorts every projection of both measures. With directions
shared by a whole collection, each measure's quantile functions on a fixed grid are a vector (its
**embedding**, :func:`embed`) and ``SW_p`` between two members is an l^p distance between vectors:

============================  =================================================================
function                      what it gives
============================  =================================================================
:func:`embed`                 ``(C, L K)`` vectors; ``SW_p(a, b) ~= ||e_a - e_b||_p``; exact for
                              uniform weights with ``N = K``, else within ``error[a] + error[b]``
:func:`pairwise`              the SW matrix in blocks (symmetric: upper triangle; condensed;
                              streamed to disk and resumable; ``mode="exact"`` per pair)
:func:`knn`                   exact nearest neighbours (BLAS blocks, KeOps ArgKMin or faiss)
:func:`gaussian_kernel`       ``exp(-gamma SW_2^2)``, positive definite (a Gaussian on vectors)
:class:`KernelModel`          kernel ridge / SVM / SVR with the precomputed SW kernel (scikit-learn)
:func:`mmd_test`              MMD two-sample test between two collections, permutation p-value
============================  =================================================================

What holds where:

* Line-valued slices (point clouds, meshes, SPD, graphs): ``SW_p^p`` is ``mean_l int_0^1
  |F^-1_a - F^-1_b|^p``; the embedding evaluates each quantile function at the midpoints
  ``(k - 1/2) / K``, which for uniform weights and ``N = K`` atoms picks the k-th smallest atom: the
  embedding distance then *is* the per-pair value on the same directions. Otherwise it is the
  midpoint rule, and :attr:`Embedding.error` bounds the difference for each pair, exactly (Minkowski).
* Circle-valued slices (kind ``"sphere"``): ``W_p`` on the circle is a minimum over rotations of the
  quantile functions, not a distance between them, so :func:`embed` refuses with that reason and
  ``pairwise(..., mode="exact")`` computes the matrix per pair.
* The Gaussian kernel is positive definite for ``p = 2`` only (``SW_2`` is a Euclidean distance of
  embeddings); for other ``p`` it is refused.

Scale-out: ``client=`` (a ``dask.distributed.Client`` or a scheduler address) runs the embedding's
shards and the matrix's blocks on Dask workers (``pip install 'geom[dask]'``); every block's
products run on one thread wherever they run, so the result is the same bit for bit.
"""

from ._base import Embedding, as_collection
from ._embed import embed
from ._kernels import KernelModel, MMDTestResult, gaussian_kernel, mmd_test
from ._pairwise import knn, pairwise

__all__ = ["Embedding", "KernelModel", "MMDTestResult", "as_collection", "embed", "gaussian_kernel", "knn", "mmd_test",
           "pairwise"]
