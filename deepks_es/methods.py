"""Labelling methods: one frame in, one record out (the unit of work of ``deepks-es label``).

Methods:
    pbe       PySCF RKS, xc='PBE'
    hse06     PySCF RKS, xc='HSE06' as is (Libxc id 428, omega = 0.11 bohr^-1, 25% short-range exchange;
              never set ``omega``: that changes the functional). Other codes' "HSE06" differ at mEh.
    deepks    the base functional of the model + DeePKS correction; several models = a committee
    ccsd      RHF + CCSD, energies only
    ccsd(t)   RHF + CCSD(T), energies only

Records are plain dicts in atomic units (see :mod:`deepks_es.store` for the fields); ``forces`` = -gradient.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field

import numpy as np

from .calc import build_scf, check_level, scf_fields, single_point
from .errors import DeePKSInputError
from .keys import MATRIX_KEYS
from .settings import DEFAULT_BASIS, DEFAULT_XC, SCFSettings, flag

METHODS = ("pbe", "hse06", "deepks", "ccsd", "ccsd(t)")
ENERGY_ONLY = ("ccsd", "ccsd(t)")
XC = {"pbe": "PBE", "hse06": "HSE06"}


@dataclass
class LabelSpec:
    """Everything a worker needs to label a frame (plain, picklable).

    Attributes:
        method: one of ``METHODS``.
        basis: AO basis.
        forces: compute analytic forces (not for energy-only methods).
        save_matrices: also return dm, fock, ovlp, mo_coeff (AO basis, Eh).
        model_paths: checkpoints for ``deepks`` (one, or several for a committee).
        model_sha256: their hashes, checked again when a worker loads them.
        scf: :class:`~deepks_es.settings.SCFSettings` (density fitting, grid, convergence, workers,
            threads per worker).
        xc: the base functional, set by :meth:`validate` ("" for the energy-only methods).
    """

    method: str
    basis: str = DEFAULT_BASIS
    forces: bool = False
    save_matrices: bool = False
    model_paths: list = field(default_factory=list)
    model_sha256: list = field(default_factory=list)
    scf: SCFSettings = field(default_factory=SCFSettings)
    xc: str = ""

    @property
    def outputs(self) -> set:
        """Record datasets this spec asks for beyond the energy and orbitals (what a stored record must
        have to be skipped on a rerun)."""
        return ({"forces"} if self.forces else set()) | (set(MATRIX_KEYS) if self.save_matrices else set())

    def validate(self, name=flag) -> LabelSpec:
        """Check the combination and settings and load every model once (hash check, basis and base
        functional) before any compute.

        Raises:
            DeePKSInputError: unknown method, forces or matrices with an energy-only method, a model
                given for a method other than deepks, a bad model file or one for another basis, a
                committee of models for different base functionals, a setting out of range.
        """
        from .model import load_model

        self.scf = self.scf.validate(name)
        if self.method not in METHODS:
            raise DeePKSInputError(f"--method {self.method!r} is unknown; use one of {', '.join(METHODS)}")
        if self.method in ENERGY_ONLY and self.forces:
            raise DeePKSInputError(f"--method {self.method} gives energies only; drop --forces")
        if self.method in ENERGY_ONLY and self.save_matrices:
            raise DeePKSInputError(f"--method {self.method} has no Kohn-Sham matrices; drop --save-matrices")
        if self.method != "deepks" and self.model_paths:
            raise DeePKSInputError(f"--model is only used with --method deepks, not {self.method}")
        if self.method == "deepks":
            from .model import default_model_path

            self.model_paths = [str(p) for p in (self.model_paths or [default_model_path()])]
            models = [load_model(p) for p in self.model_paths]
            self.model_sha256 = [m.settings["sha256"] for m in models]
            xcs = sorted({m.settings.get("xc") or DEFAULT_XC for m in models})
            if len(xcs) > 1:
                raise DeePKSInputError(f"the committee models correct different base functionals {xcs}; use one")
            self.xc = xcs[0]
            for m in models:
                m.check_compatible(basis=self.basis)
        else:
            self.xc = XC.get(self.method, "")
        check_level(basis=self.basis)
        return self

    def metadata(self) -> dict:
        """Store-level metadata: method, xc definition, basis, grid, versions, model hashes."""
        import pyscf
        import torch
        from pyscf.dft import libxc

        from . import __version__

        xc = self.xc
        meta = {
            "method": self.method,
            "basis": self.basis,
            "xc": xc,
            "grid_level": self.scf.grid_level if xc else -1,
            "density_fit": self.scf.density_fit,
            "model_sha256": list(self.model_sha256),
            "conv_tol": self.scf.conv_tol,
            "versions": {
                "deepks_es": __version__,
                "pyscf": pyscf.__version__,
                "libxc": libxc.__version__,
                "torch": str(torch.__version__),
                "numpy": np.__version__,
            },
        }
        if xc:
            (omega, alpha, hyb), ids = libxc.rsh_coeff(xc), libxc.parse_xc(xc)[1]
            meta["xc_definition"] = {
                "libxc_ids": [int(i) for i, _ in ids],
                "omega": float(omega),
                "long_range_hf": float(alpha),
                "short_range_hf": float(hyb),
            }
        return meta


def _dft_record(mol, spec: LabelSpec, xc: str, model=None) -> dict:
    mf = build_scf(mol, xc=xc, model=model, settings=spec.scf)
    res = single_point(mf, forces=spec.forces)
    rec = {k: res[k] for k in ("e_tot", "mo_energy", "mo_occ", "homo", "lumo", "gap", "converged", "cycles")}
    rec["forces"] = None if res["de"] is None else -res["de"]
    if spec.save_matrices:
        mf = res["mf"]
        rec.update(dm=mf.make_rdm1(), fock=mf.get_fock(), ovlp=mf.get_ovlp(), mo_coeff=np.asarray(mf.mo_coeff))
    return rec


def _cc_record(mol, spec: LabelSpec) -> dict:
    from pyscf import cc, scf

    from .scf import run_scf

    mf = scf.RHF(mol)
    if spec.scf.density_fit:
        mf = mf.density_fit()
    mf.conv_tol = spec.scf.conv_tol
    mf.max_cycle = spec.scf.max_cycle
    mf = run_scf(mf)
    mycc = cc.CCSD(mf)
    mycc.kernel()
    e_tot = mycc.e_tot + (mycc.ccsd_t() if spec.method == "ccsd(t)" else 0.0)
    rec = scf_fields(mf)  # RHF orbitals and SCF cycles
    rec.update(e_tot=float(e_tot), forces=None, converged=bool(mf.converged and mycc.converged))
    return rec


def _committee(records: list) -> dict:
    """Mean energy and forces over models, with the DP-GEN deviations: per-atom force deviation
    sqrt(mean_m |F_m,i - <F_i>|^2) and its maximum over atoms, ``max_devi_f`` (Eh/bohr)."""
    rec = dict(records[0])  # orbitals and frontier levels of the first model
    e = np.array([r["e_tot"] for r in records])
    rec.update(
        e_tot=float(e.mean()),
        e_tot_std=float(e.std()),
        converged=all(r["converged"] for r in records),
        cycles=int(sum(r["cycles"] for r in records)),
    )
    if records[0]["forces"] is not None:
        f = np.stack([r["forces"] for r in records])  # (nmodel, natm, 3)
        rec["forces"] = f.mean(0)
        rec["force_std"] = np.sqrt(((f - f.mean(0)) ** 2).sum(-1).mean(0))
        rec["max_devi_f"] = float(rec["force_std"].max())
    return rec


def label_frame(frame, key: str, spec: LabelSpec) -> dict:
    """Label one frame; never raises: an error becomes the record's ``error`` (message and last line of
    the traceback), with ``e_tot = nan`` and ``converged = False``."""
    from pyscf import lib

    from .structures import frame_to_mol

    t0 = time.perf_counter()
    rec = {
        "key": key,
        "name": frame.name,
        "source": frame.source,
        "numbers": np.asarray(frame.numbers),
        "positions_ang": np.asarray(frame.positions_ang),
        "charge": frame.charge,
        "multiplicity": frame.multiplicity,
        "error": "",
    }
    try:
        if frame.error:
            raise DeePKSInputError(frame.error)
        lib.num_threads(spec.scf.threads_per_worker)
        mol = frame_to_mol(frame, spec.basis)
        if spec.method in ENERGY_ONLY:
            rec.update(_cc_record(mol, spec))
        elif spec.method == "deepks":
            from .model import load_model

            models = [load_model(p) for p in spec.model_paths]
            if [m.settings["sha256"] for m in models] != list(spec.model_sha256):
                raise DeePKSInputError("a model file changed since the batch started; restart the batch")
            rec.update(_committee([_dft_record(mol, spec, spec.xc, m) for m in models]))
        else:
            rec.update(_dft_record(mol, spec, XC[spec.method]))
    except Exception as exc:  # one bad frame must not stop a batch: record it
        msg = str(exc) if isinstance(exc, DeePKSInputError) else traceback.format_exception_only(exc)[-1].strip()
        rec.update(
            e_tot=float("nan"),
            forces=None,
            mo_energy=None,
            mo_occ=None,
            homo=None,
            lumo=None,
            gap=None,
            converged=False,
            cycles=0,
            error=msg or type(exc).__name__,
        )
    rec["wall_s"] = time.perf_counter() - t0
    return rec
