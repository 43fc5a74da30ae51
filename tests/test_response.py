"""The correction's response kernel in PySCF's response paths (second-order SCF, stability, CPHF), the
scanner, and the PySCF methods that are refused on a corrected object instead of answering for plain PBE."""

import numpy as np
import pytest
import scipy.linalg
from conftest import KINDS, minao_dm, moved_mol, random_model, random_symmetric
from pyscf.soscf import newton_ah

from deepks_es import run_scf
from deepks_es.calc import build_scf
from deepks_es.errors import DeePKSInputError
from deepks_es.scf import DeePKSCorrection


@pytest.mark.parametrize("kind", KINDS)
def test_response_is_the_derivative_of_v_delta(dimer, kind):
    """v1 = d v_delta/d dm [dm1] (double backward) against central differences of v_delta along dm1."""
    corr = DeePKSCorrection(dimer, random_model(kind=kind))
    dm = minao_dm(dimer)
    dm1 = random_symmetric(dimer.nao, seed=4) * 1e-2
    v1 = corr.make_response(dm)(dm1)
    h = 1e-4
    fd = (corr.kernel(dm + h * dm1)[1] - corr.kernel(dm - h * dm1)[1]) / (2 * h)
    assert np.abs(v1).max() > 1e-6  # the model is non-linear in the density: a real second derivative
    np.testing.assert_allclose(v1, fd, atol=1e-9 * max(1.0, np.abs(fd).max()))
    # stacked inputs, and only the symmetric part of dm1 counts
    antisym = random_symmetric(dimer.nao, seed=5) @ np.triu(np.ones((dimer.nao, dimer.nao)))
    antisym = antisym - antisym.T
    stacked = corr.make_response(dm)(np.stack([dm1, dm1 + antisym]))
    np.testing.assert_allclose(stacked[0], v1, atol=1e-14)
    np.testing.assert_allclose(stacked[1], v1, atol=1e-12)


@pytest.fixture(scope="module")
def corrected(dimer):
    mf = build_scf(dimer, model=random_model(seed=1, scale=0.02))
    mf.kernel()
    assert mf.converged
    return mf


def test_gen_response_adds_the_correction(corrected):
    mf = corrected
    dm1 = random_symmetric(mf.mol.nao, seed=6) * 1e-2
    plain = mf.undo_deepks()
    with_correction = mf.gen_response(singlet=None, hermi=1)(dm1)
    expected = plain.gen_response(singlet=None, hermi=1)(dm1) + mf.with_deepks.make_response(mf.make_rdm1())(dm1)
    np.testing.assert_allclose(with_correction, expected, atol=1e-12)
    # the triplet kernel: the correction depends on the total density only
    np.testing.assert_allclose(
        mf.gen_response(singlet=False, hermi=1)(dm1), plain.gen_response(singlet=False, hermi=1)(dm1), atol=1e-12
    )


def _orbital_gradient(mf, mo_coeff):
    return newton_ah.gen_g_hop_rhf(mf, mo_coeff, mf.mo_occ)[0]


def test_newton_orbital_hessian_matches_finite_differences(corrected):
    """The second-order SCF's orbital Hessian (through gen_response) against central differences of the
    orbital gradient under rotations exp(K(x)) of the converged orbitals; plain PBE's Hessian misses the
    correction by far more than the tolerance."""
    mf = corrected
    nocc = int((mf.mo_occ > 0).sum())
    nvir = mf.mo_occ.size - nocc
    x = np.random.default_rng(7).normal(size=(nvir, nocc)) * 1e-2

    def rotated(t):
        k = np.zeros((mf.mo_occ.size,) * 2)
        k[nocc:, :nocc] = t * x
        k[:nocc, nocc:] = -t * x.T
        return mf.mo_coeff @ scipy.linalg.expm(k)

    h = 1e-3
    fd = (_orbital_gradient(mf, rotated(h)) - _orbital_gradient(mf, rotated(-h))) / (2 * h)
    h_op = newton_ah.gen_g_hop_rhf(mf, mf.mo_coeff, mf.mo_occ)[1]
    plain = mf.undo_deepks()
    h_op_plain = newton_ah.gen_g_hop_rhf(plain, mf.mo_coeff, mf.mo_occ)[1]
    err = np.abs(h_op(x.ravel()) - fd).max()
    missing = np.abs(h_op(x.ravel()) - h_op_plain(x.ravel())).max()
    assert err < 1e-6 and missing > 50 * err, (err, missing)


