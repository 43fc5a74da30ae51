"""The equivariant ``e3`` model: its irreps features of the full projected density rotate as irreps,
e_delta is invariant and v_delta covariant under rotations and inversion, forces rotate with the molecule,
atoms permute. (The finite-difference tests of v_delta and forces are in test_scf.py, parametrized over
both model kinds; the loss-gradient ones and iterate/train/scf with the e3 model in test_train.py.)

Densities are PySCF's MINAO guess, exactly covariant under rotations and permutations (as in
test_descriptor.py), so the checks hold to round-off.
"""

import numpy as np
import pytest
import torch
from conftest import minao_dm, moved_mol, random_model, random_symmetric, water_mol
from pyscf import dft
from scipy.spatial.transform import Rotation

from deepks_es import attach
from deepks_es.descriptor import PdmIrreps
from deepks_es.projector import ProjectorBasis
from deepks_es.scf import DeePKSCorrection


def _orthogonal(seed: int, improper: bool) -> np.ndarray:
    rot = Rotation.random(random_state=seed).as_matrix()
    return -rot if improper else rot


def _rotate_features(irreps, x: np.ndarray, rot: np.ndarray) -> np.ndarray:
    """D(rot) applied to features x (..., irreps.dim). D_l is fitted from e3nn's spherical harmonics,
    Y_l(R r) = D_l(R) Y_l(r) (exact to round-off: e3nn's own D_from_matrix uses float32 tables, 3e-7),
    times the parity for an improper rot (e3nn's convention)."""
    from e3nn import o3

    det = np.sign(np.linalg.det(rot))
    points = np.random.default_rng(1).standard_normal((64, 3))
    out = []
    for (mul, ir), sl in zip(irreps, irreps.slices()):
        y = o3.spherical_harmonics(ir.l, torch.from_numpy(points), normalize=False).numpy()
        y_rot = o3.spherical_harmonics(ir.l, torch.from_numpy(points @ (det * rot).T), normalize=False).numpy()
        d = np.linalg.lstsq(y, y_rot, rcond=None)[0].T * (ir.p if det < 0 else 1)
        out.append((x[..., sl].reshape(*x.shape[:-1], mul, ir.dim) @ d.T).reshape(*x.shape[:-1], -1))
    return np.concatenate(out, axis=-1)


def _ao_rotation(mol, rot: np.ndarray) -> np.ndarray:
    """PySCF's AO rotation matrix u (dm of the moved molecule = u^T dm u); for an improper rot, that of
    the proper -rot times the inversion parity (-1)^l of every AO."""
    det = np.sign(np.linalg.det(rot))
    u = mol.ao_rotation_matrix(det * rot)
    if det > 0:
        return u
    ao_l = np.concatenate(
        [[mol.bas_angular(i)] * (2 * mol.bas_angular(i) + 1) * mol.bas_nctr(i) for i in range(mol.nbas)]
    )
    return u * (-1.0) ** ao_l[None, :]


@pytest.fixture(scope="module")
def model():
    return random_model(seed=1, kind="e3")


def test_irreps_of_the_full_block():
    """The irreps string and dimension documented in PdmIrreps, and the map keeps norms: the squared
    features add up to the squared upper triangle of sub-blocks (diagonal sub-blocks once)."""
    irreps = PdmIrreps(ProjectorBasis(blocks="atom"))
    assert str(irreps.irreps_out) == "234x0e+288x1o+132x1e+144x2o+300x2e+144x3o+66x3e+78x4e"
    assert irreps.irreps_out.dim == 5886 == 108 * 109 // 2
    block = torch.from_numpy(random_symmetric(108, seed=0))
    x = irreps([block[None, None, None]])[0, 0]
    shell = np.repeat(np.arange(36), [2 * l + 1 for l in range(3) for _ in range(12)])  # (l, n) of each row
    same = torch.from_numpy(shell[:, None] == shell[None, :])
    expected = ((block**2).sum() + (block**2)[same].sum()) / 2
    assert abs(float((x**2).sum() - expected)) < 1e-9 * float(expected)


