"""Labelling methods: one frame in, one record out (the unit of work of ``deepks-es label``).

Methods:
    pbe       PySCF RKS, xc='PBE'
    hse06     PySCF RKS, xc='HSE06' as is (Libxc id 428, omega = 0.11 bohr^-1, 25% short-range exchange;
              never set ``omega``: that changes the functional). Other codes' "HSE06" differ at mEh.
    deepks    the base functional of the model + DeePKS correction; several models = a committee
    ccsd      RHF + CCSD (pyscf.cc); energy, its RHF and correlation parts, analytic forces on request
    ccsd(t)   RHF + CCSD(T); as ccsd plus the (T) part; forces from the (T)-relaxed densities
              (pyscf.grad.ccsd_t with the (T) lambda equations). All-electron unless ``frozen_core``.

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
#: wave-function methods: no Kohn-Sham matrices, no orbital-energy labels (the RHF ones are stored)
CC_METHODS = ("ccsd", "ccsd(t)")
XC = {"pbe": "PBE", "hse06": "HSE06"}


@dataclass
class LabelSpec:
    """Everything a worker needs to label a frame (plain, picklable).

    Attributes:
        method: one of ``METHODS``.
        basis: AO basis.
        forces: compute analytic forces (for ccsd/ccsd(t): costly, see README "CCSD(T) labels").
        save_matrices: also return dm, fock, ovlp, mo_coeff (AO basis, Eh).
        save_response: also return ``level_response`` (:func:`deepks_es.scf.level_response`: a CPKS
            solve after the SCF) for training on self-consistent orbital levels (pbe and deepks only).
        model_paths: checkpoints for ``deepks`` (one, or several for a committee).
        model_sha256: their hashes, checked again when a worker loads them.
        scf: :class:`~deepks_es.settings.SCFSettings` (density fitting, grid, convergence, workers,
            threads per worker).
        frozen_core: ccsd/ccsd(t) with the chemical cores frozen (PySCF's ``set_frozen()``); default
            all-electron.
        max_memory_mb: memory a CC job may use (default: the machine's available memory / workers),
            checked against :func:`cc_memory_mb` before any compute.
        xc: the base functional, set by :meth:`validate` ("" for ccsd/ccsd(t)).
    """

    method: str
    basis: str = DEFAULT_BASIS
    forces: bool = False
    save_matrices: bool = False
    save_response: bool = False
    model_paths: list = field(default_factory=list)
    model_sha256: list = field(default_factory=list)
    scf: SCFSettings = field(default_factory=SCFSettings)
    frozen_core: bool = False
    max_memory_mb: float | None = None
    xc: str = ""

    @property
    def outputs(self) -> set:
        """Record datasets this spec asks for beyond the energy and orbitals (what a stored record must
        have to be skipped on a rerun)."""
        out = ({"forces"} if self.forces else set()) | (set(MATRIX_KEYS) if self.save_matrices else set())
        return out | ({"level_response"} if self.save_response else set())

    def validate(self, name=flag) -> LabelSpec:
        """Check the combination and settings and load every model once (hash check, basis and base
        functional) before any compute; decide ``scf.density_fit`` when not given (as the models were
        trained: :meth:`~deepks_es.settings.SCFSettings.for_model`; off for the other methods).

        Raises:
            DeePKSInputError: unknown method, matrices or --frozen-core with a method that has none, a
                non-positive --max-memory-mb, a model
                given for a method other than deepks, a bad model file or one for another basis, a
                committee of models for different base functionals, or trained with and without density
                fitting while ``scf.density_fit`` is not given, a setting out of range.
        """
        from .model import load_model

        self.scf = self.scf.validate(name)
        if self.method not in METHODS:
            raise DeePKSInputError(f"--method {self.method!r} is unknown; use one of {', '.join(METHODS)}")
        if self.max_memory_mb is not None and not self.max_memory_mb > 0:
            raise DeePKSInputError(f"--max-memory-mb must be positive, got {self.max_memory_mb}")
        if self.frozen_core and self.method not in CC_METHODS:
            raise DeePKSInputError(f"--frozen-core is for ccsd and ccsd(t), not --method {self.method}")
        if self.method in CC_METHODS and self.save_matrices:
            raise DeePKSInputError(f"--method {self.method} has no Kohn-Sham matrices; drop --save-matrices")
        if self.save_response and self.method not in ("pbe", "deepks"):
            raise DeePKSInputError(
                f"--save-response is for training base stores (--method pbe or deepks), not --method {self.method}"
            )
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
            fitted = {self.scf.for_model(m).density_fit for m in models}
            if len(fitted) > 1:
                raise DeePKSInputError(
                    "the committee models were trained on bases with and without density fitting; pass "
                    "--density-fit or --no-density-fit"
                )
            self.scf = self.scf.for_model(models[0])
        else:
            self.xc = XC.get(self.method, "")
            self.scf = self.scf.for_model(None)
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
            **({"frozen_core": self.frozen_core} if self.method in CC_METHODS else {}),
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


def _dft_record(mol, spec: LabelSpec, xc: str, model=None, dm0=None) -> dict:
    mf = build_scf(mol, xc=xc, model=model, settings=spec.scf)
    res = single_point(mf, forces=spec.forces, dm0=dm0)
    rec = {k: res[k] for k in ("e_tot", "mo_energy", "mo_occ", "homo", "lumo", "gap", "converged", "cycles")}
    rec["forces"] = None if res["de"] is None else -res["de"]
    if spec.save_matrices:
        mf = res["mf"]
        rec.update(dm=mf.make_rdm1(), fock=mf.get_fock(), ovlp=mf.get_ovlp(), mo_coeff=np.asarray(mf.mo_coeff))
    if spec.save_response:
        from pyscf.data.elements import chemcore

        from .scf import level_response

        rec["level_response"] = level_response(res["mf"], chemcore(mol))
    return rec


def _cc_record(mol, spec: LabelSpec) -> dict:
    """RHF + CCSD (+ (T)) of one molecule: ``e_tot`` = ``e_hf`` + ``e_corr`` (+ ``e_t``) and, with
    ``spec.forces``, the analytic forces (pyscf.grad.ccsd, or pyscf.grad.ccsd_t after the (T) lambda
    equations, pyscf.cc.ccsd_t_lambda_slow; PySCF's examples/grad/05-ccsd_grad.py)."""
    from pyscf import cc, scf

    from .scf import run_scf

    mf = scf.RHF(mol)
    if spec.scf.density_fit:
        mf = mf.density_fit()
    mf.conv_tol = spec.scf.conv_tol
    mf.max_cycle = spec.scf.max_cycle
    mf = run_scf(mf)
    mycc = cc.CCSD(mf)
    if spec.frozen_core:
        mycc.set_frozen()
    mycc.max_memory = spec.max_memory_mb or max(mycc.max_memory, 0.8 * worker_memory_mb(spec))
    eris = mycc.ao2mo()
    mycc.kernel(eris=eris)
    rec = scf_fields(mf)  # RHF orbitals and SCF cycles
    rec.update(e_hf=float(mycc.e_hf), e_corr=float(mycc.e_corr))
    converged = bool(mf.converged and mycc.converged)
    e_t = 0.0
    if spec.method == "ccsd(t)":
        e_t = float(mycc.ccsd_t(eris=eris))
        rec["e_t"] = e_t
    de = None
    if spec.forces and spec.method == "ccsd":
        mycc.solve_lambda(eris=eris)
        converged &= bool(mycc.converged_lambda)
        de = mycc.nuc_grad_method().kernel(eris=eris)
    elif spec.forces:
        from pyscf.cc import ccsd_t_lambda_slow
        from pyscf.grad import ccsd_t as ccsd_t_grad

        conv, l1, l2 = ccsd_t_lambda_slow.kernel(mycc, eris, mycc.t1, mycc.t2, verbose=0)
        converged &= bool(conv)
        de = ccsd_t_grad.Gradients(mycc).kernel(mycc.t1, mycc.t2, l1, l2, eris=eris)
    rec.update(e_tot=float(mycc.e_tot + e_t), forces=None if de is None else -np.asarray(de), converged=converged)
    return rec


def cc_memory_mb(nao: int, nocc: int, forces: bool = False, triples: bool = False, ncore: int = 0) -> float:
    """Estimated peak memory of an in-core RHF-CCSD or CCSD(T) job of PySCF, MB (8-byte words).

    Args:
        nao: basis functions; nocc: doubly occupied orbitals; ncore: frozen core orbitals among them.
        forces: analytic gradient (lambda equations and density matrices).
        triples: CCSD(T) rather than CCSD (only its forces change the estimate: the (T) energy is
            computed in batches).

    The terms, with o = nocc - ncore correlated occupied and v = nao - nocc virtual orbitals: AO integrals
    nao^4/8, MO integrals (vvvv packed ~ v^4/4, ovvv ~ o v^3, the o^2 v^2 blocks), amplitudes, residuals
    and DIIS vectors (~12 o^2 v^2 in all); forces add the lambda amplitudes and the two-particle density
    blocks (~ another o v^3 + v^4/4 + 4 o^2 v^2); CCSD(T) forces add PySCF's (T) lambda intermediates
    (``ccsd_t_lambda_slow``: d3, w, v and their permutations, ~5 arrays of (o v)^3 at once; measured on a
    water dimer in cc-pVDZ, o 10, v 38: peak 2.27 GB against 2.24 estimated). So a water trimer's
    all-electron CCSD(T) forces need ~25 GB, with frozen 1s cores ~13 GB. An estimate, within a factor of
    about two of what PySCF allocates; it exists to refuse jobs that cannot fit, not to plan them.
    """
    o, v = nocc - ncore, nao - nocc
    words = nao**4 / 8 + v**4 / 4 + 2 * o * v**3 + 12 * (o * v) ** 2
    if forces:
        words += o * v**3 + v**4 / 4 + 4 * (o * v) ** 2
        if triples:
            words += 5 * (o * v) ** 3
    return words * 8 / 1e6


def _gb(mb: float) -> str:
    return f"{mb / 1024:.1f} GB" if mb >= 100 else f"{mb:.2g} MB"


def available_memory_mb() -> float:
    """The machine's available memory, MB (``MemAvailable`` of /proc/meminfo; PySCF's default elsewhere)."""
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    from pyscf import lib

    return float(lib.param.MAX_MEMORY)


def worker_memory_mb(spec: LabelSpec) -> float:
    """Memory one labelling worker may use, MB: ``spec.max_memory_mb``, else the available memory shared by
    the local workers."""
    return spec.max_memory_mb or available_memory_mb() / spec.scf.workers


def check_memory(frames, spec: LabelSpec) -> None:
    """Refuse, before any compute, a ccsd/ccsd(t) batch whose largest frame would not fit in memory
    (:func:`cc_memory_mb` against ``spec.max_memory_mb``, default the available memory shared by the
    local workers). DFT methods are not checked.

    Raises:
        DeePKSInputError: naming the frame, the estimate and the fix.
    """
    if spec.method not in CC_METHODS:
        return
    from pyscf.data.elements import chemcore

    from .structures import frame_to_mol

    limit = worker_memory_mb(spec)
    for frame in frames:
        if frame.error:
            continue
        mol = frame_to_mol(frame, spec.basis)
        cores = chemcore(mol)
        ncore = cores if spec.frozen_core else 0
        need = cc_memory_mb(mol.nao, mol.nelectron // 2, spec.forces, spec.method == "ccsd(t)", ncore)
        if need > limit:
            raise DeePKSInputError(
                f"{frame.name}: {spec.method}{' with forces' if spec.forces else ''} in {spec.basis} "
                f"({mol.nao} basis functions) needs about {_gb(need)}, over the {_gb(limit)} available per "
                "worker; label smaller clusters, use fewer --workers, "
                f"{'--frozen-core, ' if cores and not spec.frozen_core else ''}or give --max-memory-mb if the "
                "machine has more"
            )


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


def _guess_dm(guess: tuple[str, str], nao: int):
    """The density matrix (nao, nao) of the record ``guess`` = (store path, record key) names: its stored
    ``dm``, or else sum_i n_i C_i C_i^T over the occupied orbitals of its ``mo_coeff`` (a packed label
    archive keeps only those and a few virtuals, float32); None when the record, or both, are not there, or
    not of ``nao`` basis functions."""
    from .store import LabelStore

    try:
        rec = LabelStore(guess[0]).read(guess[1])
    except (KeyError, DeePKSInputError):
        return None
    dm, mo_coeff, mo_occ = rec["dm"], rec["mo_coeff"], rec["mo_occ"]
    if dm is None and mo_coeff is not None and mo_occ is not None:
        ncol = mo_coeff.shape[1]  # every occupied orbital must be among the stored columns
        if (mo_occ[:ncol] > 0).any() and not (mo_occ[ncol:] > 0).any():
            from pyscf.scf import hf

            dm = hf.make_rdm1(np.asarray(mo_coeff, dtype=float), mo_occ[:ncol])
    return dm if dm is not None and dm.shape == (nao, nao) else None


def label_frame(frame, key: str, spec: LabelSpec, guess: tuple[str, str] | None = None) -> dict:
    """Label one frame; never raises: an error becomes the record's ``error`` (message and last line of
    the traceback), with ``e_tot = nan`` and ``converged = False``.

    ``guess``: (label store path, record key) of a converged record of the same structure and basis with
    matrices; its density (:func:`_guess_dm`) starts a Kohn-Sham SCF (iterate: model k's SCF starts from
    model k-1's density, which converges in fewer cycles to the same solution). Ignored for coupled cluster
    and when the record is missing or of another size."""
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
        dm0 = _guess_dm(guess, mol.nao) if guess and spec.method not in CC_METHODS else None
        if spec.method in CC_METHODS:
            rec.update(_cc_record(mol, spec))
        elif spec.method == "deepks":
            from .model import load_model

            models = [load_model(p) for p in spec.model_paths]
            if [m.settings["sha256"] for m in models] != list(spec.model_sha256):
                raise DeePKSInputError("a model file changed since the batch started; restart the batch")
            rec.update(_committee([_dft_record(mol, spec, spec.xc, m, dm0) for m in models]))
        else:
            rec.update(_dft_record(mol, spec, XC[spec.method], dm0=dm0))
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