def test_second_order_scf_and_stability_include_the_correction(corrected):
    mf = corrected
    newton = build_scf(mf.mol, model=mf.with_deepks.model).newton()
    assert abs(newton.kernel() - mf.e_tot) < 1e-8
    mo_internal, _ = mf.stability()  # the converged closed-shell dimer is stable
    assert np.allclose(np.abs(mo_internal.T @ mf.get_ovlp() @ mf.mo_coeff), np.eye(mf.mo_occ.size), atol=1e-6)


@pytest.mark.parametrize("method", ["TDA", "TDDFT", "TDHF", "Hessian", "CCSD", "MP2", "CASSCF"])
def test_methods_without_the_correction_are_refused(corrected, method):
    with pytest.raises(DeePKSInputError, match=f"mf.{method}\\(\\) does not include the DeePKS correction"):
        getattr(corrected, method)()
    assert hasattr(corrected.undo_deepks(), method)  # PySCF's own attribute on the plain object


def test_scanner_keeps_the_correction_and_the_ladder(dimer):
    model = random_model(seed=2, scale=0.02)
    coords = dimer.atom_coords() + np.random.default_rng(8).normal(0, 0.05, (dimer.natm, 3))
    moved = moved_mol(dimer, coords)
    reference = run_scf(build_scf(moved, model=model))
    scanner = build_scf(dimer, model=model, max_cycle=4).as_scanner()
    e = scanner(moved)
    assert abs(e - reference.e_tot) < 1e-8 and scanner.converged
    assert scanner.with_deepks.mol is not dimer and scanner.scf_summary["e_delta"] != 0
    assert [a[0] for a in scanner.scf_attempts][:2] == ["default", "damping"]  # 4 cycles are too few
    assert scanner.damp == 0 and scanner.level_shift == 0  # the ladder's settings do not stay on the scanner


def test_level_response_predicts_the_self_consistent_levels(corrected):
    """level_response against self-consistent runs: retrain the model a little (every weight moved by t x
    noise) and predict the new SCF's mean valence occupied level and LUMO at the old density, to first
    order (fixed-density eigenvalues + tr(Z dV)). The prediction's error is second order in t (quarter
    at half t) and far below the fixed-density eigenvalues' error, which is first order (the screening the
    fixed-density eigenvalue loss misses)."""
    import copy

    import torch

    from deepks_es.scf import level_response

    mf = corrected
    ncore = 2  # the two O 1s
    nocc = int((mf.mo_occ > 0).sum())
    dm = mf.make_rdm1()
    z = level_response(mf, ncore)
    assert z.shape == (2, mf.mol.nao, mf.mol.nao) and np.allclose(z, z.transpose(0, 2, 1))
    v_old = mf.with_deepks.kernel(dm)[1]
    fock_base, ovlp = mf.get_fock(dm=dm) - v_old, mf.get_ovlp()

    def levels(mo_energy):
        return np.array([mo_energy[ncore:nocc].mean(), mo_energy[nocc]])

    def errors(t):
        model = copy.deepcopy(mf.with_deepks.model)
        gen = torch.Generator().manual_seed(3)
        with torch.no_grad():
            for p in model.parameters():
                p += t * torch.randn(p.shape, generator=gen, dtype=p.dtype)
        sc = build_scf(mf.mol, model=model)
        sc.kernel(dm0=dm)
        assert sc.converged
        dv = DeePKSCorrection(mf.mol, model).kernel(dm)[1] - v_old
        fixed = levels(scipy.linalg.eigh(fock_base + v_old + dv, ovlp, eigvals_only=True))
        predicted = fixed + np.einsum("xpq,pq->x", z, dv)
        return np.abs(fixed - levels(sc.mo_energy)), np.abs(predicted - levels(sc.mo_energy))

    t = 0.01
    fixed, predicted = errors(t)
    _, predicted_half = errors(t / 2)
    assert np.all(fixed > 1e-4), fixed  # the screening is there to predict (Eh)
    assert np.all(predicted < 0.1 * fixed), (predicted, fixed)
    assert np.all(predicted_half < 0.35 * predicted), (predicted_half, predicted)
