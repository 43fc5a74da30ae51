"""Atom-centred projector orbitals and their overlaps with the AO basis.

DeePKS (Chen, Zhang, Wang, E, JCTC 17, 170 (2021), Sec. 2.2) projects the density matrix onto a set of
atom-centred orbitals |alpha^a_{nlm}> placed on every atom a, with radial index n, angular momentum l
and magnetic number m.  The projected density matrix blocks (see :mod:`deepks_es.kernels`) are

    D^a_{nl, mm'} = sum_{rs} <alpha^a_{nlm}|r> dm_{rs} <s|alpha^a_{nlm'}>

and their eigenvalues are the descriptor (:mod:`deepks_es.descriptor`).

Einsum alphabet: r,s AO; a,b atom; n radial shell; m,M magnetic number; x Cartesian.

Layout (``ProjectorBasis.blocks``): the overlaps are a list of *block groups*; every kernel handles one group
with one batched contraction, and the projected density keeps exactly the blocks of the groups:

* ``"shell"`` (default): one group per l, ``ovlp_proj[l]`` of shape (nao, natm, nrad, 2l+1); the blocks are
  (2l+1) x (2l+1), one per atom, l and radial shell (what the invariant descriptors read);
* ``"atom"``: one group, ``ovlp_proj[0]`` of shape (nao, natm, 1, nproj) with the projectors of one atom in
  the order (l, n, m); the blocks are the full nproj x nproj projected density of each atom, couplings
  between radial shells and angular channels included (what the equivariant model reads).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pyscf import gto

# Radial exponents (bohr^-2) of the DeePKS projector: 1.5^k for these k, the table used by deepks-kit
# (deepks/utils.py, default "proj_basis"; DeePKS paper, Sec. 2.2: l = 0, 1, 2, 108 descriptors per atom).
DEFAULT_EXPONENT_POWERS = (17, 13, 10, 7, 5, 3, 2, 1, 0, -1, -2, -3)
DEFAULT_EXPONENTS = tuple(float(1.5**k) for k in DEFAULT_EXPONENT_POWERS)
BLOCKS = ("shell", "atom")


@dataclass(frozen=True)
class ProjectorBasis:
    """The projector orbitals placed on every atom.

    Each radial function n is, as in deepks-kit, the difference of two consecutive normalised primitive
    Gaussians, ``g(zeta_n) - g(zeta_{n-1})`` (n = 0 is ``g(zeta_0)`` alone), normalised afterwards; the
    same radial set is used for every l = 0..lmax and every element.

    Attributes:
        exponents: Gaussian exponents zeta_n in bohr^-2, tightest first.
        lmax: largest angular momentum (default 2: s, p, d).
        contraction: ``"difference"`` (default, above) or ``"primitive"`` (one Gaussian per radial function).
        blocks: ``"shell"`` or ``"atom"``, the blocks of the projected density kept (module docstring).

    Raises:
        ValueError: on an empty or non-positive exponent list, lmax < 0, an unknown contraction or blocks.
    """

    exponents: tuple = DEFAULT_EXPONENTS
    lmax: int = 2
    contraction: str = "difference"
    blocks: str = "shell"

    def __post_init__(self):
        exps = tuple(float(e) for e in self.exponents)
        object.__setattr__(self, "exponents", exps)
        if not exps or min(exps) <= 0:
            raise ValueError(f"projector exponents must be positive, got {exps}")
        if int(self.lmax) != self.lmax or self.lmax < 0:
            raise ValueError(f"projector lmax must be a non-negative integer, got {self.lmax}")
        if self.contraction not in ("difference", "primitive"):
            raise ValueError(f"projector contraction must be 'difference' or 'primitive', got {self.contraction!r}")
        if self.blocks not in BLOCKS:
            raise ValueError(f"projector blocks must be one of {BLOCKS}, got {self.blocks!r}")

    @property
    def nrad(self) -> int:
        """Number of radial functions per l."""
        return len(self.exponents)

    @property
    def nproj(self) -> int:
        """Projector functions per atom, sum_l nrad * (2l+1); equals the descriptor length per atom."""
        return self.nrad * (self.lmax + 1) ** 2

    def to_dict(self) -> dict:
        """Plain-Python form stored in model checkpoints (``blocks`` only when not the default, so that
        checkpoints written before it existed keep their hash)."""
        d = {"exponents": list(self.exponents), "lmax": int(self.lmax), "contraction": self.contraction}
        return d if self.blocks == "shell" else {**d, "blocks": self.blocks}

    @classmethod
    def from_dict(cls, d: dict) -> ProjectorBasis:
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: for missing or invalid entries.
        """
        try:
            return cls(
                exponents=tuple(d["exponents"]),
                lmax=int(d["lmax"]),
                contraction=d["contraction"],
                blocks=d.get("blocks", "shell"),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"projector needs exponents, lmax and contraction ({exc})") from None

    def pyscf_shells(self) -> list:
        """PySCF basis list: one generally contracted shell per l with ``nrad`` contracted functions."""
        n = self.nrad
        if self.contraction == "primitive":
            coef = np.eye(n)
        else:
            coef = np.eye(n) - np.eye(n, k=1)  # column j = g_j - g_{j-1}
        rows = [[e, *coef[i]] for i, e in enumerate(self.exponents)]
        return [[l, *rows] for l in range(self.lmax + 1)]


