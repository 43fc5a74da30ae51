"""What the models read: invariant descriptors of projected density blocks, and the irreps of full blocks.

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

:class:`PdmIrreps` instead decomposes each atom's *full* projected density matrix (``blocks="atom"``: all
shells l <= lmax, all radial pairs, couplings included) into irreducible representations of O(3) for the
equivariant model (see its docstring for the irreps and their count), and its invariants (scalars and
squared norms of every channel, :meth:`PdmIrreps.invariants`) for the ``mlp_coupled`` model: invariants
that keep the couplings between radial shells and angular channels that the per-shell reductions drop.
"""

from __future__ import annotations

import numpy as np
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


def pyscf_to_e3nn(l: int) -> np.ndarray:
    """Orthogonal (2l+1, 2l+1) U with Y_pyscf(r) = Y_e3nn(r) @ U for PySCF's real spherical harmonics (order
    of ``mol.eval_gto('GTOval_sph')``) and e3nn's; a PySCF block P transforms to U P U^T in e3nn's basis.

    Fitted by least squares on 64 fixed points of the unit sphere (exact to round-off: both sets span the
    same 2l+1 functions), so no convention of either code is assumed.
    """
    from e3nn import o3
    from pyscf import gto

    points = np.random.default_rng(0).standard_normal((64, 3))
    points /= np.linalg.norm(points, axis=1)[:, None]
    mol = gto.M(atom=[["H", (0, 0, 0)]], basis={"H": [[l, [1.0, 1.0]]]}, spin=1, verbose=0)
    y_pyscf = mol.eval_gto("GTOval_sph", points)
    y_e3nn = o3.spherical_harmonics(l, torch.from_numpy(points), normalize=True, normalization="component")
    fit = np.linalg.lstsq(y_e3nn.numpy(), y_pyscf, rcond=None)[0]
    return fit / np.sqrt(np.mean(np.sum(fit**2, axis=0)))


