"""One SCF (and optionally gradient) for one molecule: the unit of work of ``deepks-es scf``.

Results are a plain dict in atomic units (Eh, Eh/bohr); conversion to eV and Å happens only at output
(:mod:`deepks_es.output`).
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
from pyscf import dft

from .errors import DeePKSInputError
from .scf import attach, run_scf
from .settings import DEFAULT_XC, SCFSettings


def check_level(basis=None, xc=None) -> None:
    """Refuse, before any compute, a basis PySCF cannot load (tried for H, in every water) or a functional
    Libxc (through PySCF) does not parse; None is not checked.

    Raises:
        DeePKSInputError: naming the value and the fix.
    """
    import warnings

    from pyscf import gto
    from pyscf.dft import libxc

    def load_basis(name):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PySCF suggests installing basis-set-exchange
            if not gto.basis.load(name, "H"):
                raise KeyError("no functions for H")

    for flag, value, load, example in (("--basis", basis, load_basis, "cc-pVDZ"), ("--xc", xc, libxc.parse_xc, "PBE")):
        if value is None:
            continue
        try:
            if not isinstance(value, str) or not value.strip():
                raise ValueError("not a name")
            load(value)
        except Exception as exc:  # PySCF raises several types for unknown names and unreadable basis files
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DeePKSInputError(f"{flag} {value!r} is not known to PySCF ({msg}); use e.g. {example}") from None


def build_scf(mol, xc: str = DEFAULT_XC, model=None, settings: SCFSettings | None = None, **changes):
    """A restricted KS object for ``mol``: base functional ``xc``, optional density fitting, optional
    correction ``model`` attached on top (:func:`deepks_es.scf.attach`). Nothing is run.

    Args:
        settings: :class:`~deepks_es.settings.SCFSettings` (default: its defaults); ``changes`` replace
            single fields of it (``max_cycle=3``).

    Raises:
        DeePKSInputError: an unknown functional, a setting out of range, a model for another basis, base
            functional or elements.
    """
    settings = replace(settings or SCFSettings(), **changes).validate().for_model(model)
    check_level(xc=xc)
    mf = dft.RKS(mol, xc=xc)
    if settings.density_fit:
        mf = mf.density_fit()
    mf.grids.level = settings.grid_level
    mf.conv_tol = settings.conv_tol
    mf.max_cycle = settings.max_cycle
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


def single_point(mf, forces: bool = False, dm0=None) -> dict:
    """Run the SCF (with the retry ladder) from ``dm0`` ((nao, nao) AO density matrix; None: PySCF's
    initial guess) and, when asked, the analytic gradient.

    Returns:
        dict with ``e_tot``, ``e_delta`` (Eh; 0.0 without a correction), ``de`` ((natm, 3) Eh/bohr or
        None), ``mo_energy`` (Eh), ``mo_occ``, ``homo``, ``lumo``, ``gap`` (Eh), ``converged``, ``cycles``
        (all attempts), ``scf_attempts``, ``wall_s``, and ``mf``, the SCF object that ran last.
    """
    t0 = time.perf_counter()
    mf = run_scf(mf, dm0)
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
