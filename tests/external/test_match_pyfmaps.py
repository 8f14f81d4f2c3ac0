"""geom.spectral and geom.match against pyFM (``pip install pyfmaps``): the cotangent stiffness and
lumped mass, HKS and WKS on the same eigenpairs, and the functional map of a point-to-point map in
pyFM's convention (``FM_12 = Phi_2^+ Phi_1[p2p_21]``, ours with A = mesh 2, B = mesh 1)."""

import numpy as np
import pytest
import scipy.sparse as sp

pytest.importorskip("pyFM")
from pyFM.mesh.laplacian import cotangent_weights, dia_area_mat  # noqa: E402
from pyFM.signatures.HKS_functions import HKS  # noqa: E402
from pyFM.signatures.WKS_functions import WKS  # noqa: E402
from pyFM.spectral.convert import FM_to_p2p, p2p_to_FM  # noqa: E402

from geom import spectral  # noqa: E402
from geom.match import fmap_to_p2p, p2p_to_fmap, permuted_bent_pair  # noqa: E402
from geom_datasets import shapes  # noqa: E402


@pytest.fixture(scope="module")
def mesh():
    v, f = shapes.bend(shapes.ellipsoid(subdivisions=3), 0.3, seed=1)
    return v.astype(np.float64), f


def test_cotangent_stiffness_and_lumped_mass_equal_pyfm(mesh):
    L, M = spectral.cotangent_laplacian(*mesh)
    W = cotangent_weights(*mesh)
    sign = np.sign(W.diagonal()[0])  # pyFM's stiffness may be L or -L: the same operator
    np.testing.assert_allclose((sign * W).toarray(), L.toarray(), atol=1e-12)
    np.testing.assert_allclose(dia_area_mat(*mesh).diagonal(), M, rtol=1e-12)


def test_hks_and_wks_equal_pyfm_on_the_same_eigenpairs(mesh):
    s = spectral.spectrum(*mesh, n_eigen=30)
    t = np.geomspace(1e-2, 1, 6)
    np.testing.assert_allclose(spectral.hks(s.evals, s.evecs, t), HKS(s.evals, s.evecs, t), rtol=1e-10)
    log_lam = np.log(s.evals[1:])
    e = np.linspace(log_lam[0], log_lam[-1], 12)
    sigma = 7.0 * (e[1] - e[0])
    ours = spectral.wks(s.evals, s.evecs, n_energies=12, sigma_factor=7.0)
    np.testing.assert_allclose(ours, WKS(s.evals, s.evecs, e, sigma, scaled=True), rtol=1e-10)


def test_functional_map_and_p2p_conversions_equal_pyfm(mesh):
    pair = permuted_bent_pair(*mesh, field=shapes.bend(mesh, 0.2, 0, return_field=True)[2], seed=0)
    a = spectral.spectrum(*pair["source"], n_eigen=20)
    b = spectral.spectrum(*pair["target"], n_eigen=20)
    C = p2p_to_fmap(pair["truth"], a, b)
    ref = p2p_to_FM(pair["truth"], b.evecs, a.evecs, A2=sp.diags(a.mass))
    np.testing.assert_allclose(C, ref, atol=1e-10)
    np.testing.assert_array_equal(fmap_to_p2p(C, a, b), FM_to_p2p(ref, b.evecs, a.evecs))
