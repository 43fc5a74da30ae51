"""Every kernel against its plain reference twin, float64 to 1e-10, and the explicit force term against
central finite differences of e_delta at fixed density matrix."""

import numpy as np
import pytest
from conftest import fd_gradient, random_model, random_symmetric
from pyscf import dft

from deepks_es import kernels
from deepks_es.projector import ProjectorBasis, ipovlp_proj, ovlp_proj
from deepks_es.scf import DeePKSCorrection


@pytest.fixture(scope="module")
def setup(dimer):
    projector = ProjectorBasis()
    c = ovlp_proj(dimer, projector)
    ip = ipovlp_proj(dimer, projector)
    dm = random_symmetric(dimer.nao, 1)
    rng = np.random.default_rng(2)
    blocks = [rng.standard_normal(x.shape[1:] + x.shape[-1:]) for x in c]  # (natm, nrad, 2l+1, 2l+1)
    gpdm = [(b + b.swapaxes(-1, -2)) / 2 for b in blocks]
    ao_atom = np.repeat(np.arange(dimer.natm), np.diff(dimer.aoslice_by_atom()[:, 2:4], axis=1).ravel())
    return c, ip, dm, gpdm, ao_atom


def test_ovlp_proj_layout(dimer):
    projector = ProjectorBasis()
    c = ovlp_proj(dimer, projector)
    assert [x.shape for x in c] == [(dimer.nao, dimer.natm, 12, 2 * l + 1) for l in range(3)]
    assert projector.nproj == 108


def test_make_pdm(setup):
    c, _, dm, _, _ = setup
    for fast, ref in zip(kernels.make_pdm(dm, c), kernels.make_pdm_reference(dm, c)):
        np.testing.assert_allclose(fast, ref, atol=1e-10, rtol=0)


def test_make_v_delta(setup):
    c, _, _, gpdm, _ = setup
    v = kernels.make_v_delta(gpdm, c)
    np.testing.assert_allclose(v, kernels.make_v_delta_reference(gpdm, c), atol=1e-10, rtol=0)
    np.testing.assert_allclose(v, v.T, atol=1e-12)


def test_make_de_delta(setup):
    c, ip, dm, gpdm, ao_atom = setup
    de = kernels.make_de_delta(gpdm, dm, c, ip, ao_atom)
    np.testing.assert_allclose(de, kernels.make_de_delta_reference(gpdm, dm, c, ip, ao_atom), atol=1e-10, rtol=0)
    np.testing.assert_allclose(de.sum(0), 0, atol=1e-10)  # translational invariance


def test_de_delta_finite_difference(dimer):
    """d e_delta / dR at fixed AO density matrix vs central differences (h = 1e-4 bohr)."""
    model = random_model()
    dm = dft.RKS(dimer).get_init_guess(key="minao")
    de = DeePKSCorrection(dimer, model).grad(dm)
    fd = fd_gradient(dimer, lambda mol: DeePKSCorrection(mol, model).energy_and_gpdm(dm)[0], h=1e-4)
    assert np.abs(de).max() > 1e-3  # the random model gives a non-trivial force term
    np.testing.assert_allclose(de, fd, atol=1e-8, rtol=0)
