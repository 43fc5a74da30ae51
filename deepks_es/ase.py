"""An ASE calculator running the corrected SCF: geometry optimisation and MD with ASE's own tools.

``DeePKSCalculator`` gives ``energy`` / ``free_energy`` (eV) and ``forces`` (eV/Å, = -gradient) for an
``ase.Atoms``: each new geometry is a PySCF SCF with the DeePKS correction attached
(:func:`deepks_es.calc.build_scf`), run through the retry ladder (:func:`deepks_es.scf.run_scf`), and the
analytic gradient (:mod:`deepks_es.grad`). Results are cached until the atoms change (ASE's
``check_state``). Inside everything is in atomic units; eV and Å appear only where ASE reads the results
(``pyscf.data.nist.HARTREE2EV`` and
:data:`deepks_es.output.EV_PER_ANG_PER_AU`).

Between calls the SCF starts from the previous converged density: the previous occupied orbitals,
Löwdin-orthonormalised in the overlap of the new geometry (:func:`project_density`).

Einsum alphabet: r,s AO; i,j occupied MO.
"""

from __future__ import annotations

import time
from dataclasses import asdict

import numpy as np
from ase.calculators.calculator import CalculationFailed, Calculator, all_changes
from pyscf.data.nist import HARTREE2EV

from .calc import build_scf
from .errors import DeePKSInputError
from .model import resolve_level
from .output import EV_PER_ANG_PER_AU
from .scf import run_scf
from .settings import SCFSettings
from .structures import Frame, _charge_and_multiplicity, _integer, check_frame, frame_to_mol

#: atoms.info keys that set the charge and spin (read by :func:`deepks_es.structures.read_frames` alike)
SPIN_INFO_KEYS = ("charge", "multiplicity", "mult", "spin")


class SCFNotConvergedError(CalculationFailed):
    """The SCF of a geometry did not converge after the retry ladder; the calculator returns no energy or
    forces for it (never an unconverged force)."""


def project_density(mo_coeff: np.ndarray, mo_occ: np.ndarray, ovlp: np.ndarray) -> np.ndarray:
    """An initial density for a moved molecule from the orbitals of the previous geometry.

    The occupied orbitals C (same atoms, same basis) are Löwdin-orthonormalised in the new overlap,
    C' = C (Cᵀ S C)^-1/2, and dm0 = C' diag(occ) C'ᵀ: a valid density of the new geometry (idempotent,
    tr(dm0 S) = number of electrons) as close as possible to the old one.

    Args:
        mo_coeff: (nao, nmo) orbitals of the previous geometry.
        mo_occ: (nmo,) their occupations.
        ovlp: (nao, nao) AO overlap at the new geometry.

    Returns:
        dm0, (nao, nao).
    """
    occ = mo_occ > 0
    c_occ = mo_coeff[:, occ]
    metric = np.einsum("ri,rs,sj->ij", c_occ, ovlp, c_occ)
    w, u = np.linalg.eigh(metric)
    c_occ = c_occ @ (u * w**-0.5) @ u.T
    return np.einsum("ri,i,si->rs", c_occ, mo_occ[occ], c_occ)


