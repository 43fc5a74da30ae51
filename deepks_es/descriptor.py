"""Invariant descriptors from projected density matrix blocks.

Each atom a has one (2l+1) x (2l+1) projected density block P = pdm[l][a, n] per radial shell n and
angular momentum l. Two rotation-invariant reductions of a block are offered (``DESCRIPTORS``):

``"eigenvalues"`` (DeePKS, Chen et al., JCTC 17, 170 (2021), Eq. 5)::

    eigvalsh(P), ascending

``"power_traces"`` (default)::

    tr(P^k),  k = 1 .. 2l+1

Both carry the same information (the power sums of the 2l+1 eigenvalues determine them, Newton's
identities), but a network of *sorted* eigenvalues has a gradient V diag(dE/dlambda) V^T that is not
defined where eigenvalues are degenerate and changes on the scale of their splitting near it. Projected
blocks of water in cc-pVDZ have such pairs in every frame (splittings 1e-9 in p, 1e-15 in d blocks), so
v_delta then carries noise that kept the SCF from converging below ~1e-8 Eh. Power traces are
polynomials of P: their derivative k P^(k-1) is smooth everywhere (measured in README.md, "Default
model").

Both are invariant under rotations (each block transforms as R_l P R_l^T) and permutations of atoms (the
descriptor permutes with the atoms). Order: l = 0 shells, then l = 1, then l = 2; inside one l, radial
shell n major, then the eigenvalue index (ascending) or the power k.
"""

from __future__ import annotations

import torch

DESCRIPTORS = ("power_traces", "eigenvalues")


def _power_traces(p: torch.Tensor) -> torch.Tensor:
    """tr(P^k) for k = 1..d of blocks p (..., d, d) -> (..., d)."""
    traces, pk = [], p
    for k in range(p.shape[-1]):
        if k:
            pk = pk @ p
        traces.append(pk.diagonal(dim1=-2, dim2=-1).sum(-1))
    return torch.stack(traces, dim=-1)


def make_descriptor(pdm: list, kind: str = "power_traces") -> torch.Tensor:
    """Descriptor from projected density blocks (differentiable).

    Args:
        pdm: list over l of tensors of shape (..., natm, nrad, 2l+1, 2l+1), symmetric blocks
            (leading dimensions, e.g. frames, are batched).
        kind: one of :data:`DESCRIPTORS`.

    Returns:
        tensor of shape (..., natm, ndesc), ndesc = nrad * (lmax+1)^2, same dtype as the input.

    Raises:
        ValueError: for an unknown kind.
    """
    if kind not in DESCRIPTORS:
        raise ValueError(f"descriptor kind must be one of {DESCRIPTORS}, got {kind!r}")
    reduce = torch.linalg.eigvalsh if kind == "eigenvalues" else _power_traces
    return torch.cat([reduce(p).flatten(-2) for p in pdm], dim=-1)
