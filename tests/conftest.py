"""Shared fixtures: real water clusters from data/water (see data/water/PROVENANCE.md) and models."""

import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from pyscf import dft, gto  # noqa: E402

from deepks_es import build_model  # noqa: E402
from deepks_es.structures import frame_to_mol, read_frames  # noqa: E402

WATER = Path(__file__).resolve().parent.parent / "data" / "water"


def water_mol(name: str, basis: str = "cc-pVDZ"):
    """A built PySCF molecule of a bundled real water cluster (e.g. '2Cs', the BEGDB dimer)."""
    return frame_to_mol(read_frames([WATER / f"{name}.xyz"])[0], basis)


#: model kinds every physics test runs on
KINDS = ("mlp", "mlp_coupled", "e3")


def random_model(seed: int = 0, scale: float = 0.01, kind: str = "mlp", **kwargs):
    """A production-architecture model (H, O) of ``kind`` with small random weights: a non-zero correction.

    ``mlp``, ``mlp_coupled``: every weight N(0, scale^2). ``e3``: e3nn's own initialisation (its layers normalise their
    paths, weights of order 1 are their scale) with the zero-initialised read-out drawn N(0, (10 scale)^2)
    and e_shift N(0, scale^2), which gives a v_delta of the same size as the mlp's (~4e-3 Eh).
    """
    torch.manual_seed(seed)
    model = build_model(kind, elements=[1, 8], **kwargs)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if kind != "e3" or name in ("e_shift", "readout.weight"):
                p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * scale * (10 if "readout" in name else 1))
    return model


def minao_dm(mol) -> np.ndarray:
    """PySCF's MINAO superposition-of-atoms density, exactly covariant under rotations and permutations."""
    return dft.RKS(mol).get_init_guess(key="minao")


def moved_mol(mol, coords=None, order=None):
    """``mol`` with new coordinates (bohr, in the old atom order) and/or its atoms reordered."""
    atoms = [(mol.atom_symbol(a), mol.atom_coord(a)) for a in range(mol.natm)]
    if coords is not None:
        atoms = [(s, c) for (s, _), c in zip(atoms, coords)]
    if order is not None:
        atoms = [atoms[i] for i in order]
    return gto.M(atom=atoms, unit="Bohr", basis=mol.basis, verbose=0)


def random_symmetric(n: int, seed: int) -> np.ndarray:
    a = np.random.default_rng(seed).standard_normal((n, n))
    return (a + a.T) / 2


def fd_gradient(mol, energy, h: float) -> np.ndarray:
    """Central finite differences (natm, 3) of ``energy(displaced_mol)`` in the nuclear coordinates (bohr)."""
    fd = np.zeros((mol.natm, 3))
    for a in range(mol.natm):
        for x in range(3):
            e = []
            for sign in (1, -1):
                coords = mol.atom_coords().copy()
                coords[a, x] += sign * h
                e.append(energy(mol.set_geom_(coords, unit="Bohr", inplace=False)))
            fd[a, x] = (e[0] - e[1]) / (2 * h)
    return fd


@pytest.fixture(scope="session")
def dimer():
    return water_mol("2Cs")


@pytest.fixture(scope="session")
def monomer():
    return water_mol("H2O")