class PdmIrreps(torch.nn.Module):
    """Full per-atom projected density blocks -> O(3) irreps features (e3nn layout), a linear isometry.

    Input: the single block group of ``blocks="atom"``, (..., natm, 1, nproj, nproj), projectors in the
    order (l, n, m), m in PySCF's real-harmonic order. Every sub-block B of shells (l1, n1), (l2, n2)
    transforms as D_l1 B D_l2^T under a rotation and by (-1)^(l1+l2) under inversion, so it splits
    into irreps l3 = |l1-l2| .. l1+l2 of parity (-1)^(l1+l2) by the Wigner 3j symbols (e3nn's basis):

        x_l3[k] = sqrt(2 l3 + 1) sum_ij (U_l1 B U_l2^T)_ij w3j(l1, l2, l3)_ijk

    Blocks are symmetric (B(l2 n2, l1 n1) = B(l1 n1, l2 n2)^T), so only pairs (l1, n1) <= (l2, n2) are
    kept, and a diagonal sub-block (l1 n1 = l2 n2) gives only the symmetric irreps (l3 even). The map
    keeps norms: sum over features of x^2 equals the squared norm of the upper triangle (diagonal
    sub-blocks once), the features are the block in an orthonormal basis. The block is symmetrised first,
    so that d(features)/d(block) is symmetric as :func:`deepks_es.kernels.make_v_delta` assumes. For the
    default projector (12 radial functions, lmax 2) ``irreps_out`` is
    234x0e+288x1o+132x1e+144x2o+300x2e+144x3o+66x3e+78x4e, dim 5886 = 108 * 109 / 2.

    Attributes:
        irreps_out: e3nn ``Irreps`` of the features (sorted, multiplicities merged).
    """

    def __init__(self, projector):
        from e3nn import o3

        super().__init__()
        self.nrad, self.lmax = projector.nrad, projector.lmax
        u = [pyscf_to_e3nn(l) for l in range(self.lmax + 1)]
        self.pairs = []  # (l1, l2, [l3, ...]) for l1 <= l2
        chunks = {}  # (l3, parity) -> the (l1, l2, l3) that give it, concatenated in this order
        for l1 in range(self.lmax + 1):
            for l2 in range(l1, self.lmax + 1):
                cols, outs = [], []
                for l3 in range(l2 - l1, l1 + l2 + 1):
                    w3j = o3.wigner_3j(l1, l2, l3, dtype=torch.float64).numpy()
                    cols.append(np.sqrt(2 * l3 + 1) * np.einsum("ia,jb,ijk->abk", u[l1], u[l2], w3j))
                    outs.append(l3)
                    chunks.setdefault((l3, (-1) ** (l1 + l2)), []).append((l1, l2, l3))
                self.register_buffer(f"w_{l1}{l2}", torch.from_numpy(np.concatenate(cols, axis=-1)), persistent=False)
                self.pairs.append((l1, l2, outs))
        self.register_buffer("triu", torch.triu_indices(self.nrad, self.nrad), persistent=False)
        self.register_buffer("strict", torch.triu_indices(self.nrad, self.nrad, offset=1), persistent=False)
        order = sorted(chunks, key=lambda ir: o3.Irrep(ir[0], ir[1]))
        self.order = [(ir, chunks[ir]) for ir in order]
        self.irreps_out = o3.Irreps([(sum(self._mul(*c) for c in chunks[ir]), ir) for ir in order])

    def _mul(self, l1, l2, l3) -> int:
        n = self.nrad
        if l1 != l2:
            return n * n
        return n * (n + 1) // 2 if l3 % 2 == 0 else n * (n - 1) // 2

    def forward(self, pdm: list) -> torch.Tensor:
        """Features (..., natm, irreps_out.dim) of ``pdm`` = [(..., natm, 1, nproj, nproj)].

        Raises:
            ValueError: for blocks that are not the full per-atom ones of this projector.
        """
        (p,) = pdm
        nproj = self.nrad * (self.lmax + 1) ** 2
        if p.shape[-3:] != (1, nproj, nproj):
            raise ValueError(
                f"PdmIrreps needs full per-atom blocks (..., natm, 1, {nproj}, {nproj}), got {tuple(p.shape)}"
            )
        p = (p[..., 0, :, :] + p[..., 0, :, :].transpose(-1, -2)) / 2
        parts = {}
        for l1, l2, outs in self.pairs:
            sub = l_pair_block(p, self.nrad, l1, l2).movedim(-3, -2)  # (..., natm, n1, n2, m1, m2)
            x = torch.einsum("...ij,ijk->...k", sub, getattr(self, f"w_{l1}{l2}"))  # (..., natm, n1, n2, k)
            k0 = 0
            for l3 in outs:
                xl = x[..., k0 : k0 + 2 * l3 + 1]
                k0 += 2 * l3 + 1
                if l1 == l2:
                    idx = self.triu if l3 % 2 == 0 else self.strict
                    xl = xl[..., idx[0], idx[1], :]
                parts[(l1, l2, l3)] = xl.flatten(-3, -2) if l1 != l2 else xl
        out = [torch.cat([parts[c] for c in chunk], dim=-2).flatten(-2) for _, chunk in self.order]
        return torch.cat(out, dim=-1)

    def invariants(self, x: torch.Tensor) -> torch.Tensor:
        """Rotation- and inversion-invariant reduction of features x (..., irreps_out.dim): every 0e
        channel as it is, every other channel c as its squared norm sum_m x_cm^2 (smooth, unlike the norm).
        Returns (..., irreps_out.num_irreps): 1386 values per atom for the default projector."""
        out = []
        for (mul, ir), sl in zip(self.irreps_out, self.irreps_out.slices()):
            c = x[..., sl].unflatten(-1, (mul, ir.dim))
            out.append(c[..., 0] if ir.l == 0 else c.pow(2).sum(-1))
        return torch.cat(out, dim=-1)


def shell_blocks(pdm: list, nrad: int, lmax: int) -> list:
    """The per-shell blocks (list over l of (..., natm, nrad, 2l+1, 2l+1), the ``blocks="shell"`` layout)
    on the diagonal of full per-atom blocks [(..., natm, 1, nproj, nproj)], projectors ordered (l, n, m)."""
    (p,) = pdm
    # (..., natm, n1, m1, n2, m2) -> n1 = n2: (..., natm, m1, m2, n) -> (..., natm, n, m1, m2)
    return [
        l_pair_block(p[..., 0, :, :], nrad, l, l).diagonal(dim1=-4, dim2=-2).movedim(-1, -3) for l in range(lmax + 1)
    ]


def l_pair_block(p: torch.Tensor, nrad: int, l1: int, l2: int) -> torch.Tensor:
    """The (l1, l2) block (..., nrad, 2 l1 + 1, nrad, 2 l2 + 1) of per-atom projected blocks p (..., nproj,
    nproj), projectors ordered (l, n, m) as :class:`deepks_es.projector.ProjectorBasis` builds them (l starts at
    nrad l^2)."""
    s1, s2 = nrad * l1 * l1, nrad * l2 * l2
    sub = p[..., s1 : s1 + nrad * (2 * l1 + 1), s2 : s2 + nrad * (2 * l2 + 1)]
    return sub.unflatten(-1, (nrad, 2 * l2 + 1)).unflatten(-3, (nrad, 2 * l1 + 1))