@pytest.mark.parametrize("improper", [False, True])
def test_features_rotate_as_irreps(model, improper):
    """Features of the rotated (or rotated and inverted) hexamer = D(R) features."""
    mol = water_mol("6PR")
    x = DeePKSCorrection(mol, model).make_descriptor(minao_dm(mol))
    assert np.abs(x).max() > 0.1
    for seed in range(2):
        rot = _orthogonal(seed, improper)
        rmol = moved_mol(mol, coords=mol.atom_coords() @ rot.T)
        expected = _rotate_features(model.irreps.irreps_out, x, rot)
        np.testing.assert_allclose(DeePKSCorrection(rmol, model).make_descriptor(minao_dm(rmol)), expected, atol=1e-10)


@pytest.mark.parametrize("improper", [False, True])
def test_e_delta_invariant_and_v_delta_covariant(model, improper):
    """Rotate the geometry (about the origin, then translate): e_delta equal, v_delta equal to u^T v_delta u
    in the rotated AO basis (u from PySCF's mol.ao_rotation_matrix, :func:`_ao_rotation`; the MINAO
    density transforms the same way to 5e-15)."""
    mol = water_mol("6PR")
    e_delta, v_delta = DeePKSCorrection(mol, model).kernel(minao_dm(mol))
    assert abs(e_delta) > 1e-3 and np.abs(v_delta).max() > 1e-4
    for seed in range(2):
        rot = _orthogonal(seed, improper)
        rmol = moved_mol(mol, coords=mol.atom_coords() @ rot.T + np.array([0.4, -1.1, 2.3]))
        u = _ao_rotation(mol, rot)
        re_delta, rv_delta = DeePKSCorrection(rmol, model).kernel(minao_dm(rmol))
        assert abs(re_delta - e_delta) < 1e-10
        np.testing.assert_allclose(rv_delta, u.T @ v_delta @ u, atol=1e-10)


def test_forces_rotate_with_the_molecule(dimer, model):
    """Converged corrected SCF and analytic forces of the dimer and of the rotated dimer: forces rotate.
    Tolerance 1e-5 Eh/bohr: PySCF's Lebedev grids stay fixed in space (measured: plain PBE forces of
    the two orientations differ by up to ~3e-6 Eh/bohr)."""
    rot = _orthogonal(3, False)
    forces = []
    for mol in (dimer, moved_mol(dimer, coords=dimer.atom_coords() @ rot.T)):
        mf = attach(dft.RKS(mol, xc="PBE"), model)
        mf.conv_tol = 1e-11
        mf.kernel()
        assert mf.converged
        forces.append(-mf.nuc_grad_method().kernel())
    assert np.abs(forces[0]).max() > 1e-3
    np.testing.assert_allclose(forces[1], forces[0] @ rot.T, atol=1e-5)


def test_permutation_of_atoms(model):
    """Swapping molecules and the two H of one: e_delta equal, features permute with the atoms."""
    mol = water_mol("6PR")
    corr = DeePKSCorrection(mol, model)
    x, e_delta = corr.make_descriptor(minao_dm(mol)), corr.kernel(minao_dm(mol))[0]
    order = list(range(3, 18)) + [0, 2, 1]
    pmol = moved_mol(mol, order=order)
    pcorr = DeePKSCorrection(pmol, model)
    np.testing.assert_allclose(pcorr.make_descriptor(minao_dm(pmol)), x[order], atol=1e-10)
    assert abs(pcorr.kernel(minao_dm(pmol))[0] - e_delta) < 1e-10


def test_bad_hidden_irreps_are_refused():
    from deepks_es import build_model
    from deepks_es.errors import DeePKSInputError

    with pytest.raises(DeePKSInputError, match="0e"):
        build_model("e3", elements=[1, 8], hidden="8x1o")
    with pytest.raises(DeePKSInputError, match="irreps string"):
        build_model("e3", elements=[1, 8], hidden="8 scalars")


def test_e_delta_grows_at_most_linearly_far_from_the_data(model):
    """Scaling the input features by 10 scales e_delta by about 10, not 100 or 10^4: the squash bounds
    every block's update (model docstring). Without it a trained e3 model gave e_delta = 2.8 Eh at a
    monomer's MINAO guess and the SCF diverged."""
    x = torch.randn(2, 3, model.irreps.irreps_out.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    elem_index = torch.tensor([1, 0, 0])
    with torch.no_grad():
        e = [model(x * t, elem_index) - model(x * 0, elem_index) for t in (1e2, 1e3, 1e4)]
    growth = [float((e[k + 1] / e[k]).abs().max()) for k in range(2)]
    assert all(5 < g < 15 for g in growth), growth
