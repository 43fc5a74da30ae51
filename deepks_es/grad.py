"""Analytic nuclear gradient of the corrected energy.

dE_tot/dR = [PySCF's gradient of the base functional, with the energy-weighted density matrix built from
the corrected Fock's orbital energies and orbitals] + d e_delta/dR at fixed dm (projector and AO centres
move; :func:`deepks_es.kernels.make_de_delta`). The first part is exact for the corrected SCF because the
orthonormality Lagrangian belongs to the corrected Fock matrix (DeePKS, Chen et al., JCTC 17, 170 (2021),
Eq. 9). The gradient object is built like PySCF's solvent gradients (pyscf/solvent/grad/pcm.py).
"""

from __future__ import annotations

from pyscf import lib


class DeePKSGrad:
    """Mixin on a PySCF gradients object adding the explicit correction term.

    Saved results (besides PySCF's ``de``, (natm, 3) Eh/bohr):
        de_delta: (natm, 3) Eh/bohr, the explicit e_delta term alone.
    """

    _keys = {"de_delta"}

    def __init__(self, grad_method):
        self.__dict__.update(grad_method.__dict__)
        self.de_delta = None

    def grad_elec(self, mo_energy=None, mo_coeff=None, mo_occ=None, atmlst=None):
        de = super().grad_elec(mo_energy, mo_coeff, mo_occ, atmlst)
        mf = self.base
        dm = mf.make_rdm1(mf.mo_coeff if mo_coeff is None else mo_coeff, mf.mo_occ if mo_occ is None else mo_occ)
        self.de_delta = mf.with_deepks.grad(dm)
        return de + (self.de_delta if atmlst is None else self.de_delta[list(atmlst)])


def make_grad_object(mf):
    """Gradients for an SCF object carrying a DeePKS correction (see :func:`deepks_es.scf.attach`)."""
    base_grad = mf.undo_deepks().nuc_grad_method()
    base_grad.base = mf
    return lib.set_class(
        DeePKSGrad(base_grad), (DeePKSGrad, base_grad.__class__), "DeePKS" + base_grad.__class__.__name__
    )
