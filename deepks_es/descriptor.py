"""Invariant descriptors from projected density matrix blocks.

The descriptor of atom a is the set of eigenvalues of its (2l+1) x (2l+1) projected density blocks, one
block per radial shell n and angular momentum l (DeePKS, Chen et al., JCTC 17, 170 (2021), Eq. 5):

    descriptor[a] = concat_l  eigvalsh(pdm[l][a, n])   for n = 0..nrad-1

They are invariant under rotations (each block transforms as R_l pdm R_l^T) and permutations of atoms
(the descriptor permutes with the atoms). Order: l = 0 shells, then l = 1, then l = 2; inside one l,
radial shell n major, eigenvalues ascending.
"""

from __future__ import annotations

import torch


def make_descriptor(pdm: list) -> torch.Tensor:
    """Eigenvalue descriptor from projected density blocks (differentiable).

    Args:
        pdm: list over l of tensors of shape (..., natm, nrad, 2l+1, 2l+1), symmetric blocks
            (leading dimensions, e.g. frames, are batched).

    Returns:
        tensor of shape (..., natm, ndesc), ndesc = nrad * (lmax+1)^2, same dtype as the input.
    """
    return torch.cat([torch.linalg.eigvalsh(p).flatten(-2) for p in pdm], dim=-1)
