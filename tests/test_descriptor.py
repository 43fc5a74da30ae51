"""Descriptors are invariant under rotation and permute with the atoms; e_delta is invariant under both.

The density used is PySCF's MINAO superposition-of-atoms guess, which is exactly covariant under rotations
and permutations of the molecule, so the checks hold to round-off (1e-10) without SCF noise.
"""

import numpy as np
import pytest
import torch
from conftest import minao_dm, moved_mol, random_model, water_mol
from scipy.spatial.transform import Rotation

from deepks_es.descriptor import DESCRIPTORS, make_descriptor
from deepks_es.scf import DeePKSCorrection


@pytest.mark.parametrize("kind", DESCRIPTORS)
def test_rotation_invariance(kind):
    mol = water_mol("6PR")  # BEGDB hexamer prism, a real 3D cluster
    model = random_model(descriptor=kind)
    corr = DeePKSCorrection(mol, model)
    desc = corr.make_descriptor(minao_dm(mol))
    e_delta = corr.kernel(minao_dm(mol))[0]
    for seed in range(3):
        rot = Rotation.random(random_state=seed).as_matrix()
        centre = mol.atom_coords().mean(0)
        rmol = moved_mol(mol, coords=(mol.atom_coords() - centre) @ rot.T + np.array([0.3, -1.2, 2.0]))
        rcorr = DeePKSCorrection(rmol, model)
        np.testing.assert_allclose(rcorr.make_descriptor(minao_dm(rmol)), desc, atol=1e-10, rtol=0)
        assert abs(rcorr.kernel(minao_dm(rmol))[0] - e_delta) < 1e-10


@pytest.mark.parametrize("kind", DESCRIPTORS)
def test_permutation_invariance(kind):
    mol = water_mol("6PR")
    model = random_model(seed=3, descriptor=kind)
    corr = DeePKSCorrection(mol, model)
    desc = corr.make_descriptor(minao_dm(mol))
    e_delta = corr.kernel(minao_dm(mol))[0]
    # swap whole molecules and the two H atoms inside the first one
    order = list(range(3, 18)) + [0, 2, 1]
    pmol = moved_mol(mol, order=order)
    pcorr = DeePKSCorrection(pmol, model)
    np.testing.assert_allclose(pcorr.make_descriptor(minao_dm(pmol)), desc[order], atol=1e-10, rtol=0)
    assert abs(pcorr.kernel(minao_dm(pmol))[0] - e_delta) < 1e-10


@pytest.mark.parametrize("kind", DESCRIPTORS)
def test_descriptor_shape_and_monomer_values(monomer, kind):
    """108 values per atom; a projected density is positive semi-definite, so neither its eigenvalues nor
    the traces of its powers are negative."""
    desc = DeePKSCorrection(monomer, random_model(descriptor=kind)).make_descriptor(minao_dm(monomer))
    assert desc.shape == (3, 108)
    assert desc.min() > -1e-12
    assert desc[0].max() > 0.1  # the O 1s region holds about 2 electrons: a large s-shell value


def test_power_traces_are_power_sums_of_eigenvalues(monomer):
    pdm = [torch.from_numpy(p) for p in DeePKSCorrection(monomer, random_model()).make_pdm(minao_dm(monomer))]
    traces = make_descriptor(pdm, "power_traces")
    sums = torch.cat(
        [
            (torch.linalg.eigvalsh(p)[..., None, :] ** torch.arange(1, 2 * l + 2)[:, None]).sum(-1).flatten(-2)
            for l, p in enumerate(pdm)
        ],
        dim=-1,
    )
    np.testing.assert_allclose(traces.numpy(), sums.numpy(), rtol=1e-10, atol=1e-14)


def _block_gradient(kind: str, split: float) -> np.ndarray:
    """d f / d P of a fixed non-symmetric function f of the descriptor of one p block whose two lower
    eigenvalues are 0.5 +- split (rotated out of the diagonal)."""
    rot = torch.from_numpy(Rotation.from_rotvec([0.3, -0.7, 0.4]).as_matrix())
    block = rot @ torch.diag(torch.tensor([0.5 + split, 0.5 - split, 1.0], dtype=torch.float64)) @ rot.T
    block.requires_grad_(True)
    pdm = [torch.eye(1, dtype=torch.float64)[None, None], block[None, None]]
    desc = make_descriptor(pdm, kind)[0]
    f = (desc * torch.linspace(0.3, 1.7, len(desc), dtype=torch.float64)).sin().sum()
    return torch.autograd.grad(f, block)[0].numpy()


