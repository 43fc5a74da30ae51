"""One SCF (and optionally gradient) for one molecule: the unit of work of ``deepks-es scf``.

Results are a plain dict in atomic units (Eh, Eh/bohr); conversion to eV and Å happens only at output
(:mod:`deepks_es.output`).
"""

from __future__ import annotations

import time

import numpy as np
from pyscf import dft

from .scf import attach, run_scf

DEFAULT_CONV_TOL = 1e-10  # Eh; tight enough for finite-difference checks of forces


def build_scf(
    mol,
    xc: str = "PBE",
    model=None,
    density_fit: bool = False,
    grid_level: int = 3,
    conv_tol: float = DEFAULT_CONV_TOL,
    max_cycle: int = 100,
):
    """A restricted KS object for ``mol``: base functional ``xc``, optional density fitting, optional
    correction ``model`` attached on top (:func:`deepks_es.scf.attach`). Nothing is run."""
    mf = dft.RKS(mol, xc=xc)
    if density_fit:
        mf = mf.density_fit()
    mf.grids.level = grid_level
    mf.conv_tol = conv_tol
    mf.max_cycle = max_cycle
    if model is not None:
        mf = attach(mf, model)
    return mf


def frontier(mo_energy: np.ndarray, mo_occ: np.ndarray):
    """HOMO, LUMO and gap (Eh) from orbital energies and occupations; LUMO and gap are None without
    virtual orbitals."""
    homo = float(mo_energy[mo_occ > 0].max())
    virt = mo_energy[mo_occ == 0]
    lumo = float(virt.min()) if virt.size else None
    return homo, lumo, (lumo - homo if lumo is not None else None)


def scf_fields(mf) -> dict:
    """``mo_energy`` (Eh), ``mo_occ``, ``homo``, ``lumo``, ``gap`` (Eh), ``converged``, ``cycles`` (all
    attempts) and ``scf_attempts`` of an SCF object returned by :func:`deepks_es.scf.run_scf`."""
    homo, lumo, gap = frontier(mf.mo_energy, mf.mo_occ)
    return {
        "mo_energy": np.asarray(mf.mo_energy),
        "mo_occ": np.asarray(mf.mo_occ),
        "homo": homo,
        "lumo": lumo,
        "gap": gap,
        "converged": bool(mf.converged),
        "cycles": int(sum(a[2] for a in mf.scf_attempts)),
        "scf_attempts": [list(a) for a in mf.scf_attempts],
    }


def single_point(mf, forces: bool = False) -> dict:
    """Run the SCF (with the retry ladder) and, when asked, the analytic gradient.

    Returns:
        dict with ``e_tot``, ``e_delta`` (Eh; 0.0 without a correction), ``de`` ((natm, 3) Eh/bohr or
        None), ``mo_energy`` (Eh), ``mo_occ``, ``homo``, ``lumo``, ``gap`` (Eh), ``converged``, ``cycles``
        (all attempts), ``scf_attempts``, ``wall_s``, and ``mf``, the SCF object that ran last.
    """
    t0 = time.perf_counter()
    mf = run_scf(mf)
    de = None
    if forces:
        de = mf.nuc_grad_method().kernel()
    return {
        "e_tot": float(mf.e_tot),
        "e_delta": float(mf.scf_summary.get("e_delta", 0.0)),
        "de": None if de is None else np.asarray(de),
        **scf_fields(mf),
        "wall_s": time.perf_counter() - t0,
        "mf": mf,
    }
