"""The DeePKS correction inside a PySCF SCF loop.

E_tot[dm] = E_base[dm] + e_delta[dm],   fock = fock_base[dm] + v_delta,   v_delta = d e_delta / d dm
(DeePKS, Chen et al., JCTC 17, 170 (2021), Eqs. 2-4). The correction is attached the way PySCF attaches
solvent models (pyscf/solvent/_attach_solvent.py): a mixin class set on the SCF object with
``lib.set_class``; ``v_delta`` travels as a tag on the base ``veff`` and is added in ``get_fock`` (before
DIIS), so it never enters ``vhf_last``, which incremental direct SCF reuses. ``undo_deepks()`` returns
the plain object.

Einsum alphabet: r,s AO; a atom; n radial shell; m magnetic number.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from pyscf import lib
from pyscf.lib import logger

from . import kernels
from .errors import DeePKSInputError
from .model import CorrectionModel
from .projector import ao_atom, ipovlp_proj, make_proj_mol, ovlp_proj


@contextlib.contextmanager
def _one_torch_thread():
    """Run the model on one torch thread: its tensors are tiny (natm x ndesc), and a torch thread pool
    competing with PySCF's costs up to ~50x on a loaded 2-core machine (measured in benchmarks/).
    torch may share the OpenMP runtime with PySCF, and its first call in a new thread (a Dask worker's)
    resets the OpenMP thread count, so PySCF's count is saved and restored as well (measured: without
    this a worker's first frame ran its SCF on one thread, 30 s instead of 19 s)."""
    pyscf_threads = lib.num_threads()
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(torch_threads)
        lib.num_threads(pyscf_threads)


class DeePKSCorrection(lib.StreamObject):
    """The correction for one molecule: projector overlaps, e_delta, v_delta and its nuclear gradient.

    Attributes:
        mol: the molecule.
        model: a :class:`~deepks_es.model.CorrectionModel` (float64).

    Saved results:
        e_delta: float, Eh, of the last :meth:`kernel` call.
        v_delta: (nao, nao) Eh, of the last :meth:`kernel` call.

    Raises:
        DeePKSInputError: when the molecule has an element the model has no parameters for.
    """

    _keys = {"mol", "model", "verbose", "stdout", "e_delta", "v_delta"}

    def __init__(self, mol, model: CorrectionModel):
        self.mol = mol
        self.model = model.double().eval()
        self.verbose = mol.verbose
        self.stdout = mol.stdout
        self.e_delta = None
        self.v_delta = None
        self._elem_index = model.element_index(mol.atom_charges())
        self._ovlp_proj = None
        self._pmol = None

    def reset(self, mol=None):
        if mol is not None:
            self.mol = mol
            self._elem_index = self.model.element_index(mol.atom_charges())
        self._ovlp_proj = self._pmol = None
        return self

    def build(self):
        """Projector overlaps for the current geometry (computed once per geometry)."""
        if self._ovlp_proj is None:
            self._pmol = make_proj_mol(self.mol, self.model.projector)
            self._ovlp_proj = ovlp_proj(self.mol, self.model.projector, self._pmol)
        return self

    def dump_flags(self, verbose=None):
        log = logger.new_logger(self, verbose)
        p = self.model.projector
        log.info("******** DeePKS correction ********")
        log.info(
            "model kind = %s, sha256 = %s, trained = %s",
            self.model.kind,
            self.model.settings.get("sha256"),
            self.model.settings.get("trained"),
        )
        log.info("projector: lmax = %d, %d radial (%s), %d functions per atom", p.lmax, p.nrad, p.contraction, p.nproj)
        return self

    def make_pdm(self, dm) -> list:
        """Projected density blocks, list over l of (natm, nrad, 2l+1, 2l+1)."""
        return kernels.make_pdm(np.asarray(dm), self.build()._ovlp_proj)

    def make_descriptor(self, dm) -> np.ndarray:
        """Descriptor (natm, ndesc) of density matrix ``dm``."""
        with torch.no_grad():
            return self.model.make_descriptor([torch.from_numpy(p) for p in self.make_pdm(dm)]).numpy()

    def energy_and_gpdm(self, dm):
        """e_delta (Eh) and d e_delta / d pdm (list over l of (natm, nrad, 2l+1, 2l+1)) by autograd."""
        pdm = [torch.from_numpy(p).requires_grad_(True) for p in self.make_pdm(dm)]
        with _one_torch_thread():
            e_delta = self.model.energy_from_pdm(pdm, self._elem_index)
            gpdm = torch.autograd.grad(e_delta, pdm)
        return float(e_delta.detach()), [g.numpy() for g in gpdm]

    def kernel(self, dm):
        """e_delta (Eh) and v_delta = d e_delta / d dm, (nao, nao) Eh, for a (nao, nao) density matrix."""
        dm = np.asarray(dm)
        if dm.ndim != 2:
            raise ValueError(f"DeePKS correction needs a restricted (nao, nao) density matrix, got shape {dm.shape}")
        e_delta, gpdm = self.energy_and_gpdm(dm)
        self.e_delta = e_delta
        self.v_delta = kernels.make_v_delta(gpdm, self._ovlp_proj)
        return self.e_delta, self.v_delta

    def make_response(self, dm):
        """The correction's linear response at density ``dm``: a function dm1 -> v1 = d v_delta/d dm [dm1]
        = make_v_delta(d^2 e_delta/d pdm^2 . pdm(dm1)) (double backward through the model, its graph built
        once here). dm1 (nao, nao) or (nset, nao, nao); only its symmetric part counts (e_delta is a
        function of the physical, symmetric density). Returns v1 of dm1's shape, Eh."""
        pdm = [torch.from_numpy(p).requires_grad_(True) for p in self.make_pdm(np.asarray(dm))]
        with _one_torch_thread():
            e_delta = self.model.energy_from_pdm(pdm, self._elem_index)
            gpdm = torch.autograd.grad(e_delta, pdm, create_graph=True)

        def response(dm1):
            dm1 = np.asarray(dm1)
            out = []
            for d1 in dm1.reshape(-1, *dm1.shape[-2:]):
                pdm1 = [torch.from_numpy(p) for p in self.make_pdm((d1 + d1.T) / 2)]
                with _one_torch_thread():
                    hpdm = torch.autograd.grad(gpdm, pdm, pdm1, retain_graph=True, allow_unused=True)
                hpdm = [np.zeros(p.shape) if h is None else h.numpy() for h, p in zip(hpdm, pdm)]
                out.append(kernels.make_v_delta(hpdm, self._ovlp_proj))
            return np.asarray(out).reshape(dm1.shape)

        return response

    def grad(self, dm) -> np.ndarray:
        """Gradient of e_delta w.r.t. nuclear positions at fixed dm, (natm, 3) Eh/bohr."""
        dm = np.asarray(dm)
        _, gpdm = self.energy_and_gpdm(dm)
        ipovlp = ipovlp_proj(self.mol, self.model.projector, self._pmol)
        return kernels.make_de_delta(gpdm, dm, self._ovlp_proj, ipovlp, ao_atom(self.mol))


#: PySCF methods that would silently answer for the plain base functional on a corrected object: they need
#: the correction's nuclear Hessian or build a correlated wave function without it
REFUSED_METHODS = ("TDA", "TDHF", "TDDFT", "CasidaTDDFT", "Hessian", "MP2", "CISD", "CCSD", "CASCI", "CASSCF")


def _refused(name: str):
    def method(self, *args, **kwargs):
        raise DeePKSInputError(
            f"mf.{name}() does not include the DeePKS correction and would answer for the plain base functional; "
            f"call mf.undo_deepks().{name}() to get that, knowingly"
        )

    method.__name__ = name
    return method


class _DeePKS:
    """Tag: an SCF object carrying a DeePKS correction."""


class SCFWithDeePKS(_DeePKS):
    """Mixin adding e_delta to the energy and v_delta to the Fock matrix (see module docstring).

    Attributes:
        with_deepks: the :class:`DeePKSCorrection`.

    Saved results (besides PySCF's):
        scf_summary['e_delta']: the correction energy at convergence (Eh).
    """

    _keys = {"with_deepks"}

    def __init__(self, mf, with_deepks):
        self.__dict__.update(mf.__dict__)
        self.with_deepks = with_deepks

    def undo_deepks(self):
        """The plain SCF object (same attributes, no correction)."""
        obj = lib.view(self, lib.drop_class(self.__class__, SCFWithDeePKS, "DeePKS"))
        del obj.with_deepks
        return obj

    def dump_flags(self, verbose=None):
        super().dump_flags(verbose)
        self.with_deepks.dump_flags(verbose)
        return self

    def reset(self, mol=None):
        self.with_deepks.reset(mol)
        return super().reset(mol)

    def get_veff(self, mol=None, dm=None, *args, **kwargs):
        if dm is None:
            dm = self.make_rdm1()
        vhf = super().get_veff(mol, dm, *args, **kwargs)
        t0 = (logger.process_clock(), logger.perf_counter())
        e_delta, v_delta = self.with_deepks.kernel(dm)
        logger.timer_debug1(self, "DeePKS correction", *t0)
        return lib.tag_array(vhf, e_delta=e_delta, v_delta=v_delta)

    def get_fock(self, h1e=None, s1e=None, vhf=None, dm=None, *args, **kwargs):
        if dm is None:
            dm = self.make_rdm1()
        if getattr(vhf, "v_delta", None) is None:
            vhf = self.get_veff(self.mol, dm)
        # v_delta must enter before DIIS extrapolation, which happens inside the base get_fock
        return super().get_fock(h1e, s1e, vhf + vhf.v_delta, dm, *args, **kwargs)

    def energy_elec(self, dm=None, h1e=None, vhf=None):
        if dm is None:
            dm = self.make_rdm1()
        if getattr(vhf, "e_delta", None) is None:
            vhf = self.get_veff(self.mol, dm)
        e_elec, e_coul = super().energy_elec(dm, h1e, vhf)
        self.scf_summary["e_delta"] = vhf.e_delta
        logger.info(self, "e_delta = %.12g", vhf.e_delta)
        return e_elec + vhf.e_delta, e_coul

    def density_fit(self, *args, **kwargs):
        """Density fitting for the base functional; the correction is re-attached on top."""
        return attach(self.undo_deepks().density_fit(*args, **kwargs), self.with_deepks.model)

    def nuc_grad_method(self):
        from .grad import make_grad_object

        return make_grad_object(self)

    Gradients = nuc_grad_method

    def gen_response(self, mo_coeff=None, mo_occ=None, singlet=None, *args, **kwargs):
        """Response function of the corrected functional (orbital Hessian, CPHF, second-order SCF,
        stability): the base functional's plus the correction's, :meth:`DeePKSCorrection.make_response` at
        the current density. The correction depends on the total density only, so a triplet response
        (``singlet=False``) has no correction part."""
        from pyscf.scf import _response_functions  # noqa: F401  (PySCF attaches gen_response on import)

        vind = super().gen_response(mo_coeff, mo_occ, singlet, *args, **kwargs)
        if singlet is False:
            return vind
        dm = self.make_rdm1(
            mo_coeff if mo_coeff is not None else self.mo_coeff, mo_occ if mo_occ is not None else self.mo_occ
        )
        v_response = self.with_deepks.make_response(dm)
        return lambda dm1: vind(dm1) + v_response(dm1)

    def stability(self, *args, **kwargs):
        """PySCF's stability analysis with the corrected Fock matrix and response (it builds the Fock
        matrix as get_hcore() + get_veff(), which would leave v_delta out: v_delta at the current density is
        added to the core Hamiltonian for the duration of the analysis)."""
        h1e = super().get_hcore() + self.with_deepks.kernel(self.make_rdm1())[1]
        with lib.temporary_env(self, get_hcore=lambda *a, **k: h1e):
            return super().stability(*args, **kwargs)

    def as_scanner(self):
        """A PySCF scanner that keeps the correction (reset to each new geometry) and runs each SCF with
        the retry ladder (:func:`run_scf`)."""
        scanner = super().as_scanner()
        return lib.set_class(_LadderScanner(scanner), (_LadderScanner, scanner.__class__))

    def e_base(self, dm=None) -> float:
        """Total energy of the base functional alone at ``dm`` (Eh)."""
        plain = self.undo_deepks()
        return plain.energy_tot(dm if dm is not None else self.make_rdm1())


for _name in REFUSED_METHODS:
    setattr(SCFWithDeePKS, _name, _refused(_name))


class _LadderScanner:
    """Mixin on a PySCF SCF scanner: each geometry's SCF runs :func:`run_scf` (the retry ladder)."""

    def __init__(self, scanner):
        self.__dict__.update(scanner.__dict__)

    def kernel(self, dm0=None, **kwargs):
        plain = lib.view(self, lib.drop_class(self.__class__, _LadderScanner))
        ladder = {k: getattr(self, k) for k in ("damp", "diis_start_cycle", "level_shift")}
        done = run_scf(plain, dm0)  # a view: the ladder's changed settings stay off the scanner
        for key in ("e_tot", "converged", "mo_energy", "mo_coeff", "mo_occ", "scf_summary", "scf_attempts"):
            setattr(self, key, getattr(done, key))
        self.__dict__.update(ladder)
        return self.e_tot


def attach(mf, model: CorrectionModel):
    """Attach a correction model to a PySCF restricted KS/HF object.

    Args:
        mf: ``pyscf.dft.RKS`` (or ``scf.RHF``), optionally density-fitted.
        model: a correction model, compatible with the molecule's basis, the object's base functional and
            the elements (:meth:`~deepks_es.model.CorrectionModel.check_compatible`).

    Returns:
        the same object with the correction mixin (a new class; ``mf.undo_deepks()`` reverts).

    Raises:
        DeePKSInputError: unrestricted/open-shell objects, a basis or base functional other than the
            model's, or an element the model lacks.
    """
    from pyscf import scf

    if not isinstance(mf, scf.hf.RHF) or isinstance(mf, scf.rohf.ROHF):
        raise DeePKSInputError(
            f"the DeePKS correction supports restricted closed-shell SCF (RKS/RHF), got {mf.__class__.__name__}"
        )
    model.check_compatible(basis=mf.mol.basis, xc=getattr(mf, "xc", None), numbers=mf.mol.atom_charges())
    if isinstance(mf, _DeePKS):
        mf = mf.undo_deepks()
    obj = SCFWithDeePKS(mf, DeePKSCorrection(mf.mol, model))
    return lib.set_class(obj, (SCFWithDeePKS, mf.__class__), "DeePKS" + mf.__class__.__name__)


# The retry ladder: each rung changes these attributes and restarts from the last density matrix.
RETRY_LADDER = (
    ("damping", {"damp": 0.5, "diis_start_cycle": 8}),
    ("level_shift", {"level_shift": 0.5, "damp": 0.0}),
    ("second_order", None),
)


def run_scf(mf, dm0=None, ladder: bool = True):
    """Run ``mf.kernel()``; if it does not converge, retry from the last density with damping, then a
    level shift, then second-order (Newton) SCF.

    Returns:
        the SCF object that ran last (the Newton rung returns a new object). Its ``converged`` is PySCF's
        flag, never overwritten; ``scf_attempts`` lists ``(rung, converged, cycles)`` per attempt.
    """
    attempts = []
    cycles = {"n": 0}

    def count(envs):
        cycles["n"] += 1

    def one(obj, name, dm):
        cycles["n"] = 0
        obj.callback = count
        obj.kernel(dm0=dm)
        attempts.append((name, bool(obj.converged), cycles["n"]))
        obj.callback = None
        return obj

    mf = one(mf, "default", dm0)
    if ladder:
        for name, changes in RETRY_LADDER:
            if mf.converged:
                break
            logger.warn(mf, "SCF not converged (e_tot = %.10f); retrying with %s", mf.e_tot, name)
            dm = mf.make_rdm1()
            if changes is None:
                mf = mf.newton()
            else:
                for key, value in changes.items():
                    setattr(mf, key, value)
            mf = one(mf, name, dm)
    mf.scf_attempts = attempts
    return mf


def level_response(mf, ncore: int, tol: float = 1e-5, grid_level: int = 1) -> np.ndarray:
    """Density responses that give the first-order self-consistent shift of two orbital levels when the
    correction potential changes (a retrained model at the same base density, DeePKS-ES iterate).

    For a converged restricted SCF (PBE, or PBE + a correction) and a change dV of its potential, the
    self-consistent level i moves by d eps_i = <i|dV|i> + <i|K dD|i> to first order, where dD is the
    self-consistent (CPKS) density response to dV and K = d fock / d dm (``mf.gen_response``: Hartree,
    XC kernel and the correction's own response). K and the Kohn-Sham response are symmetric, so the
    second term equals tr(Z dV) with Z the self-consistent density response to the potential K[e_i],
    e_i = c_i c_i^T (an adjoint, one CPKS solve per level instead of one per model parameter). The levels:

        0: the mean of the valence occupied levels (e = sum_{ncore <= i < nocc} c_i c_i^T / (nocc - ncore))
        1: the LUMO

    The first is a common shift of the occupied levels, which the fixed-density eigenvalue loss cannot
    see and a self-consistent run of the retrained model shows (README, "Where the orbital-energy error
    comes from").

    Args:
        mf: converged RKS/RHF (density-fitted or not, corrected or not).
        ncore: chemical-core orbitals left out of level 0.
        tol: CPKS convergence (PySCF's Krylov solver, relative residual; 1e-5 moves the predicted levels
            by < 1e-8 Eh on the water dimer against 1e-8, at ~30 % less cost).
        grid_level: DFT grid of the XC kernel in the response (a coarser one than the SCF's, never a finer
            one): the kernel dominates the cost, and the levels barely feel it (a water trimer, stage 3's
            models: 0.0470789 eV on grid level 3, 0.0470793 on level 1 at a third of the cost, 0.04710 on 0).

    Returns:
        Z (2, nao, nao), symmetric, in the convention of ``mf.make_rdm1`` (2 electrons per orbital); the
        response part of d eps is ``np.einsum("xpq,pq->x", Z, dV)`` Eh for dV in Eh.

    Raises:
        ValueError: an unrestricted or open-shell ``mf``, or no valence occupied level.
    """
    from pyscf.scf import cphf

    mo_coeff, mo_occ = np.asarray(mf.mo_coeff), np.asarray(mf.mo_occ)
    if mo_coeff.ndim != 2 or not np.all(np.isin(mo_occ, (0.0, 2.0))):
        raise ValueError("level_response needs a closed-shell restricted SCF (occupations 0 or 2)")
    nocc = int(np.count_nonzero(mo_occ))
    if not 0 <= ncore < nocc or nocc == len(mo_occ):
        raise ValueError(f"level_response: ncore {ncore} must leave a valence occupied level and a LUMO")
    orbo, orbv = mo_coeff[:, :nocc], mo_coeff[:, nocc:]
    if getattr(mf, "grids", None) is not None and mf.grids.level > grid_level:
        from pyscf.dft import gen_grid

        mf = mf.copy()
        mf.grids = gen_grid.Grids(mf.mol)
        mf.grids.level = grid_level
        mf.grids.build()
    vresp = mf.gen_response(hermi=1)

    def vo_density(x):  # (nset, nvir, nocc) orbital rotations -> symmetric density change, 2 e per orbital
        dm = np.einsum("pa,xai,qi->xpq", orbv, 2 * x, orbo)
        return dm + dm.transpose(0, 2, 1)

    def fvind(x):
        return np.einsum("xpq,pa,qi->xai", vresp(vo_density(x.reshape(-1, orbv.shape[1], nocc))), orbv, orbo)

    valence, lumo = orbo[:, ncore:], mo_coeff[:, nocc]
    levels = np.stack([valence @ valence.T / (nocc - ncore), np.outer(lumo, lumo)])
    h1 = np.einsum("xpq,pa,qi->xai", vresp(levels), orbv, orbo)
    # (e_a - e_i) u + fvind(u) = -h1: u_ai is the first-order rotation of occupied i into virtual a under h1
    u = cphf.solve(fvind, mf.mo_energy, mo_occ, h1, max_cycle=100, tol=tol)[0]
    return vo_density(u)