def test_power_trace_gradient_is_continuous_across_degeneracy():
    """The reason for the default (descriptor module docstring): when two eigenvalues of a block pass each
    other, the gradient of a function of sorted eigenvalues jumps, that of the power traces does not."""
    for kind, continuous in (("power_traces", True), ("eigenvalues", False)):
        jump = np.abs(_block_gradient(kind, 1e-7) - _block_gradient(kind, -1e-7)).max()
        assert (jump < 1e-5) == continuous, (kind, jump)


def test_model_is_float64_and_batched():
    model = random_model()
    d = torch.rand(4, 3, 108, dtype=torch.float64)
    e = model(d, torch.tensor([1, 0, 0]))
    assert e.shape == (4,) and e.dtype == torch.float64
    np.testing.assert_allclose(e[2].item(), model(d[2], torch.tensor([1, 0, 0])).item(), rtol=1e-14)


def test_coupled_invariants_rotation_inversion_permutation():
    """The ``mlp_coupled`` descriptor (power traces + scalars and squared norms of the full block's irreps)
    is unchanged by a rotation, an inversion through the centre and a permutation (it permutes with the
    atoms), and its first 108 values are the ``mlp`` model's power traces of the same density."""
    mol = water_mol("6PR")
    coupled = DeePKSCorrection(mol, random_model(kind="mlp_coupled"))
    desc = coupled.make_descriptor(minao_dm(mol))
    assert desc.shape == (18, 1494)
    shell = DeePKSCorrection(mol, random_model()).make_descriptor(minao_dm(mol))
    np.testing.assert_allclose(desc[:, :108], shell, atol=1e-12, rtol=0)
    centre = mol.atom_coords().mean(0)
    for seed, sign in ((0, 1), (1, 1), (2, -1)):  # the last: rotation times inversion
        rot = sign * Rotation.random(random_state=seed).as_matrix()
        rmol = moved_mol(mol, coords=(mol.atom_coords() - centre) @ rot.T)
        rdesc = DeePKSCorrection(rmol, coupled.model).make_descriptor(minao_dm(rmol))
        np.testing.assert_allclose(rdesc, desc, atol=1e-10, rtol=0)
    order = list(range(3, 18)) + [0, 2, 1]
    pmol = moved_mol(mol, order=order)
    pdesc = DeePKSCorrection(pmol, coupled.model).make_descriptor(minao_dm(pmol))
    np.testing.assert_allclose(pdesc, desc[order], atol=1e-10, rtol=0)


def test_coupled_invariants_see_inter_shell_couplings():
    """A density change only between two radial s shells of one atom leaves every per-shell power trace
    as it is and moves the ``mlp_coupled`` invariants (their inter-shell scalar sum_m P(n l m, n' l m))."""
    from deepks_es.model import build_model

    model = build_model("mlp_coupled", elements=[1, 8])
    nproj = model.projector.nproj
    rng = np.random.default_rng(0)
    a = rng.standard_normal((2, nproj, nproj))
    p = torch.from_numpy(a @ a.transpose(0, 2, 1) / nproj)[:, None]  # (natm, 1, nproj, nproj)
    q = p.clone()
    q[0, 0, 0, 1] += 0.05  # s shells n = 0 and 1 of atom 0: projectors 0 and 1
    q[0, 0, 1, 0] += 0.05
    d_p, d_q = model.make_descriptor([p]), model.make_descriptor([q])
    np.testing.assert_allclose(d_q[:, :108], d_p[:, :108], atol=1e-14, rtol=0)
    assert (d_q[0, 108:] - d_p[0, 108:]).abs().max() > 1e-3
    np.testing.assert_allclose(d_q[1], d_p[1], atol=0, rtol=0)