class DeePKSCalculator(Calculator):
    """ASE calculator: PBE (or ``xc``) + DeePKS correction SCF in PySCF, with analytic forces.

    Parameters
    ----------
    model : str, path, CorrectionModel or None
        A checkpoint path or a shipped model's name (``"default"``, ``"e3"``); None for the shipped default
        model; ``"none"`` for the plain base functional (no correction).
    basis, xc : str, optional
        AO basis and base functional; default the model's, else cc-pVDZ and PBE (as ``deepks-es scf``).
    charge, multiplicity : int, optional
        Default ``atoms.info["charge"]`` / ``["multiplicity"]`` (also ``mult``, or PySCF's ``spin`` = 2S),
        else 0 and 1. Restricted closed-shell only (multiplicity 1).
    settings : SCFSettings, optional
        Density fitting, grid level, conv_tol (Eh), max_cycle per attempt of the retry ladder.
    grid_response : bool
        Include the DFT grid's response in the forces (default True), so that they are -dE/dx of the
        energy on the (moving) grid: without it they miss central differences by 8e-4 eV/Å (STO-3G dimer)
        and change by 7e-4 eV/Å on the cc-pVDZ dimer and 2e-3 eV/Å on the hexamer (grid level 3). Costs
        +18% (dimer) and +50% (hexamer) CPU per gradient (benchmarks/bench_ase.py ``grid``).
    reuse_density : bool
        Start each SCF from the previous converged density, projected onto the new geometry (default
        True); False starts every SCF from PySCF's default guess (to measure cold starts).
    verbose : int
        PySCF verbosity of the molecule and SCF objects (4 logs every SCF cycle).

    Attributes
    ----------
    model : CorrectionModel or None
    model_name : str
    basis, xc : str
    settings : SCFSettings

    Saved results
    -------------
    results : dict
        ``energy``, ``free_energy`` (eV, = e_tot), ``forces`` ((natm, 3) eV/Å, = -gradient).
    stats : dict
        Of the last geometry: ``e_tot``, ``e_delta`` (Eh), ``converged``, ``cycles`` (all attempts),
        ``scf_attempts`` (list of (rung, converged, cycles)), ``start`` (``"cold"``, ``"previous"``: same
        geometry, or ``"projected"``), ``scf_s``, ``grad_s`` (s; ``grad_s`` None until forces are asked).
    mf : the SCF object of the last geometry (after the ladder).

    Raises
    ------
    DeePKSInputError
        At construction: an unknown model, basis or functional, a model for another basis or functional, a
        charge or multiplicity that is not an integer, settings out of range. Before any SCF of a
        geometry: periodic atoms, an element the model lacks, an impossible charge/multiplicity, atoms
        closer than 0.5 Å.
    SCFNotConvergedError
        An SCF that does not converge after the retry ladder (a subclass of ASE's ``CalculationFailed``).
    """

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(
        self,
        model=None,
        basis: str | None = None,
        xc: str | None = None,
        charge: int | None = None,
        multiplicity: int | None = None,
        settings: SCFSettings | None = None,
        grid_response: bool = True,
        reuse_density: bool = True,
        verbose: int = 0,
        **kwargs,
    ):
        self._previous = None  # (key, mo_coeff, mo_occ, positions_bohr) of the last converged SCF
        super().__init__(**kwargs)
        self.model, self.model_name, self.basis, self.xc = resolve_level(model, basis, xc)
        self.settings = (settings or SCFSettings()).validate().for_model(self.model)
        where = "DeePKSCalculator"
        self.charge = None if charge is None else _integer(charge, "charge", where)
        self.multiplicity = None if multiplicity is None else _integer(multiplicity, "multiplicity", where)
        self.grid_response = bool(grid_response)
        self.reuse_density = bool(reuse_density)
        self.verbose = int(verbose)
        self.stats = {}
        self.mf = None
        self.parameters.update(
            model=self.model_name,
            model_sha256=self.model.settings.get("sha256") if self.model is not None else None,
            basis=self.basis,
            xc=self.xc,
            charge=self.charge,
            multiplicity=self.multiplicity,
            settings=asdict(self.settings),
            grid_response=self.grid_response,
        )

    def reset(self):
        """Forget results and the previous density (the next SCF starts cold)."""
        super().reset()
        self._previous = None
        self.mf = None

    def check_state(self, atoms, tol=1e-15):
        """ASE's changes, plus ``"info"`` when the charge/spin fields of ``atoms.info`` changed."""
        changes = super().check_state(atoms, tol)
        if self.atoms is not None and _spin_info(atoms) != _spin_info(self.atoms):
            changes.append("info")
        return changes

    def make_frame(self, atoms) -> Frame:
        """Validate ``atoms`` for this calculator, before any SCF.

        Returns:
            the :class:`~deepks_es.structures.Frame` (Å, charge, multiplicity) the SCF will run.

        Raises:
            DeePKSInputError: periodic atoms, a charge or multiplicity that is not an integer or impossible,
                atoms closer than 0.5 Å, a coordinate that is not finite, an element the model lacks.
        """
        name = atoms.get_chemical_formula()
        where = f"ASE atoms ({name})"
        if atoms.pbc.any():
            raise DeePKSInputError(
                f"{where} are periodic (pbc={atoms.pbc.tolist()}); DeePKSCalculator treats finite clusters: "
                "set atoms.pbc = False or cut a cluster"
            )
        frame = Frame(
            name=name,
            source="ASE atoms",
            numbers=np.asarray(atoms.numbers, dtype=int),
            positions_ang=np.asarray(atoms.positions, dtype=float),
        )
        frame.charge, frame.multiplicity = _charge_and_multiplicity(
            dict(atoms.info), self.charge, self.multiplicity, where
        )
        check_frame(frame)
        if self.model is not None:
            self.model.check_compatible(numbers=frame.numbers)
        return frame

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        """Energy (one SCF) for a new geometry, and forces (one gradient) when asked; see the class."""
        super().calculate(atoms, properties, system_changes)
        if system_changes or self.mf is None or "energy" not in self.results:
            self._run_scf(self.make_frame(self.atoms))
        if "forces" in properties and "forces" not in self.results:
            self._run_gradient()

    def _initial_density(self, mol, key):
        """(dm0 or None, how): the previous density, projected when the geometry moved."""
        if not self.reuse_density or self._previous is None or self._previous[0] != key:
            return None, "cold"
        _, mo_coeff, mo_occ, coords = self._previous
        dm0 = project_density(mo_coeff, mo_occ, mol.intor_symmetric("int1e_ovlp"))
        return dm0, "previous" if np.array_equal(coords, mol.atom_coords()) else "projected"

    def _run_scf(self, frame: Frame) -> None:
        t0 = time.perf_counter()
        self.mf = None
        mol = frame_to_mol(frame, self.basis, verbose=self.verbose)
        key = (tuple(frame.numbers), frame.charge, frame.multiplicity, mol.nao)
        dm0, start = self._initial_density(mol, key)
        mf = run_scf(build_scf(mol, xc=self.xc, model=self.model, settings=self.settings), dm0=dm0)
        self.stats = {
            "e_tot": float(mf.e_tot),
            "e_delta": float(mf.scf_summary.get("e_delta", 0.0)),
            "converged": bool(mf.converged),
            "cycles": int(sum(a[2] for a in mf.scf_attempts)),
            "scf_attempts": [tuple(a) for a in mf.scf_attempts],
            "start": start,
            "scf_s": time.perf_counter() - t0,
            "grad_s": None,
        }
        if not mf.converged:
            rungs = ", ".join(a[0] for a in mf.scf_attempts)
            raise SCFNotConvergedError(
                f"SCF of {frame.name} did not converge after the retry ladder ({rungs}; "
                f"{self.stats['cycles']} cycles, max_cycle {self.settings.max_cycle} per attempt), last "
                f"e_tot {mf.e_tot:.10f} Eh; raise max_cycle (--max-cycle) or check the geometry"
            )
        self.mf = mf
        self._previous = (key, np.asarray(mf.mo_coeff), np.asarray(mf.mo_occ), mol.atom_coords())
        self.results["energy"] = self.results["free_energy"] = float(mf.e_tot) * HARTREE2EV

    def _run_gradient(self) -> None:
        t0 = time.perf_counter()
        mf_grad = self.mf.nuc_grad_method()
        mf_grad.grid_response = self.grid_response
        mf_grad.verbose = self.verbose
        de = mf_grad.kernel()
        self.results["forces"] = -np.asarray(de) * EV_PER_ANG_PER_AU
        self.stats["grad_s"] = time.perf_counter() - t0


def _spin_info(atoms) -> tuple:
    return tuple(repr(atoms.info.get(k)) for k in SPIN_INFO_KEYS)