def ao_atom(mol: gto.Mole) -> np.ndarray:
    """(nao,) int: the atom each AO of ``mol`` sits on."""
    return np.repeat(np.arange(mol.natm), np.diff(mol.aoslice_by_atom()[:, 2:4], axis=1).ravel())


def make_proj_mol(mol: gto.Mole, projector: ProjectorBasis) -> gto.Mole:
    """A ``Mole`` with the projector orbitals on the atoms of ``mol`` (same coordinates, in bohr)."""
    atoms = [(mol.atom_pure_symbol(a), mol.atom_coord(a)) for a in range(mol.natm)]
    pmol = gto.Mole()
    pmol.atom = atoms
    pmol.unit = "Bohr"
    pmol.basis = projector.pyscf_shells()
    pmol.cart = False
    pmol.spin = sum(mol.atom_charges()) % 2
    pmol.verbose = 0
    pmol.build(dump_input=False, parse_arg=False)
    return pmol


def _split_by_l(mat: np.ndarray, natm: int, projector: ProjectorBasis) -> list:
    """(..., natm * nproj) in PySCF order -> the block groups of ``projector.blocks``, C-contiguous: list over
    l of (..., natm, nrad, 2l+1) or [(..., natm, 1, nproj)]."""
    lead = mat.shape[:-1]
    mat = mat.reshape(*lead, natm, projector.nproj)
    if projector.blocks == "atom":
        return [np.ascontiguousarray(mat[..., None, :])]
    out, p0 = [], 0
    for l in range(projector.lmax + 1):
        p1 = p0 + projector.nrad * (2 * l + 1)
        # PySCF orders a generally contracted shell as (contraction, m)
        out.append(np.ascontiguousarray(mat[..., p0:p1].reshape(*lead, natm, projector.nrad, 2 * l + 1)))
        p0 = p1
    return out


def ovlp_proj(mol: gto.Mole, projector: ProjectorBasis, pmol: gto.Mole | None = None) -> list:
    """Overlaps <r|alpha^a_{nlm}> between the AOs of ``mol`` and the projectors.

    Returns:
        block groups (module docstring): list over l = 0..lmax of arrays of shape (nao, natm, nrad, 2l+1), or
        [(nao, natm, 1, nproj)] for ``blocks="atom"``; dimensionless.
    """
    pmol = make_proj_mol(mol, projector) if pmol is None else pmol
    return _split_by_l(gto.intor_cross("int1e_ovlp", mol, pmol), mol.natm, projector)


def ipovlp_proj(mol: gto.Mole, projector: ProjectorBasis, pmol: gto.Mole | None = None) -> list:
    """Overlaps <nabla r|alpha^a_{nlm}> (derivative acting on the AO, electron coordinate).

    The derivative of ``ovlp_proj`` with respect to the centre of AO r is ``-ipovlp``; with respect to
    the projector centre a it is ``+ipovlp`` (translational invariance of a two-centre overlap).

    Returns:
        block groups as :func:`ovlp_proj` with a leading 3: (3, nao, natm, nrad, 2l+1) per l, bohr^-1.
    """
    pmol = make_proj_mol(mol, projector) if pmol is None else pmol
    return _split_by_l(gto.intor_cross("int1e_ipovlp", mol, pmol), mol.natm, projector)
